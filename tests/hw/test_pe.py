"""ProcessingElement in the Amaranth simulator against the datapath contract."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from accel import datapath
from accel.config import Overflow
from accel.errors import ConfigError
from accel.hw import ProcessingElement


@pytest.mark.parametrize("preload", [True, False])
@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits,signed", [(16, True), (16, False), (20, True), (32, True)])
def test_pe_accumulates_like_the_contract(overflow, acc_bits, signed, preload):
    # Without the bias preload the sum starts from 0 (the core adds the bias after the array), and the
    # last beat leaves the accumulator at 0 for the next tile's first beat.
    rng = np.random.default_rng(acc_bits + signed)
    dut = ProcessingElement(act_bits=8, acc_bits=acc_bits, overflow=overflow, bias_preload=preload)
    lo, hi = (-128, 127) if signed else (0, 255)
    tiles = []
    for depth in (1, 2, 37, 300):
        x = rng.integers(lo, hi + 1, depth)
        w = rng.choice([-128, 127, *rng.integers(-128, 128, 6)], depth)
        bias = int(rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1))) if preload else 0
        tiles.append((x, w, bias))
    results = []

    async def bench(ctx):
        for x, w, bias in tiles:
            for k in range(len(x)):
                ctx.set(dut.act_in, int(x[k]))
                ctx.set(dut.weight_in, int(w[k]))
                if preload:
                    ctx.set(dut.bias_in, bias)
                ctx.set(dut.control_in, {"valid": 1, "first": k == 0, "last": k == len(x) - 1})
                await ctx.tick()
            ctx.set(dut.control_in, {"valid": 0, "first": 0, "last": 0})
            for _ in range(dut.mac_latency):  # the last beat lands; then idle cycles leave it alone
                await ctx.tick()
            results.append((ctx.get(dut.result), ctx.get(dut.acc)))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    for (x, w, bias), (result, acc) in zip(tiles, results):
        expect = datapath.accumulate(x[None], w[None], [bias], acc_bits, Overflow(overflow))[0, 0]
        assert result == expect and acc == (expect if preload else 0)


def test_pe_drain_takes_the_result_from_above_and_capture_wins():
    dut = ProcessingElement(act_bits=8, acc_bits=16)
    seen = []

    async def bench(ctx):
        ctx.set(dut.result_in, 1234)
        ctx.set(dut.drain, 1)
        await ctx.tick()
        seen.append(ctx.get(dut.result))
        ctx.set(dut.control_in, {"valid": 1, "first": 1, "last": 1})
        ctx.set(dut.act_in, 3)
        ctx.set(dut.weight_in, -5)
        ctx.set(dut.bias_in, 100)
        await ctx.tick()
        seen.append(ctx.get(dut.result))  # the product is registered: the drain still shifts
        ctx.set(dut.control_in, {"valid": 0, "first": 0, "last": 0})
        await ctx.tick()
        seen.append(ctx.get(dut.result))  # operands registered, then the product: still the drain
        await ctx.tick()
        seen.append(ctx.get(dut.result))  # the product's second register: still the drain
        await ctx.tick()  # the beat reaches the accumulator: its capture wins over the drain
        seen.append(ctx.get(dut.result))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [1234, 1234, 1234, 1234, 85] and dut.mac_latency == 4


def test_pe_rejects_an_accumulator_narrower_than_one_product():
    with pytest.raises(ConfigError, match=r"^config\.acc_bits: the gateware cannot build 15, allowed 16\.\.32"):
        ProcessingElement(act_bits=8, acc_bits=15)
