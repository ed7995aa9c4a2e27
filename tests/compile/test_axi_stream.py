"""Framing a tile plan for the AXI top: headers, word counts, and the output frames round trip."""

import numpy as np
import pytest

from accel.compile import plan_tiles
from accel.compile.axi_stream import axi_input_frames, axi_layer_registers, axi_output_bits, axi_output_frames
from accel.compile.images import unpack_outputs
from accel.config import AcceleratorConfig
from accel.hw.axi_top import OP_LUT, OP_TILE, AxiTop
from tests.support.strategies import random_problem


@pytest.mark.parametrize("bus_bits", [32, 64])
def test_frames_carry_headers_and_whole_words(bus_bits):
    cfg = AcceleratorConfig(rows=2, cols=3, lut_scope="channel")
    prob = random_problem(np.random.default_rng(1), cfg, pixels=5, depth=7, channels=7, name="p")
    plan = plan_tiles([prob], cfg)
    words = AxiTop(cfg, bus_bits=bus_bits).beat_words()
    step = bus_bits // 8
    frames = axi_input_frames(plan, bus_bits)
    tiles = [f for f in frames if int.from_bytes(f[:4], "little") >> 28 == OP_TILE]
    luts = [f for f in frames if int.from_bytes(f[:4], "little") >> 28 == OP_LUT]
    assert len(tiles) == len(plan.tiles) and len(luts) == sum(t.lut_load for t in plan.tiles)
    for f in luts:
        assert int.from_bytes(f[:4], "little") & 0xFFFF == cfg.lut_entries
        assert len(f) == step * (1 + cfg.lut_entries * words["lut"])
    for f, t in zip(tiles, plan.tiles):
        assert len(f) == step * (1 + words["tile"] + t.depth * words["data"])
        assert int.from_bytes(f[step:step + 2], "little") == t.depth  # depth: the tile beat's low bits
    assert axi_layer_registers(plan)["TILES"] == len(plan.tiles)


def test_output_frames_round_trip_to_the_results():
    cfg = AcceleratorConfig(rows=4, cols=3, acc_bits=20)
    prob = random_problem(np.random.default_rng(2), cfg, pixels=9, depth=5, channels=5, name="p")
    plan = plan_tiles([prob], cfg)
    expected = prob.expected(cfg)
    frames = axi_output_frames(plan, [expected], 32)
    assert len(frames) == len(plan.tiles)
    assert all(len(f) == cfg.rows * 4 * 2 for f in frames)  # 3 x 20 bits: two 32-bit words per row
    got = unpack_outputs(plan, axi_output_bits(plan, frames, 32))[0]
    assert np.array_equal(got, expected)
    with pytest.raises(ValueError, match="expected 6 frames"):
        axi_output_bits(plan, frames[:-1], 32)
