"""``accel inspect``: what an integer model holds, layer by layer."""

from __future__ import annotations

import argparse
import json

from ..ir import load_model
from ..ir.summary import summarize
from ..report import Column, Table


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
    table = Table([Column("layer"), Column("op"), Column("inputs"), Column("output shape"), Column("dtype"),
                   Column("MACs", ",", "right"), Column("LUT levels", align="right")],
                  [(r["name"], _op(r), ", ".join(r["inputs"]), "x".join(map(str, r["shape"])), r["dtype"],
                    r["macs"] or None, r["lut_levels"] or None) for r in summary["layers"]])
    print(table.text())
    return 0


def _op(row: dict) -> str:
    """The op, with a multipoint layer's extra points (array columns): ``conv2d +3 pts``."""
    return f"{row['op']} +{row['points']} pts" if row["points"] else row["op"]
