"""Quantization-aware training against post-training quantization on the bundled models.

Usage::

    .venv/bin/python bench/qat_results.py [--epochs N] [--models a,b] [--configs W4A8,W2A4]
                                          [--calib-method mse] [--schedule cosine] [--learn-offsets]

For every bundled model and every configuration (W4A8, W4A4, W2A8, W2A4 by default): the
post-training model (the front end's defaults, or ``--calib-method``), then ``accel train``'s
defaults plus learned LUTs and distillation (and the other options given) for ``--epochs`` epochs
on the training split; top-1 of both through the engine on the test split, the training time, and
the export check (engine logits equal to the trained network's on every test image). Each finished
cell is saved at once to ``docs/qat_results.json`` with its recipe (a rerun with the same recipe
skips it, so an interrupted run resumes; another recipe replaces that model's and configuration's
cell); the table goes to its own section of ``docs/RESULTS.md``.

The W4A4 cells of the committed table: ``--configs W4A4 --epochs 5 --calib-method mse``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

import torch  # noqa: E402

from accel.data import load_dataset  # noqa: E402
from accel.frontend.calibrate import DEFAULT_METHOD, METHODS  # noqa: E402
from accel.frontend.evaluate import evaluate  # noqa: E402
from accel.frontend.onnx_import import import_onnx  # noqa: E402
from accel.frontend.qat import SCHEDULES, TrainOptions, export, prepare, train  # noqa: E402
from accel.frontend.quantize import QuantizeOptions  # noqa: E402
from accel.frontend.workflow import MODELS_DIR, bundled_models, make_config  # noqa: E402
from accel.report import Column, Table, write_json  # noqa: E402
from accel.report.sections import update_section  # noqa: E402

CONFIGS = ("W4A8", "W4A4", "W2A8", "W2A4")
#: Goals of issue 13: the largest drop (float - trained, points) allowed per configuration.
GOALS = {"W2A8": 1.5, "W4A4": 1.0}
RESULTS_JSON = ROOT / "docs" / "qat_results.json"
RESULTS_MD = ROOT / "docs" / "RESULTS.md"


def _bits(config: str) -> tuple[int, int]:
    w, a = config[1:].split("A")
    return int(w), int(a)


def run_cell(name: str, info: dict, config: str, opts: TrainOptions, calib_method: str) -> dict:
    """Post-training and trained top-1 of one model at one configuration."""
    wb, ab = _bits(config)
    graph = import_onnx(MODELS_DIR / f"{name}.onnx")
    train_set, test_set = load_dataset(info["data"], "train"), load_dataset(info["data"], "test")
    net, start = prepare(graph, train_set.x, make_config(weight_bits=wb, act_bits=ab),
                         QuantizeOptions(calib_method=calib_method), learn_lut=opts.learn_lut,
                         learn_scales=opts.learn_scales, learn_offsets=opts.learn_offsets)
    ptq = evaluate(start, test_set, sqnr=False).quant_top1
    began = time.perf_counter()
    history = train(net, train_set.x, train_set.y, opts)
    seconds = time.perf_counter() - began
    _, check = export(net, test_set.x, test_set.y)
    return {"model": name, "config": config, "float_top1": info["float_top1"], "ptq_top1": ptq,
            "qat_top1": check["top1"], "epochs": opts.epochs, "train_seconds": seconds,
            "equal_logits": check["equal_logits"], "test_images": check["images"], "history": history,
            "options": asdict(opts), "calib_method": calib_method}


def _recipe(cell: dict) -> str:
    """What a cell's training did beyond the common settings of the section."""
    opts = cell["options"]
    parts = [f"{cell.get('calib_method', 'percentile')} calibration"]
    if opts.get("schedule", "constant") != "constant":
        parts.append(f"{opts['schedule']} rates")
    if opts.get("learn_offsets"):
        parts.append("offsets")
    return ", ".join(parts)


def write_section(results: dict) -> None:
    cells = sorted(results["cells"], key=lambda c: (list(bundled_models()).index(c["model"]),
                                                    CONFIGS.index(c["config"]) if c["config"] in CONFIGS else 99))
    opts = results["options"]
    pct = {"fmt": ".2f", "align": "right"}
    rows = [(c["model"], c["config"], c["float_top1"], c["ptq_top1"], c["float_top1"] - c["ptq_top1"],
             c["qat_top1"], c["float_top1"] - c["qat_top1"], c["epochs"], _recipe(c), c["train_seconds"],
             c["train_seconds"] / c["epochs"], f"{c['equal_logits']}/{c['test_images']}") for c in cells]
    table = Table(["model", "config", Column("float", **pct), Column("post-training", **pct),
                   Column("drop", **pct), Column("trained", **pct), Column("drop", **pct),
                   Column("epochs", align="right"), "recipe", Column("train s", fmt=".0f", align="right"),
                   Column("s/epoch", fmt=".1f", align="right"), "engine = trained"], rows)
    goal_rows = []
    for config, limit in GOALS.items():
        for c in (c for c in cells if c["config"] == config):
            drop = c["float_top1"] - c["qat_top1"]
            goal_rows.append((c["model"], config, f"<= {limit}", drop, "yes" if drop <= limit else "NO"))
    goals = Table(["model", "config", "goal (drop)", Column("drop", **pct), "met?"], goal_rows)
    body = "\n".join([
        "## Quantization-aware training (issue 13)", "",
        f"Generated by `python bench/qat_results.py` (do not edit by hand) on {results['machine']}. "
        f"Post-training: the front end's defaults (`mse` LUT per output channel, per-channel power-of-two "
        f"scales, the calibration of the `recipe` column). Trained: `accel train` from that point for the "
        f"`epochs` given (batch {opts['batch_size']}, Adam: weights {opts['lr']}, log2 scales of activations "
        f"{opts['scale_lr']} and of weights {opts['weight_scale_lr']}, "
        f"LUT levels {opts['lut_lr']}; learned LUTs {'on' if opts['learn_lut'] else 'off'}, distillation "
        f"{'on' if opts['distill'] else 'off'}) on the training split; top-1 in percent through the engine "
        f"on the test split; `engine = trained`: test images whose logits through the engine equal the "
        f"trained network's exactly; `train s` and `s/epoch`: wall-clock seconds of training on this machine "
        f"(2 torch threads), shared with other work (not a benchmark). The W4A4 rows use the recipe of "
        f"docs/QAT.md (5 epochs from an `mse` calibration: "
        f"`bench/qat_results.py --configs W4A4 --epochs 5 --calib-method mse`); the others, 2 epochs from the "
        f"default `percentile` calibration.", "",
        table.markdown(), "", "Goals after at most 5 epochs:", "", goals.markdown(), ""])
    update_section(RESULTS_MD, "qat", body)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--models", help="comma-separated bundled model names (default: all)")
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--no-lut", action="store_true", help="keep the post-training LUT levels")
    parser.add_argument("--no-distill", action="store_true")
    parser.add_argument("--calib-method", choices=METHODS, default=DEFAULT_METHOD)
    parser.add_argument("--schedule", choices=SCHEDULES, default="constant")
    parser.add_argument("--learn-offsets", action="store_true")
    args = parser.parse_args(argv)
    opts = TrainOptions(epochs=args.epochs, learn_lut=not args.no_lut, distill=not args.no_distill,
                        schedule=args.schedule, learn_offsets=args.learn_offsets)
    index = bundled_models()
    names = args.models.split(",") if args.models else list(index)
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} with "
               f"{torch.get_num_threads()} threads, Python {platform.python_version()}")
    common = {k: v for k, v in asdict(opts).items() if k not in ("epochs", "schedule", "learn_offsets")}
    results = {"machine": machine, "options": common, "cells": []}
    if RESULTS_JSON.exists():
        old = json.loads(RESULTS_JSON.read_text())
        for cell in old["cells"]:  # cells written before recipes were recorded per cell: the file's options
            cell.setdefault("options", old.get("options", {}))
            cell.setdefault("calib_method", DEFAULT_METHOD)
        if all(old.get("options", {}).get(k, v) == v for k, v in common.items()):  # options added since: defaults
            results["cells"] = old["cells"]
    for name in names:
        for config in args.configs.split(","):
            if any(c["model"] == name and c["config"] == config and c["options"] == asdict(opts)
                   and c["calib_method"] == args.calib_method for c in results["cells"]):
                continue
            cell = run_cell(name, index[name], config, opts, args.calib_method)
            results["cells"] = [c for c in results["cells"] if (c["model"], c["config"]) != (name, config)]
            print(f"{name} {config}: float {cell['float_top1']:.2f} post-training {cell['ptq_top1']:.2f} trained "
                  f"{cell['qat_top1']:.2f} in {cell['train_seconds']:.0f} s, logits equal on "
                  f"{cell['equal_logits']}/{cell['test_images']}", flush=True)
            results["cells"].append(cell)
            results["machine"] = machine
            write_json(RESULTS_JSON, results, overwrite=True)
            write_section(results)
    if results["cells"]:
        write_section(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
