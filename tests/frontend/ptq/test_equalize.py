"""Cross-layer equalization and bias absorption: ranges move closer, the float function does not move."""

import math

import numpy as np
import pytest

from accel.frontend.graph import FloatGraph, FloatNode, run_float
from accel.frontend.ptq.equalize import (
    absorb_biases,
    channel_ranges,
    equalization_pairs,
    equalize,
    input_channel_ranges,
)

RELU, RELU6 = (0.0, math.inf), (0.0, 6.0)


def _conv(name, x, out, n, c, *, groups=1, act=RELU, padding=1, rng):
    return FloatNode(name, "conv", [x], out, {"stride": [1, 1], "padding": [padding] * 4, "dilation": [1, 1],
                                             "groups": groups, "act": act},
                     {"weight": rng.normal(size=(n, c // groups, 3, 3)), "bias": rng.normal(size=n) * 0.1})


def _imbalanced_graph(seed=0, act=RELU, depthwise=False):
    """conv -> (depthwise conv) -> conv -> max pool -> flatten -> linear, with output channels of each
    conv scaled by factors up to 2^6 that the next layer undoes (the function of a balanced net)."""
    rng = np.random.default_rng(seed)
    nodes = [_conv("c1", "x", "t1", 8, 3, act=act, rng=rng)]
    if depthwise:
        nodes.append(_conv("dw", "t1", "t1d", 8, 8, groups=8, act=act, rng=rng))
    nodes += [_conv("c2", nodes[-1].output, "t2", 6, 8, act=act, rng=rng),
              FloatNode("mp", "max_pool", ["t2"], "t3", {"kernel": [2, 2], "stride": [2, 2], "padding": [0] * 4,
                                                         "act": None}),
              FloatNode("fl", "flatten", ["t3"], "t4", {"act": None}),
              FloatNode("fc", "linear", ["t4"], "y", {"act": None},
                        {"weight": rng.normal(size=(5, 6 * 3 * 3)), "bias": rng.normal(size=5)})]
    shapes = {"x": (3, 6, 6), "t1": (8, 6, 6), "t1d": (8, 6, 6), "t2": (6, 6, 6), "t3": (6, 3, 3), "t4": (54,),
              "y": (5,)}
    graph = FloatGraph("g", "", "x", shapes, nodes, ["y"])
    for pair in equalization_pairs(graph):
        s = np.exp2(rng.integers(-6, 7, pair.channels) + rng.uniform(0, 1, pair.channels))
        w = pair.first.params["weight"]
        pair.first.params["weight"] = w * s.reshape(-1, 1, 1, 1)
        pair.first.params["bias"] = pair.first.params["bias"] * s
        if pair.first.act == RELU6:
            continue
        w2 = pair.second.params["weight"]
        if pair.second.op == "linear":
            pair.second.params["weight"] = (w2.reshape(w2.shape[0], pair.channels, -1) / s[None, :, None]
                                            ).reshape(w2.shape)
        elif pair.second.attrs["groups"] > 1:
            pair.second.params["weight"] = w2 / s.reshape(-1, 1, 1, 1)
        else:
            pair.second.params["weight"] = w2 / s.reshape(1, -1, 1, 1)
    return graph


def _spread(graph):
    """Per pair: log2 of the ratio between the largest and smallest of ``r1 * r2`` balance terms."""
    return [float(np.std(np.log2(channel_ranges(p.first) / input_channel_ranges(p))))
            for p in equalization_pairs(graph)]


def _x(seed=1):
    return np.random.default_rng(seed).normal(size=(16, 3, 6, 6)).astype(np.float32)


@pytest.mark.parametrize("depthwise", [False, True])
def test_equalization_balances_ranges_and_keeps_the_function(depthwise):
    graph = _imbalanced_graph(depthwise=depthwise)
    before = run_float(graph, _x())["y"]
    spread_before = _spread(graph)
    report = equalize(graph)
    assert len(report.pairs) == (3 if depthwise else 2)
    spread_after = _spread(graph)
    # each pair's ranges r1_i / r2_i were spread over ~2^6; equalized, r1_i == r2_i
    assert all(b > 1.0 for b in spread_before)
    assert all(a < 1e-3 for a in spread_after), spread_after
    np.testing.assert_allclose(run_float(graph, _x())["y"], before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


def test_depthwise_pointwise_pair_is_found():
    graph = _imbalanced_graph(depthwise=True)
    assert [(p.first.name, p.second.name) for p in equalization_pairs(graph)] == [
        ("c1", "dw"), ("dw", "c2"), ("c2", "fc")]


def test_power_of_two_equalization_puts_each_layer_on_one_mantissa():
    graph = _imbalanced_graph(depthwise=True)
    before = run_float(graph, _x())["y"]
    equalize(graph, power_of_two=True)
    for pair in equalization_pairs(graph):
        mantissa = np.log2(channel_ranges(pair.first)) % 1.0
        assert np.ptp(mantissa) < 1e-9 or np.ptp((mantissa + 0.5) % 1.0) < 1e-9, (pair.first.name, mantissa)
    np.testing.assert_allclose(run_float(graph, _x())["y"], before, rtol=1e-4, atol=1e-4 * np.abs(before).max())


def test_relu6_pairs_are_skipped_unless_turned_into_relu():
    graph = _imbalanced_graph(act=RELU6)
    before = run_float(graph, _x())["y"]
    assert equalize(graph, relu6_as_relu=False).pairs == []
    np.testing.assert_array_equal(run_float(graph, _x())["y"], before)
    report = equalize(graph, relu6_as_relu=True)
    assert report.relu6_replaced == ["c1", "c2"]
    assert graph.nodes[0].act == RELU


def test_bias_absorption_moves_bias_and_keeps_the_function():
    graph = _imbalanced_graph()
    fc_in = graph.nodes[1]  # c2, feeding the linear layer through max pool and flatten (no padding)
    fc_in.params["bias"] = fc_in.params["bias"] + 50.0  # every pre-activation now well above zero
    x = _x()
    before = run_float(graph, x)["y"]
    bias_before = fc_in.params["bias"].copy()
    absorbed = absorb_biases(graph, x)
    assert absorbed.get("c2", 0) > 0
    assert np.all(fc_in.params["bias"] <= bias_before) and np.any(fc_in.params["bias"] < bias_before - 1.0)
    np.testing.assert_allclose(run_float(graph, x)["y"], before, rtol=1e-4, atol=1e-4 * np.abs(before).max())
