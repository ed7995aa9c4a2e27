"""``accel sweep``: a design-space sweep on Dask, each point committed to SQLite, resumable."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..report import Column, Table
from .args import positive_int

__all__ = ["register", "run"]

#: Where the points go without ``--db``.
DEFAULT_DB = Path("out") / "sweep.db"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sweep", help="design-space sweep on Dask, each point committed to SQLite (resumable)",
                       description="Expand SWEEP.toml (grids and seeded random samples over LUT family and "
                                   "scope, granularity, post-training methods, bit widths, accumulator, array, "
                                   "PE kind, requantization and synthesis) into points and measure each: top-1 "
                                   "through the bit-exact engine, float top-1, cycles and energy per inference, "
                                   "bits per weight, LUTs/DSPs/Fmax when synthesis is on. Each finished point is "
                                   "committed at once; a rerun skips the finished ones. See docs/SWEEPS.md.")
    p.add_argument("sweep", metavar="SWEEP.toml", help="the sweep file")
    p.add_argument("--db", metavar="FILE", help=f"SQLite database of the points (default {DEFAULT_DB})")
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help="run on this Dask scheduler's workers (default: a local cluster of --workers processes)")
    p.add_argument("--workers", type=positive_int, default=1, metavar="N",
                   help="worker processes of the local cluster, one point each at a time (default 1)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N points of the sweep")
    p.add_argument("--json", action="store_true", help="print one JSON object: points_total, points_done, "
                   "points_skipped_as_done, db and more")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..sweep import load_points, load_spec, open_db, run_sweep
    from ..sweep.runner import check_scheduler_address

    if args.scheduler is not None:
        check_scheduler_address(args.scheduler)
        if args.workers != 1:
            raise UsageError("--workers sizes the local cluster; with --scheduler the cluster's own workers run")
    spec = load_spec(args.sweep)
    db = Path(args.db) if args.db else DEFAULT_DB
    if args.db is None:
        try:
            db.parent.mkdir(exist_ok=True)
        except OSError:
            pass  # open_db says what is wrong with the folder
    open_db(db).close()  # a bad database is one line now, not after the cluster has started
    summary = run_sweep(spec, db, scheduler=args.scheduler, workers=args.workers, limit=args.limit, progress=True)
    if args.json:
        print(json.dumps(summary.to_dict()))
        return 0
    rows = {point["key"]: point for point in load_points(db)}
    print(points_table([rows[key] for key in summary.keys if key in rows]).text())
    print(f"sweep {spec.name}: {summary.points_total} points in {db}: {summary.points_done} done "
          f"({summary.points_skipped_as_done} finished before this run), {summary.points_invalid} invalid, "
          f"{summary.points_failed} failed; {summary.points_computed} measured in {summary.seconds:g} s")
    return 0


def points_table(points: list[dict]) -> Table:
    """One line per point: its axes, status and measurements."""
    synth = any(point["lut4"] is not None for point in points)
    columns = [Column("point"), Column("status"), Column("top-1 %", ".2f", "right"),
               Column("float %", ".2f", "right"), Column("cycles", ",", "right"),
               Column("energy uJ", ".4f", "right"), Column("bits/w", ".2f", "right")]
    note = Column("why")
    if synth:
        columns += [Column("LUT4", ",", "right"), Column("DSP", "d", "right"), Column("Fmax MHz", ".1f", "right")]
    rows = []
    for point in points:
        axes = " ".join(f"{k}={v}" for k, v in point["params"].items()) or "(base)"
        row = [axes, point["status"], point["accuracy"], point["float_accuracy"], point["cycles"],
               point["energy_uj"], point["bits_per_weight"]]
        if synth:
            row += [point["lut4"], point["dsp"], point["fmax_mhz"]]
        rows.append([*row, point["error"]])
    return Table([*columns, note], rows)
