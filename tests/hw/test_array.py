"""SystolicArray in the Amaranth simulator: skew, capture, `done` timing and the drain order."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from accel import datapath
from accel.hw import SystolicArray


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 3), (4, 2)])
def test_array_computes_a_tile_and_drains_bottom_row_first(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    depth = 9
    x = rng.integers(-128, 128, (rows, depth))
    w = rng.integers(-128, 128, (cols, depth))
    bias = rng.integers(-1000, 1000, cols)
    dut = SystolicArray(rows=rows, cols=cols, act_bits=8, acc_bits=32)
    trace = {"done": None, "rows": []}

    async def bench(ctx):
        for k in range(depth):
            for i in range(rows):
                ctx.set(dut.act[i], int(x[i, k]))
            for j in range(cols):
                ctx.set(dut.weight[j], int(w[j, k]))
                ctx.set(dut.bias[j], int(bias[j]))
            ctx.set(dut.control, {"valid": 1, "first": k == 0, "last": k == depth - 1})
            await ctx.tick()
        ctx.set(dut.control, {"valid": 0, "first": 0, "last": 0})
        cycle = 1  # this cycle is one after the last beat's
        while not ctx.get(dut.done):
            await ctx.tick()
            cycle += 1
        trace["done"] = cycle
        ctx.set(dut.drain, 1)
        for _ in range(rows):
            trace["rows"].append([ctx.get(dut.result[j]) for j in range(cols)])
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert trace["done"] == dut.capture_latency == rows + cols + 2
    expect = datapath.accumulate(x, w, bias, 32, "wrap")
    assert trace["rows"] == expect[::-1].tolist()
