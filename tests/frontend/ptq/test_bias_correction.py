"""Bias correction removes the mean output error that weight quantization causes."""

import math

import numpy as np
import pytest

from accel.data import load_dataset
from accel.engine import run_model
from accel.frontend.calibrate import calibrate
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx
from accel.frontend.ptq.bias_correction import (
    analytic_bias_correction,
    clipped_normal_mean,
    empirical_bias_correction,
    input_means_from_batchnorm,
)
from accel.frontend.ptq.layerwise import pre_activation, quantize_network_input
from accel.frontend.quantize import default_config, dequantize_output, emit_integer_model, quantize_layer_weights
from accel.frontend.workflow import MODELS_DIR
from accel.ir import MAC_OPS


@pytest.mark.parametrize("lo,hi", [(0.0, math.inf), (0.0, 6.0), (-math.inf, math.inf), (-1.0, 0.5)])
def test_clipped_normal_mean_matches_a_large_sample(lo, hi):
    mean, std = np.array([-1.0, 0.3, 2.0, 7.0]), np.array([0.5, 1.0, 3.0, 2.0])
    draws = np.random.default_rng(0).normal(mean, std, size=(400_000, 4))
    np.testing.assert_allclose(clipped_normal_mean(mean, std, lo, hi), np.clip(draws, lo, hi).mean(axis=0),
                               atol=0.01)


def _setup(name, data, weight_bits):
    graph = import_onnx(MODELS_DIR / f"{name}.onnx")
    x = load_dataset(data, "calib").x[:256]
    config = default_config(weight_bits=weight_bits)
    weights = quantize_layer_weights(graph, config)
    return graph, x, config, weights


def _logit_mean_error(model, graph, x):
    out = graph.outputs[0]
    logits = dequantize_output(model, out, run_model(model, quantize_network_input(model, x))[out])
    return np.abs((logits - run_float(graph, x)[out]).mean(axis=0))


def test_empirical_bias_correction_removes_the_mean_logit_error():
    graph, x, config, weights = _setup("cnn_digits", "digits", 2)
    model = emit_integer_model(graph, calibrate(graph, x), config, weights=weights)
    before = _logit_mean_error(model, graph, x)
    removed = empirical_bias_correction(model, graph, weights, x)
    after = _logit_mean_error(model, graph, x)
    assert set(removed) == {layer.name for layer in model.layers if layer.op in MAC_OPS}
    assert before.max() > 0.05  # W2 leaves a visible mean error ...
    assert after.max() < 0.2 * before.max(), (before, after)  # ... that the correction takes away


def test_analytic_bias_correction_uses_batchnorm_statistics():
    graph, x, _, weights = _setup("resnet_mnist", "mnist5k", 3)
    floats = run_float(graph, x, return_all=True)
    fed = [n for n in graph.nodes if n.op in ("conv", "linear") and input_means_from_batchnorm(graph, n) is not None]
    assert fed, "resnet_mnist has BatchNorm'd layers feeding convolutions"

    reference = {n.name: pre_activation(n, floats[n.inputs[0]]) for n in fed}  # float weights and bias

    def mean_error(node):  # quantized weights with the node's current bias, against the float layer
        err = pre_activation(node, floats[node.inputs[0]], weight=weights[node.name].dequantize()) \
            - reference[node.name]
        return np.abs(err.mean(axis=(0, 2, 3)) if err.ndim == 4 else err.mean(axis=0))

    before = {n.name: mean_error(n) for n in fed}
    done = analytic_bias_correction(graph, weights)
    assert set(done) == {n.name for n in fed}
    after = {n.name: mean_error(n) for n in fed}
    # measured on data: the data-free correction (BatchNorm statistics, clipped normal) takes away a
    # good part of the mean error; the rest is where the training statistics differ from these images
    total_before = sum(v.sum() for v in before.values())
    total_after = sum(v.sum() for v in after.values())
    assert total_after < 0.8 * total_before, (total_before, total_after)
