"""GemmCore in the Amaranth simulator: random tiles and configurations against the contract,
cycle for cycle against the schedule (accel.compile.schedule)."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from accel.compile import plan_tiles, schedule, unpack_outputs
from accel.config import AcceleratorConfig
from accel.datapath import pe_decodable
from accel.errors import ConfigError
from accel.hw import GemmCore, Requantizer, SystolicArray, WeightDecoder, check_buildable
from accel.hw.params import mark_unelaborated
from accel.hw.timing import CoreTiming
from tests.support.strategies import random_config, random_problem

from .amaranth_harness import run_job


def _check(config, problems):
    plan = plan_tiles(problems, config)
    bits, cycles, total = run_job(plan)
    got = unpack_outputs(plan, bits)
    for prob, res in zip(problems, got):
        expect = prob.expected(config)
        bad = np.argwhere(res != expect)
        assert bad.size == 0, (f"{prob.name}: pixel {bad[0][0]}, channel {bad[0][1]}: expected "
                               f"{expect[tuple(bad[0])]}, got {res[tuple(bad[0])]}")
    sched = schedule(plan)
    assert cycles == [(s.first_in, s.last_out) for s in sched]
    assert total == sched[-1].last_out + 1


@pytest.mark.parametrize("rows,cols,seed", [(1, 1, 0), (2, 3, 1), (3, 2, 2), (4, 4, 3)])
def test_core_random_tiles_and_configs(rows, cols, seed):
    rng = np.random.default_rng(seed)
    for _ in range(3):
        cfg = random_config(rng, rows, cols)
        problems = [random_problem(rng, cfg, pixels=int(rng.integers(1, 3 * rows + 2)),
                                   depth=int(rng.integers(1, 40)), channels=int(rng.integers(1, 2 * cols + 2)),
                                   signed=bool(rng.random() < 0.5), lut=str(rng.choice(["random", "extreme"])),
                                   raw=bool(rng.random() < 0.2))]
        _check(cfg, problems)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
def test_core_accumulator_overflow_in_both_modes(overflow):
    # 16-bit accumulators, extreme weights and activations, long reductions: sums leave the range.
    rng = np.random.default_rng(7)
    cfg = AcceleratorConfig(rows=2, cols=2, acc_bits=16, overflow=overflow)
    prob = random_problem(rng, cfg, pixels=4, depth=200, channels=3, lut="extreme", raw=True)
    prob.act = rng.choice([-128, 127], prob.act.shape)
    acc = np.abs(prob.expected(cfg.replace(acc_bits=32)))
    assert acc.max() > cfg.acc_max  # the case really overflows
    _check(cfg, [prob])


def test_core_short_tiles_wait_for_the_drain():
    # depth 1..3 is shorter than 2 * rows + cols + 2: the last beats wait (schedule says how long).
    rng = np.random.default_rng(11)
    cfg = AcceleratorConfig(rows=3, cols=2)
    problems = [random_problem(rng, cfg, pixels=7, depth=d, channels=3) for d in (1, 2, 3)]
    for p in problems:
        p.lo, p.hi, p.raw, p.act_signed = -128, 127, False, True
    _check(cfg, problems)


def test_core_timing_properties_agree_with_the_components():
    cfg = AcceleratorConfig(rows=4, cols=3, requant="multiply_shift")
    core = GemmCore(cfg)
    mark_unelaborated(core)
    t = CoreTiming.from_config(cfg)
    assert core.min_last_interval == 2 * 4 + 3 + 2 == t.min_last_interval
    assert core.output_latency == t.min_last_interval + 6  # multiply_shift: 6 requant stages
    assert core.tile_cycles(10) == 10 + core.output_latency


@pytest.mark.parametrize("rows, cols, requant", [(1, 1, "shift"), (8, 8, "shift"), (5, 2, "multiply_shift")])
def test_core_timing_is_the_components_latencies(rows, cols, requant):
    # The simulations of the array, decoder and requantizer hold these properties to the gateware.
    cfg = AcceleratorConfig(rows=rows, cols=cols, requant=requant)
    t = CoreTiming.from_config(cfg)
    array = SystolicArray(rows=rows, cols=cols, act_bits=cfg.act_bits, acc_bits=cfg.acc_bits)
    lane = Requantizer(acc_bits=cfg.acc_bits, requant=requant)
    decoder = WeightDecoder(weight_bits=cfg.weight_bits)
    for component in (array, lane, decoder):
        Fragment.get(component, None)  # elaborated: they build, and Amaranth does not warn about them
    assert (t.capture_latency, t.drain_cycles) == (array.capture_latency, array.drain_cycles)
    assert t.requant_latency == lane.latency and t.input_latency == decoder.latency


@pytest.mark.parametrize("changes,field", [
    ({"acc_bits": 15}, "acc_bits"), ({"acc_bits": 12, "act_bits": 6}, "acc_bits"),
    ({"rows": 65}, "rows"), ({"cols": 100}, "cols"),
])
def test_configs_the_gateware_cannot_build_fail_before_elaboration(changes, field):
    cfg = AcceleratorConfig(**changes)
    with pytest.raises(ConfigError, match=rf"^config\.{field}: the gateware cannot build"):
        check_buildable(cfg)
    with pytest.raises(ConfigError, match=rf"^config\.{field}:"):
        GemmCore(cfg)


def test_zero_rows_is_rejected_by_the_configuration():
    with pytest.raises(ConfigError, match=r"^config\.rows: 0 is out of range"):
        AcceleratorConfig(rows=0)


@pytest.mark.parametrize("pe_kind", ["shift", "shift_add"])
def test_multiplier_free_pe_kinds_match_the_contract(pe_kind):
    # Every value the kind decodes appears: the LUT rows cycle through all of them.
    rng = np.random.default_rng(21)
    cfg = AcceleratorConfig(rows=3, cols=4, pe_kind=pe_kind)
    for lut in ("random", "extreme", "min"):
        for overflow in ("wrap", "saturate"):
            c = cfg.replace(overflow=overflow, acc_bits=16 if overflow == "saturate" else 32)
            prob = random_problem(rng, c, pixels=7, depth=int(rng.integers(1, 50)), channels=6,
                                  signed=bool(rng.random() < 0.5), lut=lut, raw=bool(rng.random() < 0.3))
            _check(c, [prob])
    # Every value the kind decodes, one LUT row per channel, against every activation extreme.
    values = np.arange(-128, 128)
    values = values[pe_decodable(values, pe_kind)]
    rows = -(-values.size // 16)
    prob = random_problem(rng, cfg, pixels=6, depth=16, channels=rows, signed=True, raw=True)
    prob.lut = np.resize(values, (rows, 16))
    prob.codes = np.tile(np.arange(16, dtype=np.uint8), (rows, 1))
    prob.act[:2] = [[-128] * 16, [127] * 16]
    _check(cfg, [prob])
