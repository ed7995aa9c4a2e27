"""Weight SQNR of every LUT family on the bundled models' trained weights (BatchNorm folded).

Run from the repository root (about a minute on 2 cores)::

    .venv/bin/python scripts/lut_sqnr.py          # prints a markdown table

A cell is the mean over a model's conv/linear layers of
``10 log10(sum w^2 / sum (w - w_q)^2)`` in dB. Columns: the five fitted
families with power-of-two exponents, and the ``multiply_shift`` baseline
(uniform levels, a free float scale per channel or per layer).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from accel.frontend.metrics import signal_noise_energy, sqnr_db
from accel.frontend.onnx_import import import_onnx
from accel.frontend.weights import quantize_weights
from accel.report import Column, Table

ROOT = Path(__file__).resolve().parents[1]

MODELS = ("cnn_digits", "cnn_mnist", "resnet_mnist", "mobilenet_mnist")
FAMS = ("uniform", "pot", "apot", "pwlq", "mse")
SETTINGS = (("channel", "layer"), ("channel", "channel"), ("layer", "layer"))


def main() -> None:
    rows = []
    for name in MODELS:
        graph = import_onnx(ROOT / "models" / f"{name}.onnx")
        tensors = [(n.name, n.params["weight"]) for n in graph.nodes if n.op in ("conv", "linear")]
        for bits in (4, 3, 2):
            for gran, scope in SETTINGS:
                row = []
                for fam in FAMS:
                    vals = [sqnr_db(*signal_noise_energy(w, quantize_weights(
                        w, family=fam, weight_bits=bits, granularity=gran, lut_scope=scope, name=nm).dequantize()))
                            for nm, w in tensors]
                    row.append(float(np.mean(vals)))
                base = [sqnr_db(*signal_noise_energy(w, quantize_weights(
                    w, family="uniform", weight_bits=bits, granularity=gran, lut_scope=scope, power_of_two=False,
                    name=nm).dequantize()))
                        for nm, w in tensors]
                best = max(row)
                rows.append((name, bits, f"{gran} / {scope}",
                             *(f"**{v:.1f}**" if v == best else f"{v:.1f}" for v in row), float(np.mean(base))))
    columns = [Column("model"), Column("bits"), Column("exponent / LUT"), *(Column(f, align="right") for f in FAMS),
               Column("baseline (uniform, float scale)", ".1f", "right")]
    print(Table(columns, rows).markdown())


if __name__ == "__main__":
    main()
