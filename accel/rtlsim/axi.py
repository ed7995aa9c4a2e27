"""Run tile plans through the AXI top level (``accel_axi_top``) under cocotb and cocotbext-axi.

:func:`run_axi_jobs` frames each plan for the AXI top (:mod:`accel.compile.axi_stream`),
writes the jobs into a fresh run folder, runs :mod:`accel.rtlsim.testbench.axi_tb` in one
simulator process (random gaps on the input stream and random back-pressure on the
output, from a seed) and returns what came back, to be compared with the engine.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field

import numpy as np

from ..compile import TilePlan, schedule, unpack_outputs
from ..compile.axi_stream import axi_input_frames, axi_layer_registers, axi_output_bits, axi_output_frames
from ..errors import ToolError
from ..hw.axi_top import REGISTERS
from .build import SimBuild
from .jobs import _new_run_dir

__all__ = ["AXI_TESTBENCH", "AxiJobResult", "run_axi_jobs"]

#: The cocotb test module of the AXI top.
AXI_TESTBENCH = "accel.rtlsim.testbench.axi_tb"


@dataclass
class AxiJobResult:
    """What one job returned through the AXI buses."""

    name: str
    plan: TilePlan
    frames: list[bytes]            #: output frames, one per tile (tlast-delimited)
    expected_frames: list[bytes]   #: what the contract says they hold (every lane)
    cycles: int                    #: the CYCLES register: START to done
    out_stalls: int                #: the OUT_STALLS register: cycles the sink held tready low
    tiles_done: int
    status: int
    irq: int
    readback_errors: list[str] = field(default_factory=list)
    x_findings: list[str] = field(default_factory=list)

    def results(self, bus_bits: int) -> list[np.ndarray]:
        """Per problem, the (P, N) results (as :func:`~accel.compile.images.unpack_outputs`)."""
        return unpack_outputs(self.plan, axi_output_bits(self.plan, self.frames, bus_bits))


def run_axi_jobs(build: SimBuild, jobs: list[tuple[str, TilePlan, list[np.ndarray]]], *, seed: int = 0,
                 backpressure: float = 0.0, gaps: float = 0.0, bus_bits: int = 32,
                 work: str | os.PathLike | None = None) -> list[AxiJobResult]:
    """Run ``(name, plan, expected)`` jobs through the AXI top built in ``build`` (``top="axi"``).

    ``backpressure`` and ``gaps`` are the probabilities that the sink holds ``tready`` low
    and that the source leaves ``tvalid`` low in a cycle (random, from ``seed``).
    """
    if build.top != "axi":
        raise ToolError("run_axi_jobs needs a build of the AXI top (build_simulation(..., top='axi'))")
    run_dir = _new_run_dir(build, work)
    job_dirs, expected_frames = [], []
    for i, (name, plan, expected) in enumerate(jobs):
        d = run_dir / f"job{i:04d}"
        d.mkdir()
        frames = axi_input_frames(plan, bus_bits)
        (d / "in.bin").write_bytes(b"".join(frames))
        sched = schedule(plan)
        (d / "job.json").write_text(json.dumps({
            "name": name, "registers": axi_layer_registers(plan), "frame_lengths": [len(f) for f in frames],
            "tiles": len(plan.tiles), "seed": seed + i, "gap_probability": gaps,
            "backpressure_probability": backpressure,
            "timeout_cycles": sum(len(f) for f in frames) + sched[-1].last_out + 1}))
        job_dirs.append(d)
        expected_frames.append(axi_output_frames(plan, expected, bus_bits))
    registers = {name: offset for name, (offset, _, _) in REGISTERS.items()}
    (run_dir / "jobs.json").write_text(json.dumps({"jobs": [str(d) for d in job_dirs], "registers": registers}))
    test_dir = run_dir / "run"
    test_dir.mkdir()
    log = run_dir / "sim.log"
    failed = None
    try:
        build.runner().test(test_module=AXI_TESTBENCH, hdl_toplevel=build.toplevel, hdl_toplevel_lang="verilog",
                            build_dir=str(build.build_dir), test_dir=str(test_dir),
                            extra_env={"ACCEL_AXI_JOBS": str(run_dir / "jobs.json")},
                            timescale=("1ns", "1ps") if build.sim == "icarus" else None, log_file=str(log))
    except SystemExit as exc:  # a failing cocotb test; the per-job results say what failed
        failed = exc
    results = []
    for d, (name, plan, _), exp in zip(job_dirs, jobs, expected_frames):
        if not (d / "result.json").exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise ToolError(f"{build.sim}: the AXI simulation did not finish job {name!r} "
                            f"({failed or 'no result'}); see {log}\n{tail}")
        res = json.loads((d / "result.json").read_text())
        data = (d / "out.bin").read_bytes()
        frames, pos = [], 0
        for length in res["frame_lengths"]:
            frames.append(data[pos:pos + length])
            pos += length
        results.append(AxiJobResult(name, plan, frames, exp, res["CYCLES"], res["OUT_STALLS"], res["TILES_DONE"],
                                    res["status"], res["irq"], res["readback_errors"], res["x_findings"]))
    if work is None and failed is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results
