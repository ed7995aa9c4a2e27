"""cocotb testbench of the AXI top level (``accel_axi_top``) with cocotbext-axi.

Jobs come from the directory list in ``ACCEL_AXI_JOBS`` (prepared by
:mod:`accel.rtlsim.axi`). Per job (``job.json``: the register values, the input frame
lengths, the expected tile count, the random seed, the pause probabilities) it writes the
layer registers over AXI4-Lite, starts the job, sends the frames of ``in.bin`` on
``s_axis`` with random gaps, takes the output frames on ``m_axis`` under random
back-pressure, waits for ``STATUS.done`` and reads the counters. Results: ``out.bin``
(the output frames, concatenated) and ``result.json`` (frame lengths, counters, register
read-back errors, X/Z findings of the monitor). The Python side compares the outputs with
the engine.
"""

import json
import os
import random
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from accel.rtlsim.testbench.xcheck import XMonitor

CLOCK_NS = 10


def _pauses(rng: random.Random, probability: float):
    while True:
        yield rng.random() < probability


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & (1 << 31) else value


async def _run_job(dut, job: Path, axil, source, sink, regs: dict) -> dict:
    meta = json.loads((job / "job.json").read_text())
    rng = random.Random(meta["seed"])
    source.set_pause_generator(_pauses(rng, meta["gap_probability"]))
    sink.set_pause_generator(_pauses(rng, meta["backpressure_probability"]))
    readback_errors = []
    for name, value in meta["registers"].items():
        await axil.write_dword(regs[name], value)
    for name, value in meta["registers"].items():
        got = await axil.read_dword(regs[name])
        want = _signed32(value) if name.startswith("CLAMP") else value
        if (_signed32(got) if name.startswith("CLAMP") else got) != want:
            readback_errors.append(f"{name}: wrote {value:#x}, read {got:#x}")
    await axil.write_dword(regs["CTRL"], 1)
    data = (job / "in.bin").read_bytes()
    pos = 0
    for length in meta["frame_lengths"]:
        await source.send(AxiStreamFrame(data[pos:pos + length]))
        pos += length
    frames = []
    timeout = 20 * (meta["timeout_cycles"] + 1000) * CLOCK_NS
    for _ in range(meta["tiles"]):
        frame = await with_timeout(sink.recv(), timeout, "ns")
        frames.append(bytes(frame.tdata))
    await source.wait()
    status = 0
    for _ in range(100):
        status = await axil.read_dword(regs["STATUS"])
        if status & 2:
            break
    counters = {name: await axil.read_dword(regs[name]) for name in ("CYCLES", "OUT_STALLS", "TILES_DONE")}
    (job / "out.bin").write_bytes(b"".join(frames))
    return {"frame_lengths": [len(f) for f in frames], "status": status, "irq": int(dut.irq.value),
            "readback_errors": readback_errors, **counters}


@cocotb.test()
async def run_axi_jobs(dut):
    """Run every job of ``ACCEL_AXI_JOBS`` through the AXI buses."""
    spec = json.loads(Path(os.environ["ACCEL_AXI_JOBS"]).read_text())
    regs = spec["registers"]
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    dut.rst.value = 1
    axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
    sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    controls = [dut.s_axis_tready, dut.m_axis_tvalid, dut.s_axil_awready, dut.s_axil_wready, dut.s_axil_bvalid,
                dut.s_axil_arready, dut.s_axil_rvalid, dut.irq]
    data = [(dut.m_axis_tvalid, dut.m_axis_tdata), (dut.m_axis_tvalid, dut.m_axis_tlast),
            (dut.s_axil_rvalid, dut.s_axil_rdata), (dut.s_axil_rvalid, dut.s_axil_rresp),
            (dut.s_axil_bvalid, dut.s_axil_bresp)]
    monitor = XMonitor(dut.clk, controls, data).start()
    failures = []
    for job in map(Path, spec["jobs"]):
        result = await _run_job(dut, job, axil, source, sink, regs)
        result["x_findings"] = list(monitor.findings)
        (job / "result.json").write_text(json.dumps(result))
        dut._log.info("job %s: %d cycles, %d output stall cycles, status %#x", job.name, result["CYCLES"],
                      result["OUT_STALLS"], result["status"])
        if result["readback_errors"] or monitor.findings or not result["status"] & 2:
            failures.append(f"{job.name}: {result['readback_errors']} {monitor.findings[:3]} "
                            f"status {result['status']:#x}")
    monitor.stop()
    assert not failures, "; ".join(failures)
