"""``accel demo``: the main job on the bundled models, end to end, with a report in ``out/``."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quantize and evaluate the bundled models; report in out/",
                       description="Quantize every bundled model with the defaults of "
                                   "`accel quantize`, evaluate it through the bit-exact engine on its test "
                                   "split, run the layers of cnn_digits on the generated Verilog under a "
                                   "simulator against the engine, and write out/demo_report.md, "
                                   "out/demo_report.json, out/rtl_cycles.json and the .qmodel files.")
    p.add_argument("-o", "--out", default="out", metavar="DIR", help="report folder (default out/)")
    p.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                   help="simulator for the RTL check (default verilator)")
    p.add_argument("--build-dir", metavar="DIR", help="cache folder for the simulator build (default "
                                                      "$ACCEL_CACHE_DIR, else $XDG_CACHE_HOME/accel or ~/.cache/accel)")
    p.add_argument("--no-rtl", action="store_true", help="skip running layers on the RTL")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import format_rtl, run_main_job
    from ..frontend.workflow import format_demo

    report = run_main_job(args.out, rtl=not args.no_rtl, sim=args.sim, build_dir=args.build_dir)
    print(format_demo(report))
    if "rtl" in report:
        print()
        print(format_rtl(report["rtl"]))
    print(f"report: {args.out}/demo_report.md, {args.out}/demo_report.json")
    return 0 if report.get("rtl", {}).get("ok", True) else 1
