"""Requantizer lane in the Amaranth simulator against accel.datapath.requantize."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from accel import datapath
from accel.config import AcceleratorConfig
from accel.hw import Requantizer
from accel.hw.params import mark_unelaborated, shift_bits

CLAMPS = [(-128, 127), (0, 255), (0, 127), (0, 48)]  # int8, uint8, ReLU, ReLU6 (6.0 at exponent 3)


@pytest.mark.parametrize("requant", ["shift", "multiply_shift"])
@pytest.mark.parametrize("rounding", ["half_up", "floor"])
@pytest.mark.parametrize("acc_bits", [16, 32])
def test_requantizer_matches_the_contract(requant, rounding, acc_bits):
    cfg = AcceleratorConfig(acc_bits=acc_bits, requant=requant, rounding=rounding, mult_bits=16)
    rng = np.random.default_rng(acc_bits)
    dut = Requantizer(acc_bits=acc_bits, requant=requant, mult_bits=16, shift_bits=shift_bits(cfg),
                      rounding=rounding)
    n = 400
    lo_acc, hi_acc = cfg.acc_min, cfg.acc_max
    # Rounded values on both sides of the clamp bounds and of the clamp's short compare window (2^11).
    edges = np.array([v for e in (128, 255, 256, 2047, 2048, 2049) for v in (e - 1, e, e + 1, -e - 1, -e, 1 - e)])
    edge_acc = (edges * 4 + rng.integers(-2, 3, edges.size)).clip(lo_acc, hi_acc)
    acc = np.concatenate([rng.integers(lo_acc, hi_acc + 1, n - 8 - edges.size), edge_acc,
                          [lo_acc, hi_acc, 0, -1, 1, lo_acc + 1, hi_acc - 1, 2]])
    shift = rng.integers(0, cfg.max_shift + 1, n)
    shift[:20] = np.arange(20) % (cfg.max_shift + 1)
    shift[n - 8 - edges.size:n - 8] = 2
    mult = rng.integers(0, 1 << 16, n)
    mult[:4] = [0, 1, (1 << 16) - 1, 1 << 15]
    clamp = [CLAMPS[i] for i in rng.integers(0, len(CLAMPS), n)]
    raw = rng.random(n) < 0.1
    bias = rng.integers(lo_acc, hi_acc + 1, n)
    bias[: n // 2] = 0  # the saturate-mode core, whose PEs started from the bias
    bias[n - 8 - edges.size:n - 8] = 0  # the edge cases as they are
    mult[n - 8 - edges.size:n - 8] = 1
    outs = []

    async def bench(ctx):
        for i in range(n + dut.latency):
            if i < n:
                ctx.set(dut.acc, int(acc[i]))
                ctx.set(dut.bias, int(bias[i]))
                ctx.set(dut.shift, int(shift[i]))
                ctx.set(dut.mult, int(mult[i]))
                ctx.set(dut.lo, clamp[i][0])
                ctx.set(dut.hi, clamp[i][1])
                ctx.set(dut.raw, int(raw[i]))
                ctx.set(dut.valid_in, 1)
            else:
                ctx.set(dut.valid_in, 0)
            await ctx.tick()
            if ctx.get(dut.valid_out):
                outs.append(ctx.get(dut.value))

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    lo = np.array([c[0] for c in clamp])
    hi = np.array([c[1] for c in clamp])
    biased = datapath.wrap(acc + bias, acc_bits)
    expect = datapath.requantize(biased, shift, mult, lo, hi, cfg)
    expect = np.where(raw, biased, expect)
    assert len(outs) == n
    bad = np.flatnonzero(np.array(outs) != expect)
    assert bad.size == 0, (f"lane value {bad[0]}: acc={acc[bad[0]]} shift={shift[bad[0]]} mult={mult[bad[0]]} "
                           f"expected {expect[bad[0]]}, got {outs[bad[0]]}")


def test_requantizer_latency_is_documented():
    for requant, latency in (("shift", 5), ("multiply_shift", 6)):
        lane = Requantizer(acc_bits=32, requant=requant)
        mark_unelaborated(lane)  # built only to read a property
        assert lane.latency == latency
