"""``accel inspect``: what an integer model holds, layer by layer."""

from __future__ import annotations

import argparse
import json

from ..ir import load_model
from ..ir.summary import summarize


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("inspect", help="list the layers, shapes, MACs and configuration of a .qmodel",
                       description="Load (and validate) an integer model and print its layers.")
    p.add_argument("model", metavar="MODEL.qmodel")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    summary = summarize(model)
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    cfg = model.config
    print(f"{args.model}: {len(model.layers)} layers, {summary['total_macs']:,} MACs per sample; "
          f"weight_bits={cfg.weight_bits} lut_scope={cfg.lut_scope.value} acc_bits={cfg.acc_bits} "
          f"overflow={cfg.overflow.value} requant={cfg.requant.value} rounding={cfg.rounding.value}")
    header = ("layer", "op", "inputs", "output shape", "dtype", "MACs", "LUT levels")
    rows = [(r["name"], r["op"], ", ".join(r["inputs"]), "x".join(map(str, r["shape"])), r["dtype"],
             f"{r['macs']:,}" if r["macs"] else "", str(r["lut_levels"] or "")) for r in summary["layers"]]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
    return 0
