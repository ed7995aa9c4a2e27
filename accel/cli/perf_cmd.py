"""``accel perf``: cycles, energy, weight storage and activation compression of an integer model."""

from __future__ import annotations

import argparse
import csv
import json
import sys

from ..report import Table
from .args import positive_int

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("perf", help="per-layer and total cycles, energy, bits per weight of a .qmodel",
                       description="Price one inference of MODEL on an accelerator configuration: cycles of "
                                   "the MAC array (exactly as the RTL) and the vector unit, DRAM traffic and "
                                   "stalls, energy by component, weight storage, and with --data the "
                                   "sparsity and coded size of every activation map (docs/PERF.md).")
    p.add_argument("model", metavar="MODEL.qmodel")
    p.add_argument("--config", metavar="CFG.toml", help="configuration to price (default: the model's); "
                   "weight_bits and requant must be the model's")
    p.add_argument("--data", metavar="DATA", help="mnist5k, digits or an .npz: measure activations on its "
                   "test images through the engine")
    p.add_argument("--images", type=positive_int, default=100, metavar="N", help="images of --data (default 100)")
    p.add_argument("--gate-zero-macs", action="store_true",
                   help="MACs with a zero activation cost no multiply/add energy")
    p.add_argument("--compare", action="store_true", help="also price plain int8 weights with "
                   "multiply_shift, and activation coding toggled")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print one JSON object")
    out.add_argument("--csv", action="store_true", help="print the per-layer table as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="write a chart of cycles and energy per layer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..ir import load_model
    from ..perf import check_compatible, estimate
    from ..perf.compare import LAYER_HEADER, TOTALS_HEADER, compare, layer_rows, totals_row
    from ..perf.plot import check_plot_path, plot_network

    if args.plot:
        check_plot_path(args.plot)
    model = load_model(args.model)
    config = load_config(args.config) if args.config else model.config
    check_compatible(model, config, args.config or "config")
    stats = None
    if args.data:
        from ..perf.activations import dataset_inputs, measure_activations

        stats = measure_activations(model, dataset_inputs(model, args.data, args.images))
    if args.compare:
        designs = compare(model, config, stats, gate_zero_macs=args.gate_zero_macs)
    else:
        designs = [estimate(model, config, stats, gate_zero_macs=args.gate_zero_macs)]
    perf = designs[0]
    if args.plot:
        plot_network(perf, args.plot)
    if args.json:
        print(json.dumps({**perf.to_dict(), "compare": [d.totals() for d in designs[1:]]}, indent=1))
    elif args.csv:
        rows = [lay.to_dict() for lay in perf.layers]
        writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    else:
        cfg = perf.config
        print(f"{args.model} on {cfg.rows}x{cfg.cols} at {cfg.clock_mhz:g} MHz, activation coding "
              f"{'on' if cfg.activation_coding else 'off'}"
              + (f", activations of {stats.images} images of {args.data}" if stats else ""))
        print(Table(LAYER_HEADER, layer_rows(perf)).text())
        print()
        print(Table(TOTALS_HEADER, [totals_row(d) for d in designs]).text())
        if args.plot:
            print(f"wrote {args.plot}")
    return 0
