"""WeightDecoder in the Amaranth simulator: run-time LUT loads, decoding, latency."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from accel.errors import ConfigError
from accel.hw import WeightDecoder


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("weight_bits", [2, 4, 8])
def test_decoder_decodes_loaded_lut_with_one_cycle_latency(weight_bits):
    rng = np.random.default_rng(weight_bits)
    dut = WeightDecoder(weight_bits=weight_bits)
    assert dut.entries == 1 << weight_bits and dut.latency == 1
    tables = [rng.integers(-128, 128, dut.entries), np.full(dut.entries, -128), np.full(dut.entries, 127)]
    seen = []

    async def bench(ctx):
        for table in tables:
            for i, v in enumerate(table):
                ctx.set(dut.write.valid, 1)
                ctx.set(dut.write.payload.index, i)
                ctx.set(dut.write.payload.value, int(v))
                await ctx.tick()
            ctx.set(dut.write.valid, 0)
            codes = rng.integers(0, dut.entries, 40)
            got = []
            for c in codes:
                ctx.set(dut.code, int(c))
                await ctx.tick()
                got.append(ctx.get(dut.weight))  # the code of the cycle just clocked
            seen.append((table, codes, got))

    _run(dut, bench)
    for table, codes, got in seen:
        assert got == [int(table[c]) for c in codes]


def test_decoder_write_takes_effect_on_the_next_code():
    dut = WeightDecoder(weight_bits=2)
    out = []

    async def bench(ctx):
        ctx.set(dut.code, 1)
        ctx.set(dut.write.valid, 1)
        ctx.set(dut.write.payload.index, 1)
        ctx.set(dut.write.payload.value, -7)
        await ctx.tick()
        out.append(ctx.get(dut.weight))  # decoded with the old table (reset: 0)
        ctx.set(dut.write.valid, 0)
        await ctx.tick()
        out.append(ctx.get(dut.weight))

    _run(dut, bench)
    assert out == [0, -7]


def test_decoder_rejects_codes_wider_than_int8_naming_the_field():
    with pytest.raises(ConfigError, match=r"^config\.weight_bits: the gateware cannot build 9"):
        WeightDecoder(weight_bits=9)
