"""Multipoint quantization: more column budget, lower layer output error; bit-exact on every backend."""

import copy
import math

import numpy as np
import pytest

from accel.engine import BACKENDS, run_model
from accel.errors import ConfigError
from accel.frontend.ptq.layerwise import engine_tensor, float_tensors, quantize_network_input
from accel.frontend.ptq.multipoint import multipoint
from accel.perf import estimate
from tests.support.contract import assert_matches_contract
from tests.support.models import nearest_digits

FRACTIONS = (0.25, 0.5, 1.0)


@pytest.fixture(scope="module")
def budgets():
    """cnn_digits at W2 (per-channel LUTs) with nearest rounding, then multipoint at growing budgets."""
    graph, x, weights, nearest = nearest_digits(weight_bits=2)
    models, results = {0.0: nearest}, {}
    for fraction in FRACTIONS:
        model, w = copy.deepcopy(nearest), copy.deepcopy(weights)
        results[fraction] = multipoint(model, graph, w, x, fraction)
        models[fraction] = model
    return graph, models, results, x


def _layer_mse(graph, model, x, layer_name):
    """The layer's output through the engine (dequantized) against the float network's, on ``x``."""
    layer = model.layer(layer_name)
    got = engine_tensor(model, quantize_network_input(model, x), layer.output).astype(np.float64)
    got *= math.ldexp(1.0, -model.tensors[layer.output].exponent)
    return float(np.mean((got - float_tensors(graph, x)[layer.output]) ** 2))


def test_more_columns_lower_the_output_error(budgets):
    graph, models, results, x = budgets
    first = models[0.0].layers[0].name  # its input is the same in every model: the error is the layer's own
    errors = [_layer_mse(graph, models[f], x, first) for f in (0.0,) + FRACTIONS]
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    for fraction, per_layer in results.items():
        assert per_layer, fraction
        for name, r in per_layer.items():
            n = models[fraction].layer(name).arrays["codes"].shape[0]
            assert r.budget == round(fraction * n) and 0 < r.points <= r.budget, (name, r)
            assert r.error_after < r.error_before, (name, r)
            assert models[fraction].layer(name).n_points == r.points
    # the logits layer keeps one scale for every channel: no points
    raw = [layer.name for layer in models[1.0].layers if layer.attrs.get("raw")]
    assert raw and not set(raw) & set(results[1.0]) and all(models[1.0].layer(n).n_points == 0 for n in raw)


def test_multipoint_model_is_bit_exact_on_every_backend(budgets):
    _, models, _, x = budgets
    model = models[0.5]
    x_int = quantize_network_input(model, x[:48])
    for backend in BACKENDS:
        assert_matches_contract(model, x_int, run_model(model, x_int, backend=backend, return_all=True), backend)


def test_perf_prices_the_extra_columns(budgets):
    _, models, _, _ = budgets
    plain, multi = estimate(models[0.0]), estimate(models[0.5])
    assert multi.cycles > plain.cycles and multi.macs > plain.macs
    assert sum(lay.extra_columns for lay in multi.layers) == sum(lay.n_points for lay in models[0.5].layers)


def test_fraction_out_of_range_is_refused(budgets):
    graph, models, _, x = budgets
    with pytest.raises(ConfigError, match=r"multipoint fraction 0: expected more than 0 and at most 4"):
        multipoint(copy.deepcopy(models[0.0]), graph, {}, x, 0)
