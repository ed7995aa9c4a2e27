"""Mixed-precision search: bits per weight and energy against top-1 on the bundled models (Pareto plots).

Usage::

    .venv/bin/python bench/precision_pareto.py [--models cnn_digits,cnn_mnist] [--budgets 5,4,3.5,3,2.8]
                                               [--energy 1,0.95,0.9,0.85,0.8]

For each model and budget, the search of ``accel search-precision`` (no fine-tuning), then top-1
through the engine on the test split: storage budgets in bits per weight (LUT tables, shifts and
biases included; weight bits per layer), and energy budgets given as fractions of the all-W4A8
model's energy per inference (weight and activation bits per layer; ``accel.perf`` with packed
activations and codes). Writes ``docs/precision_pareto.json``, ``docs/precision_pareto.png`` and
its own section of ``docs/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

from accel.data import load_dataset, sample  # noqa: E402
from accel.errors import ConfigError  # noqa: E402
from accel.frontend.calibrate import calibrate  # noqa: E402
from accel.frontend.evaluate import evaluate  # noqa: E402
from accel.frontend.onnx_import import import_onnx  # noqa: E402
from accel.frontend.quantize import emit_integer_model  # noqa: E402
from accel.frontend.workflow import MODELS_DIR, bundled_models, make_config  # noqa: E402
from accel.perf import estimate  # noqa: E402
from accel.precision import Budget, search_precision  # noqa: E402
from accel.report import Column, Table, write_json  # noqa: E402
from accel.report.files import open_atomic  # noqa: E402
from accel.report.sections import update_section  # noqa: E402


def _search(name, graph, calib, train_set, test_set, config, text, info) -> dict | None:
    """One search and its top-1; ``None`` (with a line) when the budget cannot be met."""
    try:
        result = search_precision(graph, calib, sample(train_set.x, 256, 0), config, Budget.parse(text))
    except ConfigError as exc:
        print(f"{name} {text}: {exc}", flush=True)
        return None
    top1 = evaluate(result.model, test_set, sqnr=False).quant_top1
    point = {"model": name, "budget": text, "cost": result.cost,
             "weight_bits": "/".join(str(b) for b in result.bits.values()),
             "act_bits": "/".join(str(b) for b in result.act_bits.values()),
             "energy_uj": estimate(result.model, packed=True).energy_uj,
             "top1": top1, "float_top1": info["float_top1"]}
    print(f"{name} budget {text}: cost {result.cost:.4g}, weight bits {point['weight_bits']}, activation bits "
          f"{point['act_bits']}, top-1 {top1:.2f}", flush=True)
    return point


def _plot(storage: list[dict], energy: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_b, ax_e) = plt.subplots(1, 2, figsize=(11, 4))
    for ax, points, key, label in ((ax_b, storage, "cost", "bits per weight (codes, LUT tables, shifts, biases)"),
                                   (ax_e, energy, "relative_energy",
                                    "energy per inference, packed (fraction of the all-W4A8 model's)")):
        for name in dict.fromkeys(p["model"] for p in points):
            mine = sorted((p for p in points if p["model"] == name), key=lambda p: p[key])
            ax.plot([p[key] for p in mine], [p["top1"] for p in mine], "o-", label=name)
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 (%) through the engine")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax_b.set_title("storage budget: W2/3/4 per layer, A8")
    ax_e.set_title("energy budget: W2/3/4 and A4..8 per layer")
    fig.tight_layout()
    with open_atomic(ROOT / "docs" / "precision_pareto.png", overwrite=True, binary=True) as f:
        fig.savefig(f, format="png", dpi=100)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn_digits,cnn_mnist")
    parser.add_argument("--budgets", default="6,4,3.5,3,2.8")
    parser.add_argument("--energy", default="1,0.95,0.9,0.85,0.8",
                        help="energy budgets as fractions of the all-W4A8 model's energy")
    args = parser.parse_args(argv)
    index = bundled_models()
    config = make_config()
    storage, energy = [], []
    for name in args.models.split(","):
        data = index[name]["data"]
        graph = import_onnx(MODELS_DIR / f"{name}.onnx")
        train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
        calib = calibrate(graph, train_set.x, act_bits=config.act_bits)
        for text in args.budgets.split(","):
            point = _search(name, graph, calib, train_set, test_set, config, text, index[name])
            storage += [point] if point else []
        widest = estimate(emit_integer_model(graph, calib, config), packed=True).energy_uj
        for fraction in args.energy.split(","):
            text = f"{widest * float(fraction):.6f}uJ"
            point = _search(name, graph, calib, train_set, test_set, config, text, index[name])
            if point:
                energy.append({**point, "fraction": float(fraction), "budget": widest * float(fraction),
                               "relative_energy": point["energy_uj"] / widest})
    _plot(storage, energy)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    write_json(ROOT / "docs" / "precision_pareto.json", {"machine": machine, "storage": storage, "energy": energy},
               overwrite=True)
    pct = {"fmt": ".2f", "align": "right"}
    table = Table(["model", Column("budget (bpw)", align="right"),
                   Column("bits per weight", fmt=".3f", align="right"), "weight bits per layer",
                   Column("float", **pct), Column("top-1", **pct)],
                  [(p["model"], p["budget"], p["cost"], p["weight_bits"], p["float_top1"], p["top1"])
                   for p in storage])
    energy_table = Table(["model", Column("budget (uJ)", fmt=".4f", align="right"),
                          Column("of W4A8", fmt=".0%", align="right"), Column("energy (uJ)", fmt=".4f", align="right"),
                          "weight bits per layer", "act bits per layer", Column("float", **pct),
                          Column("top-1", **pct)],
                         [(p["model"], p["budget"], p["fraction"], p["energy_uj"], p["weight_bits"], p["act_bits"],
                           p["float_top1"], p["top1"]) for p in energy])
    body = "\n".join([
        "## Mixed-precision search (issue 13)", "",
        f"Generated by `python bench/precision_pareto.py` (do not edit by hand) on {machine}. "
        "`accel search-precision` without fine-tuning, layers in network order; top-1 through the engine on the "
        "test split. Plot: `docs/precision_pareto.png` (left: storage, right: energy).", "",
        "Storage budgets: per-layer weight bits (2/3/4 LUT levels), 8-bit activations, the budget in bits per "
        "weight over the network counting codes, LUT tables, shifts and biases (`accel.perf` weight storage).", "",
        table.markdown(), "",
        "Energy budgets (`--budget 0.27uJ`): per-layer weight bits and activation bits (4..8, the width of the "
        "map each layer writes; the last layer's logits stay raw), priced by `accel.perf.estimate(packed=True)`: "
        "activation maps and weight-code reads at the width each needs, the array's MACs at the same cost; "
        "budgets as fractions of the all-W4A8 model's energy; a budget below the all-W2A4 model's energy (static "
        "energy and MACs do not shrink with widths: 82% of W4A8 on cnn_mnist) is refused and left out.", "",
        energy_table.markdown(), ""])
    update_section(ROOT / "docs" / "RESULTS.md", "qat-precision", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
