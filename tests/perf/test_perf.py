"""The performance model: cycles by hand, event counts, roofline, weight storage, activation coder, CLI."""

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from accel.config import AcceleratorConfig, EnergyTable
from accel.errors import ConfigError
from accel.ir import ModelBuilder, save_model
from accel.perf import ActivationStats, array_work, coded_bits, decode, encode, estimate, vector_work, weight_storage
from accel.perf.coding import exp_golomb_bits
from accel.perf.cycles import point_epilogue_work
from accel.perf.network import code_bits, stored_bits
from tests.support.cli import run_accel as accel
from tests.support.models import small_resnet


def fc_model(config=None, per_channel=False):
    """One linear layer, 72 -> 16, raw int32 logits: the cycle schedule's own example."""
    cfg = config or AcceleratorConfig()
    rng = np.random.default_rng(0)
    b = ModelBuilder(cfg)
    x = b.input("x", (72,), "int8")
    y = b.linear("fc", x, codes=rng.integers(0, 16, (16, 72)).astype(np.uint8),
                 lut=rng.integers(-128, 128, (16 if per_channel else 1, 16)), bias=rng.integers(-99, 99, 16),
                 shift=np.zeros(16, int), raw=True)
    return b.build([y])


def only(**pj):
    """An energy table with every entry zero except ``pj``."""
    zero = {f.name: 0.0 for f in dataclasses.fields(EnergyTable)}
    return EnergyTable(**{**zero, **pj})


# --- cycles ---------------------------------------------------------------------------------------------

def test_linear_cycles_by_hand():
    # 8x8, one pixel, 72-deep, 16 channels: two tiles (column blocks). Shared LUT: 16 LUT beats + a tile
    # beat, data beats 17..88; the second tile's last beat waits for 88 + (2*8+8+2) = 114 but its data ends
    # at 89+71 = 160; the last output 160 + 26 + 5 (requant) = 191: 192 cycles counted from 0.
    model = fc_model()
    w = array_work(model, model.layer("fc"), model.config)
    assert (w.cycles, w.tiles, w.data_beats, w.lut_loads) == (192, 2, 144, 1)
    assert (w.macs, w.issued_macs, w.padding_slots) == (72 * 16, 144 * 64, 7 * 72 * 2)
    # Per-channel tables: the second column block loads its own (17 more cycles before its data).
    model = fc_model(per_channel=True)
    assert array_work(model, model.layer("fc"), model.config).cycles == 192 + 17
    # A core without LUTs (the int8 baseline) skips the 16-beat loads.
    assert array_work(model, model.layer("fc"), model.config, lut_loads=False).cycles == 192 + 17 - 2 * 16


def test_cycles_follow_the_array_size_of_the_priced_config():
    model = fc_model()
    w = array_work(model, model.layer("fc"), model.config.replace(rows=4, cols=16))
    # One tile: 16 LUT beats, tile beat, data 17..88, output latency 2*4+16+2 + 5 = 31.
    assert (w.tiles, w.cycles) == (1, 88 + 31 + 1)


def test_vector_unit_cycles():
    model = small_resnet()
    cfg = model.config.replace(vector_lanes=4, vector_latency=3)
    add = vector_work(model, model.layer("block.add"), cfg)
    assert (add.element_ops, add.cycles) == (8 * 12 * 12, 8 * 12 * 12 // 4 + 3)
    pool = vector_work(model, model.layer("pool"), cfg)
    assert pool.element_ops == 8 * 6 * 6 * 4 and pool.cycles == math.ceil(8 * 6 * 6 * 4 / 4) + 3
    assert vector_work(model, model.layer("gap"), cfg).element_ops == 16 * 6 * 6
    assert vector_work(model, model.layer("flatten"), cfg).cycles == 0
    perf = estimate(model, cfg)
    assert [lay.unit for lay in perf.layers] == ["array"] * 3 + ["vector"] * 5 + ["none", "array"]
    assert perf.cycles == sum(lay.cycles for lay in perf.layers)


# --- energy and memory ----------------------------------------------------------------------------------

def test_energy_counts_events():
    model = fc_model()
    cfg = model.config.replace(energy=only(mac_pj=1.0, acc_add_pj=2.0, lut_decode_pj=1.0, leakage_mw=1.0))
    lay = estimate(model, cfg).layers[0]
    assert lay.energy_pj["mac"] == 144 * 64                       # every PE of every data beat
    assert lay.energy_pj["acc_add"] == 2 * 144 * 64
    assert lay.energy_pj["lut"] == 144 * 8 + 16 * 8              # a decode per column per beat, one load
    assert lay.energy_pj["requant"] == 0                          # raw logits are not requantized
    assert lay.energy_pj["static"] == pytest.approx(192 * 10)     # 1 mW at 100 MHz: 10 pJ a cycle
    gated = estimate(model, cfg, gate_zero_macs=True).layers[0]
    assert gated.energy_pj["mac"] == 72 * 16                      # the padding lanes are gated
    assert estimate(model, cfg.replace(acc_bits=16)).layers[0].energy_pj["acc_add"] == 144 * 64


def test_gating_uses_measured_zero_activations():
    model = fc_model()
    cfg = model.config.replace(energy=only(mac_pj=1.0))
    stats = ActivationStats(images=1, im2col_zeros={"fc": [10]})  # 10 zero inputs, fed to 2 column blocks
    assert estimate(model, cfg, stats, gate_zero_macs=True).layers[0].energy_pj["mac"] == 72 * 16 - 20 * 8


def test_dram_traffic_and_roofline():
    model = fc_model()
    lay = estimate(model).layers[0]
    assert lay.dram_bytes == 72 + 16 * 4 and not lay.memory_bound  # input read, logits written
    slow = estimate(model, model.config.replace(dram_bytes_per_cycle=0.1)).layers[0]
    assert slow.memory_bound and slow.cycles == 1360 and slow.stall_cycles == 1360 - 192
    # Weights that do not fit the buffer are read every inference.
    spill = estimate(model, model.config.replace(weight_buffer_bytes=100)).layers[0]
    assert spill.dram_bytes == 72 + 64 + 666
    # Coded activations cross DRAM at their measured size.
    stats = ActivationStats(images=1, raw_bytes={"x": 72}, coded_bytes={"x": 36})
    coded = estimate(model, model.config.replace(activation_coding=True), stats).layers[0]
    assert coded.dram_bytes == 36 + 64
    assert estimate(model, model.config, stats).layers[0].dram_bytes == 72 + 64  # coding off


def test_weight_storage_counts_the_lut():
    model = small_resnet(AcceleratorConfig(lut_scope="channel"))
    dw = model.layer("block.dw")
    dw.arrays["lut"] = np.zeros((8, 16), dtype=np.int8)  # one table per depthwise channel
    s = weight_storage(dw, model.config)
    assert (s.code_bits, s.lut_bits, s.shift_bits, s.bias_bits) == (72 * 4, 8 * 16 * 8, 8 * 5, 8 * 32)
    assert s.bits_per_weight == pytest.approx((9 * 4 + 128 + 5 + 32) / 9)
    plain = weight_storage(dw, model.config.replace(weight_bits=8, requant="multiply_shift"), lut=False)
    assert plain.bits_per_weight == pytest.approx(8 + (6 + 32 + 16) / 9)


def test_totals():
    model = small_resnet()
    perf = estimate(model)
    t = perf.totals()
    assert t["time_us"] == pytest.approx(perf.cycles / 100)
    assert t["tops_per_watt"] == pytest.approx(2 * perf.macs / (t["energy_uj"] * 1e6))
    assert t["inferences_per_s"] == pytest.approx(1e8 / perf.cycles)
    assert perf.macs == sum(lay.macs for lay in perf.layers) > 0


def test_config_must_match_the_model():
    with pytest.raises(ConfigError, match="field 'weight_bits' is 8 but the model was quantized for 4"):
        estimate(fc_model(), AcceleratorConfig(weight_bits=8))


# --- activation coding ----------------------------------------------------------------------------------

def test_coder_by_hand():
    # run 2 -> EG0 "011", value 5 -> 00000101, trailing run 1 -> "010"
    assert "".join(map(str, encode(np.array([0, 0, 5, 0], np.int8)))) == "011" + "00000101" + "010"
    assert exp_golomb_bits([0, 1, 2, 3, 6, 7], 0).tolist() == [1, 3, 3, 5, 5, 7]


@given(st.lists(st.integers(-128, 127).map(lambda v: v if v % 3 else 0), min_size=1, max_size=300),
       st.integers(0, 3))
def test_coder_round_trip(values, k):
    x = np.array(values, dtype=np.int8)
    bits = encode(x, k)
    assert np.array_equal(decode(bits, len(x), k), x)
    assert coded_bits(x[None], k)[0] == len(bits)
    u = x.view(np.uint8)
    assert np.array_equal(decode(encode(u, k), len(u), k, signed=False), u)


def test_measured_activations_match_the_engine():
    from accel.engine import run_model
    from accel.perf.activations import measure_activations

    model = small_resnet()
    x = np.random.default_rng(3).integers(-128, 128, (5, 1, 12, 12)).astype(np.int8)
    stats = measure_activations(model, x, batch_size=2)
    tensors = run_model(model, x, return_all=True)
    for name in ("block.add", "pool", "cat"):
        out = model.layer(name).output
        assert stats.sparsity[out] == pytest.approx(np.mean(tensors[out] == 0))
        assert stats.coded_bytes[out] == pytest.approx(coded_bits(tensors[out]).sum() / 8 / 5)
    assert len(stats.im2col_zeros["block.dw"]) == 8 and sum(stats.im2col_zeros["block.dw"]) > 0  # 8 groups


# --- command line ---------------------------------------------------------------------------------------

def test_cli_table_json_csv_plot(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    out = accel("perf", str(path), "--compare")
    assert out.returncode == 0, out.stderr
    assert "block.dw" in out.stdout and "int8 weights, multiply_shift" in out.stdout
    data = json.loads(accel("perf", str(path), "--json").stdout)
    assert data["totals"]["cycles"] == estimate(small_resnet()).cycles
    assert accel("perf", str(path), "--csv").stdout.startswith("layer,op,unit,macs,cycles")
    png = tmp_path / "p.png"
    assert accel("perf", str(path), "--plot", str(png)).returncode == 0 and png.stat().st_size > 0
    again = accel("perf", str(path), "--plot", str(png))
    assert again.returncode == 2 and again.stderr.strip().splitlines() == [
        f"accel: error: {png}: already exists; refusing to overwrite it"]


def test_cli_rejects_a_config_of_another_weight_format(tmp_path):
    path = save_model(small_resnet(), tmp_path / "m.qmodel")
    cfg = tmp_path / "c.toml"
    cfg.write_text("weight_bits = 3\n")
    out = accel("perf", str(path), "--config", str(cfg))
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert "field 'weight_bits' is 3 but the model was quantized for 4" in out.stderr


def test_flatten_moves_no_data():
    b = ModelBuilder(AcceleratorConfig(act_buffer_bytes=100))
    x = b.input("x", (4, 8, 8), "int8")  # 256 bytes: spilled to DRAM
    perf = estimate(b.build([b.flatten("flat", x)]))
    assert (perf.layers[0].dram_bytes, perf.cycles, perf.layers[0].unit) == (0, 0, "none")


def test_multipoint_costs_column_tiles_and_the_epilogue():
    """fc: 16 channels + 4 points = 20 columns on the 8x8 array: a third column block (tile), the
    vector unit's epilogue reads 20 raw columns and shift-adds 4; the energy follows the events."""
    plain = fc_model()
    model = fc_model()
    rng = np.random.default_rng(1)
    model.layer("fc").arrays.update(point_codes=rng.integers(0, 16, (4, 72)), point_channel=np.array([0, 3, 3, 15]),
                                    point_shift=np.array([2, 2, 5, 0]))
    model.validate()
    cfg = model.config.replace(vector_lanes=4, vector_latency=3)
    w0, w = (array_work(m, m.layer("fc"), cfg) for m in (plain, model))
    assert (w0.tiles, w.tiles) == (2, 3) and w.macs == 72 * 20 and w.cycles > w0.cycles
    epilogue = point_epilogue_work(model, model.layer("fc"), cfg)
    assert (epilogue.reads, epilogue.element_ops, epilogue.requants) == (20, 4, 0)  # raw logits: no rescale
    assert epilogue.cycles == 5 + 3 and point_epilogue_work(plain, plain.layer("fc"), cfg) is None
    lay0, lay = (estimate(m, cfg.replace(energy=only(vector_op_pj=1.0))).layers[0] for m in (plain, model))
    assert lay.compute_cycles == w.cycles + 8 and lay0.compute_cycles == w0.cycles
    assert (lay.extra_columns, lay.epilogue_cycles, lay.energy_pj["vector"], lay0.energy_pj["vector"]) == (4, 8, 4, 0)
    st0, st = (weight_storage(m.layer("fc"), cfg) for m in (plain, model))
    assert st.total_bits - st0.total_bits == 4 * 72 * 4 + 4 * (4 + 5)  # codes, channel (4 bits) and shift (5)


def test_packed_pricing_follows_clamp_ranges_and_lut_levels():
    """``packed=True``: a 4-bit hidden map costs half the activation-buffer energy of a byte-wide one,
    codes with 4 distinct levels are read at 2 bits; without narrowing, packed equals the default."""
    cfg = AcceleratorConfig()
    rng = np.random.default_rng(1)
    b = ModelBuilder(cfg)
    x = b.input("x", (72,), "int8")
    h = b.linear("fc1", x, codes=rng.integers(0, 16, (16, 72)).astype(np.uint8),
                 lut=np.tile(np.arange(4) * 9 - 13, 4)[None, :], bias=np.zeros(16, int), shift=np.full(16, 6),
                 lo=0, hi=15, dtype="uint8")
    y = b.linear("fc2", h, codes=rng.integers(0, 16, (10, 16)).astype(np.uint8),
                 lut=rng.integers(-128, 128, (1, 16)), bias=np.zeros(10, int), shift=np.zeros(10, int), raw=True)
    model = b.build([y])
    assert stored_bits(model) == {"x": 8, h: 4, y: 32}
    assert [code_bits(model.layer(n)) for n in ("fc1", "fc2")] == [2, 4]
    sram = cfg.replace(energy=only(sram_read_byte_pj=1.0, sram_write_byte_pj=1.0))
    plain, packed = estimate(model, sram).layers, estimate(model, sram, packed=True).layers
    assert packed[1].energy_pj["sram_act"] == pytest.approx(plain[1].energy_pj["sram_act"] / 2)  # reads h only
    assert packed[0].energy_pj["sram_weight"] < plain[0].energy_pj["sram_weight"]
    assert packed[1].energy_pj["sram_weight"] == plain[1].energy_pj["sram_weight"]
    wide = fc_model()
    assert estimate(wide, packed=True).energy_pj == estimate(wide).energy_pj
