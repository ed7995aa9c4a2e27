"""`accel perf`'s array cycles against the cycles the cocotb testbench measures on the Verilog.

The performance model prices a layer from its shapes alone (zero activations,
batch 1); the RTL runs the same layer on real images. Default: random GEMM
problems and every conv/linear layer of the bundled digits CNN on a 4x4 and
an 8x8 array under Verilator. ``slow``: every conv/linear layer of every
bundled model on 2x2, 4x4, 8x8 and 16x16.
"""

import dataclasses

import numpy as np
import pytest

from accel.compile import lower_layer, plan_tiles, split_plan
from accel.config import AcceleratorConfig
from accel.frontend.workflow import MODELS_DIR
from accel.perf import estimate, plan_cycles
from accel.rtlsim.build import HARNESS_LIMITS, build_simulation
from accel.rtlsim.jobs import run_jobs
from accel.rtlsim.verify import model_inputs, verify_model
from tests.support.strategies import random_problem

pytestmark = pytest.mark.cocotb
MODELS = MODELS_DIR
BUNDLED = {"cnn_digits": "digits", "cnn_mnist": "mnist5k", "resnet_mnist": "mnist5k", "mobilenet_mnist": "mnist5k"}


@pytest.fixture(scope="module")
def quantized():
    """Bundled models quantized with the defaults, by name (built on first use)."""
    from accel.frontend import quantize_onnx

    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = quantize_onnx(MODELS / f"{name}.onnx", BUNDLED[name])
        return cache[name]
    return get


def _on_array(model, rows, cols):
    return dataclasses.replace(model, config=model.config.replace(rows=rows, cols=cols))


def _check_model_layers(model):
    """Every conv/linear layer on the RTL (one image): its cycles equal the performance model's."""
    perf = {layer.name: layer.compute_cycles for layer in estimate(model).layers}
    reports = verify_model(model, model_inputs(model, None, 1))
    assert reports
    for r in reports:
        assert r.ok, f"{r.layer}: the RTL disagrees with the engine"
        jobs = _harness_jobs(model, r.layer)
        if len(jobs) == 1:
            assert r.cycles == perf[r.layer], f"{r.layer}: RTL {r.cycles} cycles, perf {perf[r.layer]}"
        else:  # the harness memories split the layer into jobs, each from reset: price each job
            assert r.cycles == sum(plan_cycles(job) for job in jobs), f"{r.layer}: split into {len(jobs)} jobs"


def _harness_jobs(model, name):
    """The layer's plan (batch 1) as the harness runs it: split into jobs that fit its memories."""
    layer = model.layer(name)
    x = np.zeros((1, *model.tensors[layer.inputs[0]].shape), dtype=np.int64)
    plan = plan_tiles(lower_layer(model, layer, x), model.config)
    return split_plan(plan, max_tiles=HARNESS_LIMITS["TILE_DEPTH"], max_data=HARNESS_LIMITS["DATA_DEPTH"],
                      max_control=HARNESS_LIMITS["CTRL_DEPTH"])


@pytest.mark.parametrize("rows,cols", [(4, 4), (8, 8)])
def test_random_gemm_cycles_equal_the_rtl(rows, cols):
    cfg = AcceleratorConfig(rows=rows, cols=cols)
    rng = np.random.default_rng(rows * 31 + cols)
    jobs = []
    for i in range(6):
        prob = random_problem(rng, cfg, pixels=int(rng.integers(1, 4 * rows)), depth=int(rng.integers(1, 160)),
                              channels=int(rng.integers(1, 3 * cols)), name=f"gemm{i}")
        jobs.append((prob.name, plan_tiles([prob], cfg), [prob.expected(cfg)]))
    results = run_jobs(build_simulation(cfg, "verilator"), jobs)
    for (name, plan, _), res in zip(jobs, results):
        assert res.checker_mismatches == 0, name
        assert res.total_cycles == plan_cycles(plan), f"{name}: RTL {res.total_cycles}, perf {plan_cycles(plan)}"


@pytest.mark.parametrize("rows,cols", [(4, 4), (8, 8)])
def test_bundled_model_layer_cycles_equal_the_rtl(rows, cols, quantized):
    _check_model_layers(_on_array(quantized("cnn_digits"), rows, cols))


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED))
@pytest.mark.parametrize("size", [2, 4, 8, 16])
def test_every_bundled_layer_on_every_array(name, size, quantized):
    _check_model_layers(_on_array(quantized(name), size, size))
