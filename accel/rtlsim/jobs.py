"""Run tile plans on a built simulation: each run in its own private folder.

:func:`run_jobs` writes the memory images of each job (:mod:`accel.compile.images`)
into a fresh run folder under the cache's ``runs/``, runs the cocotb testbench
(:mod:`accel.rtlsim.testbench.accel_tb`) in one simulator process, and reads back
outputs and cycle counts. Concurrent runs never share a folder; a run folder is
removed after a successful run without waveforms and kept (and named in the
error) otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..compile import CoreLayout, TileCycles, TilePlan, pack_job, pack_outputs, schedule, split_plan, unpack_outputs
from ..compile.images import hex_to_bits, words_to_hex
from ..errors import ToolError
from .build import HARNESS_LIMITS, SimBuild

__all__ = ["TESTBENCH", "JobResult", "run_jobs", "run_plan", "run_testbench", "waves_file"]

#: The cocotb test module (package data of accel, imported by the simulator's Python).
TESTBENCH = "accel.rtlsim.testbench.accel_tb"


@dataclass
class JobResult:
    """What one job returned: the output bit matrix, cycles per tile, totals, wall-clock time."""

    plan: TilePlan
    out_bits: np.ndarray
    tile_cycles: list[TileCycles]
    total_cycles: int
    checker_mismatches: int  #: output beats the testbench's checker found different (all lanes)
    run_s: float    #: wall-clock seconds from reset release to done
    wall_s: float   #: the same with loading the memories and reading back the results
    expected_cycles: list[TileCycles] = field(default_factory=list)
    waves: Path | None = None  #: the waveform file of the run, when recorded

    def results(self) -> list[np.ndarray]:
        return unpack_outputs(self.plan, self.out_bits)


def waves_file(run_dir: str | os.PathLike, sim: str) -> Path:
    """Where a run with waveforms leaves them: VCD under Verilator, FST under Icarus."""
    return Path(run_dir) / "run" / ("accel_harness.fst" if sim == "icarus" else "dump.vcd")


def _write_job(job_dir: Path, plan: TilePlan, name: str, expected: list[np.ndarray] | None) -> None:
    image = pack_job(plan)
    job_dir.mkdir(parents=True)
    (job_dir / "job_head.hex").write_bytes(image.head)
    (job_dir / "job_control.hex").write_bytes(image.control)
    (job_dir / "job_data.hex").write_bytes(image.data)
    sched = schedule(plan)
    meta = {"name": name, "tiles": image.n_tiles, "timeout_cycles": 2 * (sched[-1].last_out + 1) + 1000}
    (job_dir / "job.json").write_text(json.dumps(meta))
    if expected is not None:
        (job_dir / "job_expect.hex").write_bytes(words_to_hex(pack_outputs(plan, expected)))


def _hex_words(path: Path) -> list[int]:
    """The words of a ``$writememh`` file (address comments skipped)."""
    return [int(line.split()[0], 16) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("//")]


def _new_run_dir(build: SimBuild, parent: str | os.PathLike | None) -> Path:
    parent = Path(parent) if parent is not None else build.cache / "runs"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f"{build.sim}-", dir=parent))
    except OSError as exc:
        raise ToolError(f"{parent}: cannot create a run folder ({exc.strerror})") from None


def run_jobs(build: SimBuild, jobs: list[tuple[str, TilePlan, list[np.ndarray] | None]],
             work: str | os.PathLike | None = None) -> list[JobResult]:
    """Run ``(name, plan, expected)`` jobs in one simulator process; plans larger than the harness split.

    ``expected`` (per problem, (P, N)), when given, is also checked inside the
    testbench. The run gets a private folder under ``work`` (default: the
    cache's ``runs/``). Returns one :class:`JobResult` per harness job, in order.
    """
    run_dir = _new_run_dir(build, work)
    job_dirs, job_plans = [], []
    lim = HARNESS_LIMITS
    for name, plan, expected in jobs:
        parts = split_plan(plan, max_tiles=lim["TILE_DEPTH"], max_data=lim["DATA_DEPTH"],
                           max_control=lim["CTRL_DEPTH"])
        for i, part in enumerate(parts):
            if part.output_beats > lim["OUT_DEPTH"]:
                raise ToolError(f"{name}: a job of {part.output_beats} output beats exceeds the harness")
            d = run_dir / f"job{len(job_dirs):04d}"
            _write_job(d, part, f"{name}#{i}" if len(parts) > 1 else name, expected)
            job_dirs.append(d)
            job_plans.append(part)
    (run_dir / "jobs.json").write_text(json.dumps([str(d) for d in job_dirs]))
    log = run_dir / "sim.log"
    failed = None
    try:
        run_testbench(build, TESTBENCH, run_dir, extra_env={"ACCEL_JOBS": str(run_dir / "jobs.json")})
    except SystemExit as exc:  # a failing cocotb test under pytest; the per-job results still count
        failed = exc
    out_width = CoreLayout.from_config(build.config).output_width
    results = []
    for d, plan in zip(job_dirs, job_plans):
        res_file = d / "result.json"
        if not res_file.exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise ToolError(f"{build.sim}: the simulation did not finish job {d.name} "
                            f"({failed or 'no result'}); see {log}\n{tail}")
        res = json.loads(res_file.read_text())
        bits = hex_to_bits((d / "job_out.hex").read_bytes(), out_width)
        cyc = _hex_words(d / "job_cycles.hex")
        measured = [TileCycles(cyc[2 * i], -1, cyc[2 * i + 1]) for i in range(len(plan.tiles))]
        results.append(JobResult(plan, bits, measured, res["cycles"], res["n_mismatched"], res["run_s"],
                                 res["wall_s"], schedule(plan),
                                 waves_file(run_dir, build.sim) if build.waves else None))
    if not build.waves and work is None:
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


def run_testbench(build: SimBuild, test_module: str, run_dir: str | os.PathLike, *,
                  extra_env: dict[str, str] | None = None) -> Path:
    """Run the cocotb module ``test_module`` on the harness of ``build``, in ``run_dir/run``.

    The module must be importable by the simulator's Python (it gets this process's
    ``sys.path``); it drives ``accel_harness`` (for example with
    :class:`accel.rtlsim.testbench.drivers.CoreDriver`). The log goes to
    ``run_dir/sim.log``, waveforms (with ``build.waves``) to :func:`waves_file`.
    Returns the results file (JUnit XML). Raises ``SystemExit`` when a test fails
    under pytest (cocotb's runner does).
    """
    run_dir = Path(run_dir)
    test_dir = run_dir / "run"
    test_dir.mkdir(parents=True, exist_ok=True)
    # The build folder is shared and read-only here: the Icarus waveform goes to this run's folder.
    plusargs = [f"+dumpfile_path={waves_file(run_dir, 'icarus')}"] if build.waves and build.sim == "icarus" else []
    return build.runner().test(
        test_module=test_module, hdl_toplevel="accel_harness", hdl_toplevel_lang="verilog",
        build_dir=str(build.build_dir), test_dir=str(test_dir), extra_env=dict(extra_env or {}), plusargs=plusargs,
        waves=build.waves, timescale=("1ns", "1ps") if build.sim == "icarus" else None,
        log_file=str(run_dir / "sim.log"))


def run_plan(build: SimBuild, plan: TilePlan, name: str = "plan",
             expected: list[np.ndarray] | None = None) -> list[JobResult]:
    """One plan (split into harness jobs when large); see :func:`run_jobs`."""
    return run_jobs(build, [(name, plan, expected)])
