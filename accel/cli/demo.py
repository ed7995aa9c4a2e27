"""``accel demo``: the main job on the bundled models, end to end, with a report in ``out/``."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quantize and evaluate the bundled models; report in out/",
                       description="Quantize every bundled model (models/) with the defaults of "
                                   "`accel quantize`, evaluate it through the bit-exact engine on its test "
                                   "split and write out/demo_report.md, out/demo_report.json and the "
                                   ".qmodel files.")
    p.add_argument("-o", "--out", default="out", metavar="DIR", help="report folder (default out/)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frontend.workflow import format_demo, run_demo

    report = run_demo(args.out)
    print(format_demo(report))
    print(f"report: {args.out}/demo_report.md, {args.out}/demo_report.json")
    return 0
