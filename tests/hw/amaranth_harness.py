"""Run a packed job on :class:`GemmCore` in the Amaranth simulator (the Verilog harness's twin).

Feeds the control beats (LUT or tile, by the kind bit) and the data beats with
no bubble, collects output beats, records each tile's first data beat and last
output beat (cycle 0 = first cycle after reset), exactly as ``accel/rtlsim/hdl/accel_harness.v``.
"""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from accel.compile import TilePlan, pack_job
from accel.compile.images import hex_to_bits
from accel.hw import GemmCore


def _words(text: bytes) -> list[int]:
    return [int(line, 16) for line in text.decode().split()]


def run_job(plan: TilePlan, max_cycles: int = 200_000):
    """(output bit matrix, [(first_in, last_out)] per tile, busy trace ends) of one job."""
    cfg = plan.config
    image = pack_job(plan)
    core = GemmCore(cfg)
    ctrl_w = image.control_width - 1
    data_w = image.data_width - 1
    control = _words(image.control)
    data = _words(image.data)
    head = _words(image.head)
    layer_word = head[4]
    result = {"out": [], "first": [], "last": [], "cycles": None}

    async def bench(ctx):
        ctx.set(core.layer.as_value(), layer_word)
        ci = di = 0
        cycle = 0
        rows_seen = 0
        while len(result["out"]) < image.n_out:
            if cycle > max_cycles:
                raise AssertionError(f"no progress after {cycle} cycles")
            cv = ci < len(control)
            kind = control[ci] >> ctrl_w if cv else 0
            payload = control[ci] & ((1 << ctrl_w) - 1) if cv else 0
            ctx.set(core.lut.valid, cv and kind == 0)
            ctx.set(core.tile.valid, cv and kind == 1)
            ctx.set(core.lut.payload.as_value(), payload & ((1 << len(core.lut.payload.as_value())) - 1))
            ctx.set(core.tile.payload.as_value(), payload & ((1 << len(core.tile.payload.as_value())) - 1))
            dv = di < len(data)
            ctx.set(core.data.valid, dv)
            ctx.set(core.data.payload.as_value(), data[di] & ((1 << data_w) - 1) if dv else 0)
            # Sample the handshakes of this cycle (after combinational settling), then clock.
            lut_fire = ctx.get(core.lut.valid) and ctx.get(core.lut.ready)
            tile_fire = ctx.get(core.tile.valid) and ctx.get(core.tile.ready)
            data_fire = ctx.get(core.data.valid) and ctx.get(core.data.ready)
            if ctx.get(core.out.valid):
                result["out"].append(ctx.get(core.out.payload.as_value()))
                rows_seen += 1
                if rows_seen % cfg.rows == 0:
                    result["last"].append(cycle)
            if data_fire and data[di] >> data_w:
                result["first"].append(cycle)
            ci += int(bool(lut_fire or tile_fire))
            di += int(bool(data_fire))
            await ctx.tick()
            cycle += 1
        result["cycles"] = cycle

    sim = Simulator(core)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    width = image.out_width
    bits = np.array([[(w >> b) & 1 for b in range(width)] for w in result["out"]], dtype=np.uint8)
    return bits.reshape(-1, width), list(zip(result["first"], result["last"])), result["cycles"]


__all__ = ["run_job", "hex_to_bits"]
