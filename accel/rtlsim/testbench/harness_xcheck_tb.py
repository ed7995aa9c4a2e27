"""cocotb check of the core harness under Icarus: no X/Z on the core's control signals after reset.

Runs the jobs of ``ACCEL_JOBS`` (prepared by :mod:`accel.rtlsim.jobs`) through
``accel_harness`` as :mod:`accel.rtlsim.testbench.accel_tb` does, but with an
:class:`~accel.rtlsim.testbench.xcheck.XMonitor` sampling every cycle: the ready/valid/busy
signals of every core stream always, the output payload while ``out__valid``. With
``ACCEL_XCHECK_DEEP=1`` it also watches every signal inside the core (slow; to find a source).
Findings go to ``xcheck.json`` in each job folder's parent.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge
from cocotb.types import Logic, LogicArray

from accel.rtlsim.testbench.xcheck import XMonitor

INPUTS = ("job_head.hex", "job_control.hex", "job_data.hex")


def _leaves(handle, depth=0):
    """Every signal below ``handle`` (hierarchy walk), for the deep check."""
    out = []
    for child in handle:
        try:
            value = child.value
        except (AttributeError, TypeError, NotImplementedError):  # a scope: descend
            if depth < 8:
                out += _leaves(child, depth + 1)
            continue
        if isinstance(value, (Logic, LogicArray)):  # memories (arrays) are left out
            out.append(child)
    return out


@cocotb.test()
async def no_x_after_reset(dut):
    """Run every job with the X/Z monitor on; fail on any finding."""
    jobs = [Path(p) for p in json.loads(Path(os.environ["ACCEL_JOBS"]).read_text())]
    here = Path.cwd()
    dut.start.value = 0
    always = [dut.lut_ready, dut.tile_ready, dut.data_ready, dut.out_valid, dut.busy]
    qualified = [(dut.out_valid, dut.out_payload)]
    if os.environ.get("ACCEL_XCHECK_DEEP"):
        always += _leaves(dut.core)
    findings = []
    for job in jobs:
        for name in INPUTS:
            (here / name).write_bytes((job / name).read_bytes())
        dut.start.value = 1
        await RisingEdge(dut.running)  # reset released: the monitor starts here
        monitor = XMonitor(dut.clk, always, qualified).start()
        await RisingEdge(dut.done)
        monitor.stop()
        findings += [f"{job.name}: {f}" for f in monitor.findings]
        dut.start.value = 0
        await FallingEdge(dut.done)
    (jobs[0].parent / "xcheck.json").write_text(json.dumps(findings))
    assert not findings, "; ".join(findings[:10])
