"""The tiling driver: im2col lowering and reassembly, memory images round trip, job splitting."""

import numpy as np
import pytest

from accel import datapath
from accel.compile import (
    CoreLayout,
    assemble_output,
    lower_layer,
    pack_job,
    pack_outputs,
    plan_tiles,
    split_plan,
    unpack_outputs,
)
from accel.compile.images import hex_to_bits, pack_bits, words_to_hex
from accel.config import AcceleratorConfig
from accel.errors import DataError, ModelError
from accel.ir import ModelBuilder


def _conv_model(cfg, groups=1, signed=True, pad_value=None):
    rng = np.random.default_rng(3)
    b = ModelBuilder(cfg)
    x = b.input("x", (8, 9, 7), "int8" if signed else "uint8")
    y = b.conv2d("conv", x, codes=rng.integers(0, 16, (12, 8 // groups, 3, 3)).astype(np.uint8),
                 lut=rng.integers(-128, 128, (1, 16)), bias=rng.integers(-500, 500, 12),
                 shift=rng.integers(3, 9, 12), stride=(2, 1), padding=(1, 0, 1, 2), groups=groups,
                 pad_value=(0 if signed else 3) if pad_value is None else pad_value, lo=0, hi=127)
    return b.build([y])


@pytest.mark.parametrize("groups,signed", [(1, True), (2, False), (4, True)])
def test_lowered_conv_reassembles_to_the_contract(groups, signed):
    cfg = AcceleratorConfig()
    model = _conv_model(cfg, groups, signed)
    layer = model.layers[0]
    rng = np.random.default_rng(1)
    x = rng.integers(-128 if signed else 0, 128 if signed else 256, (2, 8, 9, 7))
    problems = lower_layer(model, layer, x)
    assert len(problems) == groups
    got = assemble_output(model, layer, 2, [p.expected(cfg) for p in problems])
    a = layer.arrays
    expect = datapath.conv2d(x, a["codes"], a["lut"], a["bias"], a["shift"], 1, 0, 127, cfg, stride=(2, 1),
                             padding=(1, 0, 1, 2), groups=groups, pad_value=layer.attrs["pad_value"])
    np.testing.assert_array_equal(got, expect)


def test_lowering_rejects_activations_wider_than_the_array():
    cfg = AcceleratorConfig(act_bits=4, acc_bits=16)
    model = _conv_model(cfg)
    with pytest.raises(DataError, match=r"^layer 'conv': input values .* 4-bit signed"):
        lower_layer(model, model.layers[0], np.full((1, 8, 9, 7), 100))


def test_lowering_rejects_a_pad_value_wider_than_the_array():
    """Padded positions enter the array as pad_value: -9 does not fit 4-bit signed activations."""
    model = _conv_model(AcceleratorConfig(act_bits=4, acc_bits=16), pad_value=-9)
    with pytest.raises(DataError, match=r"^layer 'conv': pad_value -9 does not fit the array's 4-bit signed "
                                        r"activations \(-8\.\.7\)$"):
        lower_layer(model, model.layers[0], np.zeros((1, 8, 9, 7), int))


def test_output_words_round_trip_through_hex():
    cfg = AcceleratorConfig(rows=3, cols=2, acc_bits=20)
    model = _conv_model(cfg)
    rng = np.random.default_rng(0)
    problems = lower_layer(model, model.layers[0], rng.integers(-128, 128, (1, 8, 9, 7)))
    plan = plan_tiles(problems, cfg)
    layout = CoreLayout.from_config(cfg)
    f = layout.output_fields
    n = plan.output_beats
    vals = rng.integers(-(1 << 19), 1 << 19, (n, cfg.cols))
    rows = np.tile(np.arange(cfg.rows)[::-1], len(plan.tiles))
    bits = pack_bits(n, layout.output_width, [(f["values"][0] + j * 20, 20, vals[:, j]) for j in range(2)]
                 + [(f["row"][0], f["row"][1], rows)])
    back = hex_to_bits(words_to_hex(bits), layout.output_width)
    np.testing.assert_array_equal(back, bits)
    res = unpack_outputs(plan, back)[0]
    t0 = plan.tiles[0]
    assert res[t0.row0 + cfg.rows - 1, 0] == vals[0, 0]


def test_plan_loads_per_channel_luts_once_per_column_block_and_splits_into_jobs():
    cfg = AcceleratorConfig(rows=2, cols=2, lut_scope="channel")
    rng = np.random.default_rng(0)
    b = ModelBuilder(cfg)
    x = b.input("x", (6,), "int8")
    y = b.linear("fc", x, codes=rng.integers(0, 16, (5, 6)).astype(np.uint8),
                 lut=rng.integers(-128, 128, (5, 16)), bias=np.zeros(5, int), shift=np.zeros(5, int))
    model = b.build([y])
    problems = lower_layer(model, model.layers[0], rng.integers(-128, 128, (5, 6)))
    plan = plan_tiles(problems, cfg)
    assert [t.lut_load for t in plan.tiles] == [True, False, False, True, False, False, True, False, False]
    jobs = split_plan(plan, max_tiles=4, max_data=10 ** 6, max_control=10 ** 6)
    assert [len(j.tiles) for j in jobs] == [4, 4, 1]
    assert all(j.tiles[0].lut_load for j in jobs)
    image = pack_job(jobs[0])
    assert image.n_control == 4 + 2 * 16 and image.n_data == 4 * 6


def test_plan_rejects_a_reduction_longer_than_the_depth_counter():
    cfg = AcceleratorConfig()
    b = ModelBuilder(cfg)
    x = b.input("x", (70000,), "int8")
    y = b.linear("fc", x, codes=np.zeros((1, 70000), np.uint8), lut=np.zeros((1, 16), int),
                 bias=np.zeros(1, int), shift=np.zeros(1, int))
    model = b.build([y])
    problems = lower_layer(model, model.layers[0], np.zeros((1, 70000), int))
    with pytest.raises(ModelError, match=r"^layer 'fc': reduction of 70000 does not fit a tile"):
        plan_tiles(problems, cfg)


@pytest.mark.parametrize("pe_kind,bad", [("shift", 3), ("shift_add", 7)])
def test_plan_refuses_a_lut_value_the_pe_kind_cannot_decode(pe_kind, bad):
    cfg = AcceleratorConfig(pe_kind=pe_kind)
    b = ModelBuilder(cfg)
    x = b.input("x", (4,), "int8")
    lut = np.array([[0, 1, -2, 64, -128, 96 if pe_kind == "shift_add" else 4, bad] + [0] * 9])
    y = b.linear("fc", x, codes=np.zeros((1, 4), np.uint8), lut=lut, bias=np.zeros(1, int), shift=np.zeros(1, int))
    model = b.build([y])
    problems = lower_layer(model, model.layers[0], np.zeros((1, 4), int))
    with pytest.raises(ModelError, match=rf"^layer 'fc': field 'lut': value {bad} cannot be decoded by the "
                                         rf"config's '{pe_kind}' PEs"):
        plan_tiles(problems, cfg)
    assert plan_tiles(problems, cfg.replace(pe_kind="general")).tiles


@pytest.mark.parametrize("rows,cols", [(3, 2), (8, 8), (1, 5)])
def test_packed_outputs_unpack_to_the_results(rows, cols):
    # pack_outputs (what the checker expects) and unpack_outputs (what the core returned) are inverses.
    cfg = AcceleratorConfig(rows=rows, cols=cols)
    model = _conv_model(cfg, groups=2)
    rng = np.random.default_rng(4)
    problems = lower_layer(model, model.layers[0], rng.integers(-128, 128, (2, 8, 9, 7)))
    plan = plan_tiles(problems, cfg)
    expected = [p.expected(cfg) for p in problems]
    bits = pack_outputs(plan, expected)
    assert bits.shape == (plan.output_beats, CoreLayout.from_config(cfg).output_width)
    for got, exp in zip(unpack_outputs(plan, bits), expected):
        np.testing.assert_array_equal(got, exp)


def test_core_layout_is_computed_once_per_configuration():
    from accel.hw import beat_layout, output_layout

    cfg = AcceleratorConfig(rows=3, cols=5, acc_bits=20)
    layout = CoreLayout.from_config(cfg)
    assert CoreLayout.from_config(AcceleratorConfig(rows=3, cols=5, acc_bits=20)) is layout
    assert layout.output_width == output_layout(cfg).size and layout.beat_width == beat_layout(cfg).size
    assert layout.output_fields["values"] == (0, 20, 5)


@pytest.mark.parametrize("groups, lut_scope", [(1, "layer"), (2, "channel"), (4, "layer")])
def test_multipoint_points_are_extra_columns_joined_in_the_epilogue(groups, lut_scope):
    """Each group's extra rows are extra array columns (raw accumulators out); the epilogue makes the
    contract's layer output, and the extra columns cost column tiles."""
    cfg = AcceleratorConfig(lut_scope=lut_scope, cols=4)
    model = _conv_model(cfg, groups, True)
    layer = model.layers[0]
    n = layer.arrays["codes"].shape[0]
    rng = np.random.default_rng(5)
    if lut_scope == "channel":
        layer.arrays["lut"] = rng.integers(-128, 128, (n, cfg.lut_entries))
    plain = plan_tiles(lower_layer(model, layer, np.zeros((1, 8, 9, 7))), cfg)
    channels = np.array([0, n - 1, 0, n // 2, 1])
    layer.arrays.update(point_codes=rng.integers(0, 16, (5, *layer.arrays["codes"].shape[1:])),
                        point_channel=channels, point_shift=np.array([3, 0, 5, 16, 2]))
    model.validate()
    x = rng.integers(-128, 128, (2, 8, 9, 7))
    problems = lower_layer(model, layer, x)
    per_group = n // groups
    assert [p.channels_out for p in problems] == [per_group + int(np.sum(channels // per_group == g))
                                                  for g in range(groups)]
    assert all(p.raw and p.epilogue is not None for p in problems)
    got = assemble_output(model, layer, 2, [p.outputs(cfg) for p in problems])
    a = layer.arrays
    expect = datapath.conv2d(x, a["codes"], a["lut"], a["bias"], a["shift"], 1, 0, 127, cfg, stride=(2, 1),
                             padding=(1, 0, 1, 2), groups=groups, pad_value=layer.attrs["pad_value"],
                             points=layer.points)
    np.testing.assert_array_equal(got, expect)
    col_tiles = {(t.problem, t.col0) for t in plan_tiles(problems, cfg).tiles}
    assert len(col_tiles) > len({(t.problem, t.col0) for t in plain.tiles})
