"""Graph passes, each on its own: pruning, BatchNorm folding, activation fusion (the float result never changes)."""

import math

import numpy as np

from accel.frontend.graph import FloatGraph, FloatNode, run_float
from accel.frontend.passes import GRAPH_PASSES, fold_batchnorm, fuse_activations, prune_dead_nodes, run_graph_passes

RNG = np.random.default_rng(5)


def conv(name, x, out, n=3, c=2, act=None):
    return FloatNode(name, "conv", [x], out, {"stride": [1, 1], "padding": [1, 1, 1, 1], "dilation": [1, 1],
                                             "groups": 1, "act": act},
                     {"weight": RNG.normal(size=(n, c, 3, 3)), "bias": RNG.normal(size=n)})


def affine(name, x, out, n=3, act=None, identity=False):
    attrs = {"act": act, "identity": True} if identity else {"act": act}
    params = ({"scale": np.ones(n), "shift": np.zeros(n)} if identity
              else {"scale": RNG.uniform(0.5, 2, n), "shift": RNG.normal(size=n)})
    return FloatNode(name, "affine", [x], out, attrs, params)


def graph_of(nodes, outputs, shapes):
    return FloatGraph("g", "", "x", {"x": (2, 5, 5), **shapes}, nodes, outputs)


def same_result(before: FloatGraph, after: FloatGraph):
    x = RNG.normal(size=(4, 2, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run_float(after, x)[after.outputs[0]], run_float(before, x)[before.outputs[0]],
                               rtol=1e-5, atol=1e-5)


def copy_graph(g: FloatGraph) -> FloatGraph:
    nodes = [FloatNode(n.name, n.op, list(n.inputs), n.output, dict(n.attrs), dict(n.params)) for n in g.nodes]
    return FloatGraph(g.name, g.source, g.input, dict(g.shapes), nodes, list(g.outputs))


def test_prune_drops_what_no_output_reads():
    g = graph_of([conv("c1", "x", "a"), conv("dead", "x", "d"), affine("bn", "a", "y")], ["y"],
                 {"a": (3, 5, 5), "d": (3, 5, 5), "y": (3, 5, 5)})
    assert [n.name for n in prune_dead_nodes(g).nodes] == ["c1", "bn"]
    assert "d" not in g.shapes


def test_batchnorm_folds_into_its_only_producer_and_nowhere_else():
    g = graph_of([conv("c1", "x", "a"), affine("bn", "a", "y", act=(0.0, math.inf))], ["y"],
                 {"a": (3, 5, 5), "y": (3, 5, 5)})
    before = copy_graph(g)
    fold_batchnorm(g)
    assert [(n.name, n.output, n.act) for n in g.nodes] == [("c1", "y", (0.0, math.inf))]
    assert g.nodes[0].attrs["folded"] == ["bn"]
    same_result(before, g)
    # The conv's output is read twice: folding would change the other reader.
    residual = FloatNode("sum", "add", ["a", "b"], "y", {"act": None})
    g = graph_of([conv("c1", "x", "a"), affine("bn", "a", "b"), residual], ["y"],
                 {"a": (3, 5, 5), "b": (3, 5, 5), "y": (3, 5, 5)})
    assert [n.op for n in fold_batchnorm(g).nodes] == ["conv", "affine", "add"]


def test_activations_fuse_and_two_clips_intersect():
    g = graph_of([conv("c1", "x", "a"), affine("relu6", "a", "b", act=(0.0, 6.0), identity=True),
                  affine("clip", "b", "y", act=(-1.0, 4.0), identity=True)], ["y"],
                 {"a": (3, 5, 5), "b": (3, 5, 5), "y": (3, 5, 5)})
    before = copy_graph(g)
    fuse_activations(g)
    assert [(n.name, n.output, n.act) for n in g.nodes] == [("c1", "y", (0.0, 4.0))]
    same_result(before, g)


def test_activation_with_nothing_to_fuse_into_stays_an_affine():
    g = graph_of([FloatNode("pool", "max_pool", ["x"], "p", {"kernel": [1, 1], "stride": [1, 1],
                                                            "padding": [0, 0, 0, 0], "act": None}),
                  affine("relu", "p", "y", n=2, act=(0.0, math.inf), identity=True)], ["y"],
                 {"p": (2, 5, 5), "y": (2, 5, 5)})
    assert [n.op for n in run_graph_passes(g).nodes] == ["max_pool", "affine"]
    assert GRAPH_PASSES == (prune_dead_nodes, fold_batchnorm, fuse_activations)
