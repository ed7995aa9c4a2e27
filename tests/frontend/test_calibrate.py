"""Calibration: power-of-two exponents per tensor by min/max, percentile and MSE."""

import math

import numpy as np
import pytest

from accel.data import load_dataset
from accel.errors import DataError, ModelImportError
from accel.frontend.calibrate import (
    calibrate,
    choose_exponent,
    input_statistics,
    statistics_mismatch,
    tensor_signedness,
)
from accel.frontend.onnx_import import import_onnx
from accel.frontend.workflow import MODELS_DIR


def test_minmax_is_the_largest_exponent_without_clipping():
    rng = np.random.default_rng(0)
    for _ in range(50):
        values = rng.normal(size=100) * rng.uniform(0.01, 100)
        e = choose_exponent(values, -128, 127, "minmax")
        q = np.round(values * 2.0 ** e)
        assert q.max() <= 127 and q.min() >= -128
        assert np.abs(np.round(values * 2.0 ** (e + 1))).max() > 127 or np.round(
            values * 2.0 ** (e + 1)).min() < -128


def test_unsigned_range_gains_one_bit():
    v = np.array([0.0, 0.5, 1.0])
    assert choose_exponent(v, 0, 255, "minmax") == choose_exponent(v, -128, 127, "minmax") + 1 == 7


def test_percentile_and_mse_clip_an_outlier():
    values = np.concatenate([np.random.default_rng(1).normal(size=20000), [40.0]])
    e_mm = choose_exponent(values, -128, 127, "minmax")
    assert e_mm == math.floor(math.log2(127 / 40))
    assert choose_exponent(values, -128, 127, "percentile") > e_mm
    e_mse = choose_exponent(values, -128, 127, "mse")
    assert e_mse > e_mm
    err = [np.mean((np.clip(np.round(values * 2.0 ** e), -128, 127) / 2.0 ** e - values) ** 2)
           for e in range(e_mm, e_mm + 5)]
    assert e_mse == e_mm + int(np.argmin(err))


def test_unknown_method():
    with pytest.raises(ModelImportError, match=r"^calibration method 'kl' is not one of minmax, percentile, mse$"):
        choose_exponent(np.ones(3), -128, 127, "kl")


def test_calibrate_bundled_model_is_seeded_and_signed_as_the_graph_says():
    graph = import_onnx(MODELS_DIR / "mobilenet_mnist.onnx")
    x = load_dataset("mnist5k", "calib").x
    a = calibrate(graph, x, method="mse", size=64, seed=1)
    b = calibrate(graph, x, method="mse", size=64, seed=1)
    assert a.exponents == b.exponents and a.images == 64
    signed = tensor_signedness(graph)
    assert signed[graph.input] and signed[graph.outputs[0]]
    relu6 = [n.output for n in graph.nodes if n.act == (0.0, 6.0)]
    assert relu6 and not any(signed[t] for t in relu6)
    mm = calibrate(graph, x, method="minmax", size=64, seed=1)
    for t in relu6:  # unsigned: the observed maximum fits uint8, and one more bit would not
        top = mm.ranges[t][1]
        assert mm.ranges[t][0] >= 0 and round(top * 2.0 ** mm.exponents[t]) <= 255 < top * 2.0 ** (
            mm.exponents[t] + 1)
        assert a.exponents[t] >= mm.exponents[t]  # MSE only ever trades range for resolution


def test_calibrate_bad_data():
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    with pytest.raises(DataError, match=r"^the calibration set is empty; expected at least one image$"):
        calibrate(graph, np.zeros((0, 1, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"^calibration images have shape \(1, 28, 28\); model 'cnn_digits' "
                                        r"expects \(1, 8, 8\)$"):
        calibrate(graph, np.zeros((4, 1, 28, 28), np.float32))


def test_statistics_mismatch_tells_normalized_from_unnormalized_inputs():
    mnist = load_dataset("mnist5k", "calib").x
    raw = input_statistics(mnist)
    normalized = input_statistics((mnist - 0.1307) / 0.3081)
    test = input_statistics(load_dataset("mnist5k", "test").x)
    assert raw["mean"] == pytest.approx(0.13, abs=0.01) and normalized["std"] == pytest.approx(1.0, abs=0.05)
    assert statistics_mismatch(raw, test) is None and statistics_mismatch(test, raw) is None
    assert statistics_mismatch(raw, normalized).startswith("standard deviation 0.3")
    assert statistics_mismatch(normalized, raw).startswith("standard deviation 1")
    shifted = {"mean": raw["mean"] + 3 * raw["std"], "std": raw["std"]}
    assert statistics_mismatch(shifted, raw).startswith("mean ")
