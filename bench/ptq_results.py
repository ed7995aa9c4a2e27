"""The results table of issue 12: post-training methods x weight bits x LUT scope on every bundled model.

Run from the repository root (about half an hour on 2 shared cores, most of it AdaRound)::

    .venv/bin/python bench/ptq_results.py       # bench/ptq_results.json (cache) and docs/RESULTS.md's PTQ part

Every cell imports the bundled model afresh, quantizes it with 8-bit activations (power-of-two
exponents, the default calibration on 256 seeded training images), the default LUT family, per-channel
power-of-two weight scales and one LUT per layer or per output channel, runs the post-training methods
of the row, and evaluates it through the bit-exact engine on the model's test split. Cells are cached
in ``bench/ptq_results.json`` as they finish, so an interrupted run resumes where it stopped
(``--fresh`` starts over). The PTQ section of ``docs/RESULTS.md`` (between its markers) is
rewritten; ``models/results_table.py`` keeps it when it rewrites the rest.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from accel.config import AcceleratorConfig, Requant
from accel.data import load_dataset
from accel.frontend.evaluate import evaluate, onnx_logits
from accel.frontend.onnx_import import import_onnx
from accel.frontend.ptq.adaround import DEFAULT_ITERS
from accel.frontend.ptq.pipeline import PTQOptions, quantize_graph_ptq
from accel.frontend.quantize import DEFAULT_LUT, QuantizeOptions, quantize_layer_weights, weight_tensor
from accel.frontend.workflow import MODELS_DIR, bundled_models
from accel.ir import MAC_OPS
from accel.perf.footprint import weight_storage
from accel.report import Column, Table, write_json
from accel.report.sections import update_section

ROOT = Path(__file__).resolve().parent.parent

CACHE = ROOT / "bench" / "ptq_results.json"
RESULTS = ROOT / "docs" / "RESULTS.md"
BITS = (4, 3, 2)
LUT_SCOPES = ("channel", "layer")
#: Row label -> (post-training options, requantization).
METHODS = {
    "nearest": (PTQOptions(), Requant.SHIFT),
    "CLE": (PTQOptions(cle=True), Requant.SHIFT),
    "CLE + BC": (PTQOptions(cle=True, bias_correction="auto"), Requant.SHIFT),
    "AdaRound": (PTQOptions(adaround=True), Requant.SHIFT),
    "AdaRound + CLE": (PTQOptions(cle=True, adaround=True), Requant.SHIFT),
    "multiply_shift (nearest)": (PTQOptions(), Requant.MULTIPLY_SHIFT),
    "multipoint 0.1": (PTQOptions(multipoint=0.1), Requant.SHIFT),
    "multipoint 0.25": (PTQOptions(multipoint=0.25), Requant.SHIFT),
}
#: Rows that cost hardware (extra array columns): run at these weight bits only, priced by ``accel perf``.
MULTIPOINT_BITS = (3, 2)


def runs_at(method: str, bits: int) -> bool:
    return not method.startswith("multipoint") or bits in MULTIPOINT_BITS


def cell_key(name: str, bits: int, scope: str, method: str) -> str:
    return f"{name}|W{bits}|{scope}|{method}"


def bits_per_weight(model, config) -> float:
    """All conv/linear parameters (codes, LUT tables, shifts, biases, multipliers) per weight."""
    storage = [weight_storage(layer, config) for layer in model.layers if layer.op in MAC_OPS]
    return sum(s.total_bits for s in storage) / sum(s.weights for s in storage)


def run_cell(name: str, info: dict, bits: int, scope: str, method: str, float_top1: float) -> dict:
    ptq, requant = METHODS[method]
    config = AcceleratorConfig(weight_bits=bits, lut_scope=scope, requant=requant)
    graph = import_onnx(MODELS_DIR / f"{name}.onnx")
    calib_x = load_dataset(info["data"], "calib").x
    start = time.perf_counter()
    model = quantize_graph_ptq(graph, calib_x, config, QuantizeOptions(), ptq)
    seconds = time.perf_counter() - start
    top1 = evaluate(model, load_dataset(info["data"], "test"), sqnr=False).quant_top1
    cell = {"model": name, "weight_bits": bits, "lut_scope": scope, "method": method, "top1": round(top1, 2),
            "float_top1": round(float_top1, 2), "drop": round(float_top1 - top1, 2),
            "bits_per_weight": round(bits_per_weight(model, config), 3), "quantize_seconds": round(seconds, 1)}
    if ptq.multipoint:
        cell.update(multipoint_cost(model))
    return cell


def multipoint_cost(model) -> dict:
    """What the points cost on the hardware (``accel perf``, one inference): extra array columns, and the
    cycles against the same model without them (cycles depend on shapes only, not on codes)."""
    import copy

    from accel.perf import estimate

    plain = copy.deepcopy(model)
    for layer in plain.layers:
        for field in ("point_codes", "point_channel", "point_shift"):
            layer.arrays.pop(field, None)
    with_points, without = estimate(model).cycles, estimate(plain.validate()).cycles
    return {"extra_columns": sum(layer.n_points for layer in model.layers), "cycles": with_points,
            "extra_cycles": with_points - without, "extra_cycles_pct": round(100 * (with_points / without - 1), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fresh", action="store_true", help="ignore the cached cells")
    parser.add_argument("--models", help="comma-separated subset of the bundled models")
    parser.add_argument("--markdown-only", action="store_true", help="rewrite docs/RESULTS.md from the cache")
    args = parser.parse_args()
    cache = {} if args.fresh or not CACHE.exists() else json.loads(CACHE.read_text())
    cells = cache.get("cells", {})
    machine = f"{platform.machine()}, {platform.system()}, Python {platform.python_version()}"
    index = bundled_models()
    names = args.models.split(",") if args.models else list(index)
    for name in [] if args.markdown_only else names:
        info = index[name]
        test = load_dataset(info["data"], "test")
        float_top1 = float((onnx_logits(MODELS_DIR / f"{name}.onnx", test.x).argmax(1) == test.y).mean() * 100)
        for bits in BITS:
            for scope in LUT_SCOPES:
                for method in METHODS:
                    key = cell_key(name, bits, scope, method)
                    if key in cells or not runs_at(method, bits):
                        continue
                    cells[key] = run_cell(name, info, bits, scope, method, float_top1)
                    c = cells[key]
                    print(f"{name:16s} W{bits} LUT/{scope:7s} {method:26s} {c['top1']:6.2f} (drop {c['drop']:5.2f}) "
                          f"{c['bits_per_weight']:.2f} b/w {c['quantize_seconds']:6.1f} s", flush=True)
                    write_json(CACHE, {"machine": machine, "adaround_iters": DEFAULT_ITERS, "cells": cells},
                               overwrite=True, indent=1)
    write_markdown(index, cells, machine)


PWLQ_FAMILIES = ("pwlq", "pwlq_gauss", "pwlq_laplace", "mse")


def pwlq_rule_rows() -> list[tuple]:
    """Weight SQNR (dB, all conv/linear weights of a model) of PWLQ's grid search against its
    closed-form breakpoint rules (and ``mse`` for scale), per bundled model, W4 and W3, one LUT per layer."""
    import numpy as np

    rows = []
    for name in bundled_models():
        graph = import_onnx(MODELS_DIR / f"{name}.onnx")
        row = [name]
        for bits in (4, 3):
            config = AcceleratorConfig(weight_bits=bits, lut_scope="layer")
            for family in PWLQ_FAMILIES:
                start = time.perf_counter()
                weights = quantize_layer_weights(graph, config, QuantizeOptions(lut=family))
                seconds = time.perf_counter() - start
                signal = noise = 0.0
                for node in graph.nodes:
                    if node.name in weights:
                        w = weight_tensor(node, graph.shapes[node.inputs[0]])
                        signal += float(np.sum(w ** 2))
                        noise += float(np.sum((weights[node.name].dequantize() - w) ** 2))
                row.append(f"{10 * np.log10(signal / noise):.2f} ({seconds:.1f} s)")
        rows.append(tuple(row))
    return rows


def _fmt(c: dict) -> str:
    return f"{c['top1']:.2f} ({c['drop']:.2f})"


def write_markdown(index: dict, cells: dict, machine: str) -> None:
    lines = ["# Post-training methods on the LUT datapath (issue 12)", "",
             f"Generated by `python bench/ptq_results.py` on {machine} (do not edit by hand; cached per cell in "
             "`bench/ptq_results.json`). Every cell: 8-bit activations, the default "
             f"`{DEFAULT_LUT}` LUT family, per-channel power-of-two weight scales and shift-only requantization "
             "(except the `multiply_shift` reference: free float per-channel scales), one LUT per output channel "
             "or per layer; top-1 in percent through the bit-exact engine on the model's test split, "
             "(drop) = float - quantized in points; b/w = bits per weight counting codes, LUT tables, shifts "
             f"and biases of all conv/linear layers. AdaRound: {DEFAULT_ITERS} iterations per layer; `s` = "
             "seconds to quantize (post-training methods included) on this machine. CLE turns ReLU6 into ReLU "
             "(mobilenet_mnist), so its drop includes that change of the float network. `multipoint F`: "
             "round(F x output channels) extra points per requantized layer (W3 and W2 only; not every "
             "model), which cost array columns: their cycles follow each model's table.", ""]
    for name, info in index.items():
        rows = [c for c in cells.values() if c["model"] == name]
        if not rows:
            continue
        lines += [f"## {name} ({info['data']}, float top-1 {rows[0]['float_top1']:.2f}%)", ""]
        table = []
        for scope in LUT_SCOPES:
            for method in METHODS:
                row = [method, scope]
                for bits in BITS:
                    c = cells.get(cell_key(name, bits, scope, method))
                    row.append(_fmt(c) if c else "")
                    row.append(f"{c['bits_per_weight']:.2f}" if c else "")
                ada = cells.get(cell_key(name, 2, scope, method))
                row.append(f"{ada['quantize_seconds']:.0f}" if ada else "")
                if any(row[2:]):  # rows run on some models only (multipoint) are left out elsewhere
                    table.append(row)
        columns = ["method", "LUT per"]
        for bits in BITS:
            columns += [Column(f"W{bits}A8 top-1 (drop)", align="right"), Column(f"W{bits} b/w", align="right")]
        columns.append(Column("s (W2)", align="right"))
        lines += [Table(columns, table).markdown(), ""]
        cost = []
        for scope in LUT_SCOPES:
            for method in [m for m in METHODS if m.startswith("multipoint")]:
                row = [method, scope]
                for bits in MULTIPOINT_BITS:
                    c = cells.get(cell_key(name, bits, scope, method))
                    row.append(f"{c['extra_columns']}" if c else "")
                    row.append(f"+{c['extra_cycles']:,} (+{c['extra_cycles_pct']:.1f}%)" if c else "")
                if any(row[2:]):
                    cost.append(row)
        if cost:
            columns = ["multipoint", "LUT per"]
            for bits in MULTIPOINT_BITS:
                columns += [Column(f"W{bits} extra columns", align="right"),
                            Column(f"W{bits} extra cycles (accel perf)", align="right")]
            lines += ["Multipoint's hardware cost per inference (`accel perf`, default 8x8 array): its extra "
                      "array columns (points, all layers) and cycles against the same layers without them "
                      "(more column tiles, and the vector unit's shift-and-add epilogue).", "",
                      Table(columns, cost).markdown(), ""]
    lines += ["## Goals of issue 12 (power-of-two scales, best of the rows above without extra hardware)", ""]
    goals = []
    for name in index:
        shift = [c for c in cells.values()
                 if c["model"] == name and not c["method"].startswith(("multiply", "multipoint"))]
        if not shift:
            continue
        row = [name]
        for bits, scope, goal in ((3, None, 1.0), (2, None, 3.0), (4, "layer", 1.0)):
            pick = [c for c in shift if c["weight_bits"] == bits and (scope is None or c["lut_scope"] == scope)]
            best = min(pick, key=lambda c: c["drop"]) if pick else None
            row.append(f"{best['drop']:.2f} ({best['method']}, LUT per {best['lut_scope']}) "
                       f"{'yes' if best['drop'] <= goal else 'NO'}" if best else "")
        goals.append(row)
    lines += [Table(["model", "W3A8 drop <= 1.0", "W2A8 drop <= 3.0", "W4A8 LUT per layer drop <= 1.0"],
                    goals).markdown(), ""]
    lines += ["## PWLQ breakpoint: grid search against the paper's closed-form rules", "",
              "Weight SQNR in dB over all conv/linear weights (time to quantize them), one LUT per layer, "
              "per-channel power-of-two scales; `mse` (the default family) for scale.", ""]
    columns = ["model"] + [Column(f"W{b} {f}", align="right") for b in (4, 3) for f in PWLQ_FAMILIES]
    lines += [Table(columns, pwlq_rule_rows()).markdown(), ""]
    # This script owns one marked section of the committed, generated file; the others stay.
    update_section(RESULTS, "ptq", "\n".join(lines))


if __name__ == "__main__":
    main()
