"""cocotb testbench of the GEMM core: runs prepared jobs through ``accel_harness``.

The harness holds the memories and the clock; per job this testbench hands the
job's memory images to :class:`~accel.rtlsim.testbench.drivers.CoreDriver`
(which raises ``start`` and waits for ``done``) and reads the results with
:class:`~accel.rtlsim.testbench.drivers.OutputMonitor` (no Python work per
clock cycle). Jobs come from the directory list in ``ACCEL_JOBS`` (prepared by
:mod:`accel.rtlsim.jobs`); each job directory may hold ``job_expect.hex`` (the
model's output words, from the engine/contract), which the checker compares
word for word. Results per job: ``job_out.hex``, ``job_cycles.hex``,
``job_stat.hex`` and ``result.json`` (cycles, wall-clock seconds of the run,
mismatching beats).
"""

import json
import os
from pathlib import Path

import cocotb

from .drivers import INPUTS, CoreDriver, OutputMonitor, read_words


def check_words(job: Path, got: list[str]) -> list[int]:
    """Beats whose words differ from ``job_expect.hex`` (the checker)."""
    expect_file = job / "job_expect.hex"
    if not expect_file.exists():
        return []
    expect = read_words(expect_file)
    bad = [i for i, (e, g) in enumerate(zip(expect, got)) if int(e, 16) != int(g, 16)]
    if len(expect) != len(got):
        bad.append(min(len(expect), len(got)))
    return bad


@cocotb.test()
async def run_jobs(dut):
    """Run every job of ``ACCEL_JOBS`` and check its output words."""
    jobs = [Path(p) for p in json.loads(Path(os.environ["ACCEL_JOBS"]).read_text())]
    driver, monitor = CoreDriver(dut), OutputMonitor(dut)
    await driver.reset()
    failures = []
    for job in jobs:
        meta = json.loads((job / "job.json").read_text())
        head, control, data = ((job / name).read_bytes() for name in INPUTS)
        times = await driver.run_images(head, control, data, meta["timeout_cycles"])
        monitor.save_to(job)
        got = monitor.collect()
        bad = check_words(job, got.words)
        cycles = got.total_cycles
        (job / "result.json").write_text(json.dumps(
            {"cycles": cycles, "run_s": times.run_s, "wall_s": times.wall_s, "mismatched_beats": bad[:100],
             "n_mismatched": len(bad)}))
        dut._log.info("job %s: %d cycles, run %.3f s (%.0f cycles/s), with load %.3f s, %d mismatching beats",
                      meta.get("name", job.name), cycles, times.run_s, cycles / max(times.run_s, 1e-9),
                      times.wall_s, len(bad))
        if bad:
            failures.append(f"{meta.get('name', job.name)}: {len(bad)} output beats differ, first {bad[0]}")
    assert not failures, "; ".join(failures)
