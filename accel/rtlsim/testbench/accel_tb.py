"""cocotb testbench of the GEMM core: runs prepared jobs through ``accel_harness``.

The harness holds the memories and the clock; per job this testbench only
copies the memory images in, raises ``start``, waits for ``done`` and copies
the results out (no Python work per clock cycle). Jobs come from the
directory list in ``ACCEL_JOBS`` (prepared by :mod:`accel.rtlsim.jobs`);
each job directory may hold ``job_expect.hex`` (the model's output words, from
the engine/contract), which the checker compares word for word.
Results per job: ``job_out.hex``, ``job_cycles.hex``, ``job_stat.hex`` and
``result.json`` (cycles, wall-clock seconds of the run, mismatching beats).
"""

import json
import os
import shutil
import time
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

INPUTS = ("job_head.hex", "job_control.hex", "job_data.hex")
OUTPUTS = ("job_out.hex", "job_cycles.hex", "job_stat.hex")


def _words(path: Path) -> list[str]:
    return [ln.strip().lower() for ln in path.read_text().splitlines()
            if ln.strip() and not ln.startswith("//")]


def check_words(job: Path, got: list[str]) -> list[int]:
    """Beats whose words differ from ``job_expect.hex`` (the checker)."""
    expect_file = job / "job_expect.hex"
    if not expect_file.exists():
        return []
    expect = _words(expect_file)
    bad = [i for i, (e, g) in enumerate(zip(expect, got)) if int(e, 16) != int(g, 16)]
    if len(expect) != len(got):
        bad.append(min(len(expect), len(got)))
    return bad


@cocotb.test()
async def run_jobs(dut):
    """Run every job of ``ACCEL_JOBS`` and check its output words."""
    jobs = [Path(p) for p in json.loads(Path(os.environ["ACCEL_JOBS"]).read_text())]
    here = Path.cwd()
    dut.start.value = 0
    await Timer(1, "ns")
    failures = []
    for job in jobs:
        meta = json.loads((job / "job.json").read_text())
        for name in INPUTS:
            shutil.copyfile(job / name, here / name)
        for name in OUTPUTS:
            (here / name).unlink(missing_ok=True)
        t0 = time.perf_counter()
        dut.start.value = 1
        await RisingEdge(dut.running)
        t_run = time.perf_counter()
        await with_timeout(RisingEdge(dut.done), 10 * (meta["timeout_cycles"] + 100), "ns")
        t_done = time.perf_counter()
        for name in OUTPUTS:
            shutil.copyfile(here / name, job / name)
        dut.start.value = 0
        await FallingEdge(dut.done)
        got = _words(job / "job_out.hex")
        bad = check_words(job, got)
        cycles = int(_words(job / "job_stat.hex")[0], 16)
        # run_s: reset release to done (the design running); wall_s: also loading and read-back.
        run_s, wall_s = t_done - t_run, time.perf_counter() - t0
        (job / "result.json").write_text(json.dumps(
            {"cycles": cycles, "run_s": run_s, "wall_s": wall_s, "mismatched_beats": bad[:100],
             "n_mismatched": len(bad)}))
        dut._log.info("job %s: %d cycles, run %.3f s (%.0f cycles/s), with load %.3f s, %d mismatching beats",
                      meta.get("name", job.name), cycles, run_s, cycles / max(run_s, 1e-9), wall_s, len(bad))
        if bad:
            failures.append(f"{meta.get('name', job.name)}: {len(bad)} output beats differ, first {bad[0]}")
    assert not failures, "; ".join(failures)
