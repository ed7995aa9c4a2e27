"""cocotb suites: the exported Verilog under Verilator and Icarus against the contract and the engine.

Default (``make test``): the default 8x8 array on both simulators (random tiles
with signed/unsigned activations, random and extreme LUTs, raw outputs; whole
conv and linear layers; every MAC layer of a real trained network), plus an
odd configuration (2x3, 16-bit saturating accumulators, multiply-shift, floor,
per-channel LUTs) under Icarus, and the shift and shift-add PE kinds (4x4) on
both. ``ACCEL_FULL=1`` adds the sweep over arrays 1x1, 2x3, 4x4, 8x8, 16x16 with
random configurations on both simulators.
``ACCEL_WAVES=1`` records waveforms (FST under Icarus, VCD under Verilator) in
the run folder under the cache's ``runs/`` (``accel.rtlsim.cache_dir``).
"""

import os

import numpy as np
import pytest

from accel.compile import plan_tiles
from accel.config import AcceleratorConfig
from accel.frontend.workflow import MODELS_DIR
from accel.ir import ModelBuilder
from accel.rtlsim import build_simulation, model_inputs, run_jobs, verify_model, write_cycles
from tests.support.rtlcheck import SAMPLES, describe_mismatch
from tests.support.strategies import random_config, random_problem

pytestmark = pytest.mark.cocotb
WAVES = os.environ.get("ACCEL_WAVES", "") not in ("", "0")
SIMS = ["verilator", "icarus"]


def check_random_problems(config, sim, rng, n_jobs, **kw):
    """Random problems, one job each, in one simulator run; results and cycles checked exactly."""
    jobs = []
    for i in range(n_jobs):
        prob = random_problem(rng, config, pixels=int(rng.integers(1, 3 * config.rows + 3)),
                              depth=int(rng.integers(1, 80)), channels=int(rng.integers(1, 2 * config.cols + 3)),
                              signed=bool(i % 2), lut=["random", "extreme", "min"][i % 3], raw=i % 4 == 3,
                              name=f"random{i}", **kw)
        jobs.append((prob.name, plan_tiles([prob], config), [prob.expected(config)]))
    build = build_simulation(config, sim, waves=WAVES)
    results = run_jobs(build, jobs)
    assert len(results) == len(jobs)
    for (name, plan, expected), res in zip(jobs, results):
        got = res.results()[0]
        assert np.array_equal(got, expected[0]), describe_mismatch(plan.problems[0], got, expected[0])
        assert [(c.first_in, c.last_out) for c in res.tile_cycles] == \
               [(c.first_in, c.last_out) for c in res.expected_cycles], f"{name}: cycles differ from the schedule"
        assert res.total_cycles == res.expected_cycles[-1].last_out + 1
        assert res.checker_mismatches == 0, f"{name}: the testbench checker found {res.checker_mismatches} beats"


def _layers_model(config):
    """A 3x3 conv 8->16 on 14x14 (ReLU, uint8 out), a strided grouped conv, and a linear layer."""
    rng = np.random.default_rng(5)
    b = ModelBuilder(config)
    x = b.input("x", (8, 14, 14), "int8")
    c1 = b.conv2d("conv3x3", x, codes=rng.integers(0, 16, (16, 8, 3, 3)).astype(np.uint8),
                  lut=rng.integers(-128, 128, (1, 16)), bias=rng.integers(-3000, 3000, 16),
                  shift=rng.integers(6, 10, 16), padding=(1, 1, 1, 1), lo=0, hi=255, dtype="uint8")
    c2 = b.conv2d("conv_grouped", c1, codes=rng.integers(0, 16, (8, 4, 3, 3)).astype(np.uint8),
                  lut=rng.integers(-128, 128, (1, 16)), bias=rng.integers(-3000, 3000, 8),
                  shift=rng.integers(8, 12, 8), stride=(2, 2), padding=(1, 1, 1, 1), groups=4, lo=-128, hi=127)
    f = b.add_layer("flat", "flatten", [c2], {}, dtype="int8", exponent=0)
    y = b.linear("fc", f, codes=rng.integers(0, 16, (10, 392)).astype(np.uint8),
                 lut=rng.integers(-128, 128, (1, 16)), bias=rng.integers(-3000, 3000, 10),
                 shift=np.zeros(10, int), raw=True)
    return b.build([y])


def _check_reports(reports):
    for r in reports:
        assert r.ok, f"{r.layer}: {r.mismatches} of {r.outputs} outputs differ; " + "; ".join(map(str, r.first))
        assert r.cycles_exact and r.cycles == r.schedule_cycles, f"{r.layer}: cycles differ from the schedule"
        assert r.outputs > 0


@pytest.mark.parametrize("sim", SIMS)
def test_default_array_random_tiles(sim):
    check_random_problems(AcceleratorConfig(), sim, np.random.default_rng(100), SAMPLES)


@pytest.mark.parametrize("sim", SIMS)
def test_default_array_whole_layers_against_the_engine(sim, tmp_path):
    model = _layers_model(AcceleratorConfig())
    x = np.random.default_rng(1).integers(-128, 128, (2, 8, 14, 14)).astype(np.int8)
    reports = verify_model(model, x, sim=sim, waves=WAVES)
    assert [r.layer for r in reports] == ["conv3x3", "conv_grouped", "fc"]
    _check_reports(reports)
    path = write_cycles(reports, tmp_path / "cycles.json", config=model.config, sim=sim)
    assert '"cycles_exact": true' in path.read_text()


@pytest.fixture(scope="module")
def digits_model():
    from accel.frontend import quantize_onnx

    return quantize_onnx(MODELS_DIR / "cnn_digits.onnx", "digits")


@pytest.mark.parametrize("sim", SIMS)
def test_real_trained_network_layers_against_the_engine(sim, digits_model):
    x = model_inputs(digits_model, None, 3)
    reports = verify_model(digits_model, x, sim=sim, waves=WAVES)
    assert len(reports) == 4  # two convs, two linear layers
    _check_reports(reports)


def test_odd_configuration_under_icarus():
    cfg = AcceleratorConfig(rows=2, cols=3, acc_bits=16, overflow="saturate", requant="multiply_shift",
                            rounding="floor", lut_scope="channel", mult_bits=12)
    check_random_problems(cfg, "icarus", np.random.default_rng(7), SAMPLES)


@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("pe_kind", ["shift", "shift_add"])
def test_multiplier_free_pe_kinds_bit_exact(sim, pe_kind):
    # LUTs drawn from the values the kind decodes; results and cycles exact, as for the general PE.
    check_random_problems(AcceleratorConfig(rows=4, cols=4, pe_kind=pe_kind), sim,
                          np.random.default_rng(40 + len(pe_kind)), SAMPLES)


def test_checker_reports_a_wrong_expectation_with_its_place():
    # The testbench must fail when the expected outputs are edited (no test that cannot fail).
    cfg = AcceleratorConfig(rows=2, cols=2)
    rng = np.random.default_rng(3)
    prob = random_problem(rng, cfg, pixels=5, depth=9, channels=3, clamp=(-128, 127))
    expected = prob.expected(cfg)
    wrong = expected.copy()
    wrong[3, 1] += 1 if wrong[3, 1] < 127 else -1
    build = build_simulation(cfg, "icarus")
    (res,) = run_jobs(build, [("edited", plan_tiles([prob], cfg), [wrong])])
    assert res.checker_mismatches == 1
    got = res.results()[0]
    assert np.argwhere(got != wrong).tolist() == [[3, 1]]
    assert np.array_equal(got, expected)


def test_layers_larger_than_the_harness_split_into_jobs(monkeypatch):
    from accel.rtlsim import build

    # Small job limits (the harness memories stay as built): every layer spans several jobs.
    monkeypatch.setitem(build.HARNESS_LIMITS, "TILE_DEPTH", 7)
    model = _layers_model(AcceleratorConfig())
    x = np.random.default_rng(2).integers(-128, 128, (1, 8, 14, 14)).astype(np.int8)
    reports = verify_model(model, x, sim="icarus")
    assert reports[0].tiles > 7
    _check_reports(reports)


SWEEP = [(1, 1), (2, 3), (4, 4), (8, 8), (16, 16)]


@pytest.mark.slow
@pytest.mark.parametrize("sim", SIMS)
@pytest.mark.parametrize("rows,cols", SWEEP)
def test_sweep_arrays_and_random_configurations(rows, cols, sim):
    rng = np.random.default_rng(rows * 100 + cols)
    configs = [random_config(rng, rows, cols) for _ in range(3)]
    configs.append(AcceleratorConfig(rows=rows, cols=cols, acc_bits=16, overflow="saturate"))
    configs.append(AcceleratorConfig(rows=rows, cols=cols, acc_bits=16, overflow="wrap"))
    for cfg in configs:
        check_random_problems(cfg, sim, rng, 2 * SAMPLES)


def test_multipoint_layers_on_verilator():
    """Multipoint layers (contract v1.3): the extra points run as ordinary array columns in raw mode
    (compared with the contract's accumulators), and the RTL's columns through the vector unit's epilogue
    equal the engine's layer output; a conv, a depthwise conv (points read their channel's group) and a
    linear layer."""
    from tests.support.models import small_resnet

    model = small_resnet(multipoint=True)
    x = np.random.default_rng(2).integers(-128, 128, (1, 1, 12, 12)).astype(np.int8)
    reports = verify_model(model, x, layers=["stem", "block.dw", "fc"], sim="verilator", waves=WAVES)
    _check_reports(reports)
    plain = verify_model(small_resnet(), x, layers=["stem"], sim="verilator")
    # stem: 8 channels + 3 points = 11 columns on the 8x8 array: a second column block; the raw columns
    # (144 x 11) and the layer output (144 x 8) are both compared
    assert reports[0].tiles == 2 * plain[0].tiles
    assert reports[0].outputs == 144 * 11 + 144 * 8
