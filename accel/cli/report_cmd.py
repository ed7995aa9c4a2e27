"""``accel report``: a sweep's database to an HTML report with Pareto plots."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]

#: Where the report goes without ``-o``.
DEFAULT_DIR = "out/report"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="HTML report with Pareto plots of a sweep's database",
                       description="Read the SQLite database of accel sweep (read-only) and write DIR/report.html: "
                                   "Pareto fronts of accuracy against energy, cycles, LUT4/DSP (when synthesized) "
                                   "and bits per weight, a sortable table of every point, the failed and invalid "
                                   "points with their errors, and each Pareto point's accelerator TOML "
                                   "(DIR/configs/) with its accel quantize command line. The plots are also "
                                   "written as PNG files in DIR. The page needs no network.")
    p.add_argument("db", metavar="DB", help="the sweep's database (accel sweep --db; default out/sweep.db there)")
    p.add_argument("-o", "--output", default=DEFAULT_DIR, metavar="DIR",
                   help=f"folder of the report (default {DEFAULT_DIR}; created when missing)")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier report in DIR")
    p.add_argument("--json", action="store_true", help="print the paths written and the point counts as JSON")
    p.set_defaults(func=run)


def _onnx_path(model: str) -> str:
    """A bundled model's ONNX file for its name (as a sweep names it), else the model as given."""
    from ..frontend.workflow import MODELS_DIR, bundled_models

    return str(MODELS_DIR / f"{model}.onnx") if model in bundled_models() else model


def run(args: argparse.Namespace) -> int:
    from ..report.sweep_report import write_sweep_report

    report = write_sweep_report(args.db, args.output, overwrite=args.force, model_path=_onnx_path)
    print(json.dumps(report.to_dict(), indent=1) if args.json else report.summary())
    return 0
