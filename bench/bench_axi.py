"""AXI top throughput: cycles of a job (the CYCLES register) against tile depth, with and without back-pressure.

Runs 8 tiles of the default 8x8 array (64 pixels x 8 channels, random LUT and codes) at
reduction depths 8, 64 and 256 through ``accel_axi_top`` under Icarus (cocotbext-axi
source without gaps; sink always ready, then ready half the time at random), checks every
output against the contract, and prints input words, cycles and cycles per tile. These are
simulated cycles (exact, machine-independent), not wall-clock time.

    .venv/bin/python bench/bench_axi.py [--sim icarus|verilator]
"""

from __future__ import annotations

import argparse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim", default="icarus")
    args = ap.parse_args()

    import numpy as np

    from accel.compile import plan_tiles
    from accel.compile.axi_stream import axi_input_frames
    from accel.config import AcceleratorConfig
    from accel.report import Column, Table
    from accel.rtlsim import build_simulation
    from accel.rtlsim.axi import run_axi_jobs
    from tests.support.strategies import random_problem

    cfg = AcceleratorConfig()
    rng = np.random.default_rng(4)
    jobs = []
    for depth in (8, 64, 256):
        prob = random_problem(rng, cfg, pixels=64, depth=depth, channels=8, signed=True, name=f"K={depth}")
        jobs.append((prob.name, plan_tiles([prob], cfg), [prob.expected(cfg)]))
    build = build_simulation(cfg, args.sim, top="axi")
    rows = []
    for backpressure in (0.0, 0.5):
        for (name, plan, expected), res in zip(jobs, run_axi_jobs(build, jobs, seed=1, backpressure=backpressure)):
            if not np.array_equal(res.results(32)[0], expected[0]):
                raise SystemExit(f"{name}: outputs differ from the contract")
            words = sum(len(f) for f in axi_input_frames(plan, 32)) // 4
            rows.append((name, backpressure, words, res.cycles, res.cycles / len(plan.tiles), res.out_stalls))
    print(Table([Column("depth"), Column("tready low (p)", ".1f", "right"), Column("input words", align="right"),
                 Column("cycles", align="right"), Column("cycles/tile", ".1f", "right"),
                 Column("output stalls", align="right")], rows).markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
