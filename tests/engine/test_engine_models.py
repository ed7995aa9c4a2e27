"""Whole models through both backends; thread-count independence; the fast path's plan."""

import numba
import numpy as np
import pytest

from accel.config import AcceleratorConfig
from accel.engine import Engine, run_layer, run_model, run_model_contract
from tests.support.contract import assert_matches_contract
from tests.support.models import small_resnet

CONFIGS = [
    AcceleratorConfig(),
    AcceleratorConfig(requant="multiply_shift", rounding="floor"),
    AcceleratorConfig(acc_bits=16, overflow="saturate"),
    AcceleratorConfig(acc_bits=12, overflow="wrap", lut_scope="channel"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.requant.value}-{c.overflow.value}-{c.acc_bits}")
def test_whole_model_all_tensors(config):
    model = small_resnet(config, seed=3)
    x = np.random.default_rng(4).integers(-128, 128, (5, 1, 12, 12)).astype(np.int8)
    want = run_model_contract(model, x, return_all=True)
    for backend in ("fast", "reference"):
        assert_matches_contract(model, x, run_model(model, x, backend=backend, return_all=True), backend, want)


def test_fast_backend_runs_typical_layers_in_onnxruntime():
    steps = Engine(small_resnet(), "fast")._segments(False)
    assert [s[0] for s in steps] == ["onnx"]
    # a 12-bit wrapping accumulator can overflow: the wrap runs in the float64 epilogue, still in one graph
    wrap12 = Engine(small_resnet(AcceleratorConfig(acc_bits=12)), "fast")
    assert [s[0] for s in wrap12._segments(False)] == ["onnx"]
    assert {wrap12.layer_paths()[n] for n in ("stem", "block.conv1", "fc")} <= {"f32-split", "f64", "int8"}
    # a saturating one that can overflow needs the order of the additions: those layers run in numba
    kinds = [s[0] if s[0] == "onnx" else s[1].op for s in
             Engine(small_resnet(AcceleratorConfig(acc_bits=12, overflow="saturate")), "fast")._segments(False)]
    assert "conv2d" in kinds and "onnx" in kinds


def test_results_do_not_depend_on_thread_count():
    model = small_resnet(seed=5)
    x = np.random.default_rng(6).integers(-128, 128, (16, 1, 12, 12)).astype(np.int8)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in sorted({1, numba.config.NUMBA_NUM_THREADS}):
            numba.set_num_threads(threads)
            for backend in ("fast", "reference"):
                outs.append(run_model(model, x, backend=backend)["fc"])
    finally:
        numba.set_num_threads(before)
    assert all(np.array_equal(outs[0], o) for o in outs[1:])


def test_batching_and_run_layer_agree():
    model = small_resnet(seed=8)
    x = np.random.default_rng(9).integers(-128, 128, (10, 1, 12, 12)).astype(np.int8)
    whole = run_model(model, x, return_all=True)
    batched = run_model(model, x, return_all=True, batch_size=3)
    assert all(np.array_equal(whole[k], batched[k]) for k in whole)
    layer = model.layer("block.add")
    single = run_layer(model, layer, [whole["stem"], whole["block.dw"]])
    assert np.array_equal(single, whole["block.add"])


def test_small_calls_run_on_one_thread_with_the_same_results(monkeypatch):
    """A segment call below SINGLE_THREAD_MACS runs on a one-thread session (built on first use), a larger one on
    the configured threads; the results are the same either way."""
    from accel.engine import runner

    model = small_resnet(seed=3)
    x = np.random.default_rng(4).integers(-128, 128, (6, 1, 12, 12)).astype(np.int8)
    outs = []
    for limit in (0, 1 << 40):
        monkeypatch.setattr(runner, "SINGLE_THREAD_MACS", limit)
        engine = Engine(model)
        outs.append(engine.run({"image": x})["fc"])
        assert set(engine._segments(False)[0][1].built) == ({1} if limit else {runner._threads()})
    assert np.array_equal(outs[0], outs[1])
