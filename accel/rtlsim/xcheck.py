"""X/Z after reset: run tile plans through the core harness under Icarus with an X monitor.

Verilator is two-state (an X reads as 0 or 1), so only a four-state simulator can show an
undefined control signal; :func:`harness_x_findings` runs
:mod:`accel.rtlsim.testbench.harness_xcheck_tb` on a harness build and returns what the
monitor saw (an empty list when every sampled signal was 0/1).
"""

from __future__ import annotations

import json
import shutil

from ..compile import TilePlan
from ..errors import ToolError
from .build import SimBuild
from .jobs import _new_run_dir, _write_job

__all__ = ["XCHECK_TESTBENCH", "harness_x_findings"]

XCHECK_TESTBENCH = "accel.rtlsim.testbench.harness_xcheck_tb"


def harness_x_findings(build: SimBuild, plans: list[tuple[str, TilePlan]], *, deep: bool = False) -> list[str]:
    """X/Z findings (``"jobNNNN: cycle C: signal = value"``) of ``plans`` run on the harness in ``build``.

    ``deep`` also watches every signal inside the core (slow), to find where an X comes from.
    """
    if build.top != "harness":
        raise ToolError("harness_x_findings needs a build of the core harness")
    run_dir = _new_run_dir(build, None)
    job_dirs = []
    for i, (name, plan) in enumerate(plans):
        d = run_dir / f"job{i:04d}"
        _write_job(d, plan, name, None)
        job_dirs.append(d)
    (run_dir / "jobs.json").write_text(json.dumps([str(d) for d in job_dirs]))
    test_dir = run_dir / "run"
    test_dir.mkdir()
    log = run_dir / "sim.log"
    env = {"ACCEL_JOBS": str(run_dir / "jobs.json"), **({"ACCEL_XCHECK_DEEP": "1"} if deep else {})}
    try:
        build.runner().test(test_module=XCHECK_TESTBENCH, hdl_toplevel=build.toplevel, hdl_toplevel_lang="verilog",
                            build_dir=str(build.build_dir), test_dir=str(test_dir), extra_env=env,
                            timescale=("1ns", "1ps") if build.sim == "icarus" else None, log_file=str(log))
    except SystemExit:  # the findings file says what failed
        pass
    found = run_dir / "xcheck.json"
    if not found.exists():
        tail = log.read_text()[-3000:] if log.exists() else ""
        raise ToolError(f"{build.sim}: the X check did not finish; see {log}\n{tail}")
    findings = json.loads(found.read_text())
    if not findings:
        shutil.rmtree(run_dir, ignore_errors=True)
    return findings

