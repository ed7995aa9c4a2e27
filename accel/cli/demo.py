"""``accel demo``: the main job on the bundled models, end to end, with a report in ``out/``."""

from __future__ import annotations

import argparse

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="quantize, evaluate, simulate and sweep the bundled models; report in out/",
                       description="Quantize every bundled model with the defaults of "
                                   "`accel quantize`, evaluate it through the bit-exact engine on its test "
                                   "split, price cnn_digits layer by layer (cycles, energy; area and Fmax "
                                   "when `accel rtl synth` has cached them), run its layers on the generated "
                                   "Verilog under a simulator against the engine, sweep LUT family x weight "
                                   "bits x array size on it (Dask, out/sweep.db) into an HTML report "
                                   "(out/report/report.html), and write out/demo_report.md, "
                                   "out/demo_report.json, out/rtl_cycles.json and the .qmodel files. "
                                   "About a minute on 2 cores after set-up.")
    p.add_argument("-o", "--out", default="out", metavar="DIR", help="report folder (default out/)")
    p.add_argument("--sim", choices=("verilator", "icarus"),
                   help="simulator for the RTL check (default verilator)")
    p.add_argument("--build-dir", metavar="DIR", help="cache folder for the simulator build (default "
                                                      "$ACCEL_CACHE_DIR, else $XDG_CACHE_HOME/accel or ~/.cache/accel)")
    p.add_argument("--no-rtl", action="store_true", help="skip running layers on the RTL")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep and its HTML report")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier run in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo import REPORT_FILES, report_text, run_main_job
    from ..errors import UsageError

    if args.no_rtl and args.sim:
        raise UsageError("--sim chooses the simulator of the RTL check; it has no effect with --no-rtl")
    report = run_main_job(args.out, rtl=not args.no_rtl, sim=args.sim or "verilator", overwrite=args.force,
                          sweep=not args.no_sweep, build_dir=args.build_dir)
    print(report_text(report))
    print("report: " + ", ".join(f"{args.out}/{name}" for name in REPORT_FILES)
          + (f", {report['sweep']['report']}" if "sweep" in report else ""))
    return 0 if report.get("rtl", {}).get("ok", True) else 1
