"""The AXI top's register block and framing errors in the Amaranth simulator (bit-exact runs: tests/rtlsim)."""

import pytest
from amaranth.sim import Simulator

from accel.config import AcceleratorConfig
from accel.errors import ConfigError
from accel.hw.axi_top import ID_VALUE, OP_LUT, REGISTERS, AxiTop

SMALL = AcceleratorConfig(rows=1, cols=2)


async def axil_write(ctx, dut, name, value, strb=0xF):
    ctx.set(dut.s_axil_awaddr, REGISTERS[name][0])
    ctx.set(dut.s_axil_wdata, value & 0xFFFFFFFF)
    ctx.set(dut.s_axil_wstrb, strb)
    ctx.set(dut.s_axil_awvalid, 1)
    ctx.set(dut.s_axil_wvalid, 1)
    ctx.set(dut.s_axil_bready, 1)
    await ctx.tick().until(dut.s_axil_awready & dut.s_axil_wready)
    ctx.set(dut.s_axil_awvalid, 0)
    ctx.set(dut.s_axil_wvalid, 0)
    await ctx.tick().until(dut.s_axil_bvalid)
    assert ctx.get(dut.s_axil_bresp) == 0


async def axil_read(ctx, dut, name):
    ctx.set(dut.s_axil_araddr, REGISTERS[name][0])
    ctx.set(dut.s_axil_arvalid, 1)
    ctx.set(dut.s_axil_rready, 1)
    await ctx.tick().until(dut.s_axil_arready)
    ctx.set(dut.s_axil_arvalid, 0)
    (value,) = await ctx.tick().sample(dut.s_axil_rdata).until(dut.s_axil_rvalid)
    return value


def run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_registers_identify_the_build_and_honour_byte_strobes():
    dut = AxiTop(SMALL, bus_bits=64)

    async def bench(ctx):
        assert await axil_read(ctx, dut, "ID") == ID_VALUE
        assert await axil_read(ctx, dut, "ARRAY") == 1 | 2 << 16
        assert await axil_read(ctx, dut, "WIDTHS") == 4 | 8 << 8 | 32 << 16 | 64 << 24
        assert await axil_read(ctx, dut, "CLAMP_LO") == (-128) & 0xFFFFFFFF  # reset values: int8
        assert await axil_read(ctx, dut, "CLAMP_HI") == 127
        await axil_write(ctx, dut, "CLAMP_LO", -300)
        assert await axil_read(ctx, dut, "CLAMP_LO") == (-300) & 0xFFFFFFFF  # 10 bits, sign-extended
        await axil_write(ctx, dut, "TILES", 0x12345678)
        await axil_write(ctx, dut, "TILES", 0xAABBCCDD, strb=0b0101)  # bytes 0 and 2 only
        assert await axil_read(ctx, dut, "TILES") == 0x12BB56DD
        assert await axil_read(ctx, dut, "STATUS") == 0  # idle, not done

    run(dut, bench)


def test_a_job_of_no_tiles_is_done_at_once_and_a_bad_header_is_flagged():
    dut = AxiTop(SMALL)

    async def bench(ctx):
        await axil_write(ctx, dut, "CTRL", 1)
        assert await axil_read(ctx, dut, "STATUS") == 0b010 and ctx.get(dut.irq) == 1
        assert ctx.get(dut.s_axis_tready) == 0  # no job: the input waits
        await axil_write(ctx, dut, "TILES", 1)
        await axil_write(ctx, dut, "CTRL", 1)
        assert await axil_read(ctx, dut, "STATUS") & 0b111 == 0b001  # busy; done cleared by START
        for word in (0x7 << 28, OP_LUT << 28):  # an unknown opcode, then an empty LUT frame
            ctx.set(dut.s_axis_tdata, word)
            ctx.set(dut.s_axis_tvalid, 1)
            await ctx.tick().until(dut.s_axis_tready)
        ctx.set(dut.s_axis_tvalid, 0)
        assert await axil_read(ctx, dut, "STATUS") & 0b111 == 0b101  # busy, header error

    run(dut, bench)


def test_the_top_refuses_what_it_cannot_build():
    with pytest.raises(ConfigError, match=r"^bus_bits: the AXI top builds 32 or 64-bit streams, got 48"):
        AxiTop(SMALL, bus_bits=48)
    with pytest.raises(ConfigError, match=r"^out_fifo_rows: must hold one tile \(4 rows\), got 3"):
        AxiTop(AcceleratorConfig(rows=4, cols=4), out_fifo_rows=3)
    with pytest.raises(ConfigError, match=r"^config\.acc_bits"):
        AxiTop(AcceleratorConfig(acc_bits=12))
