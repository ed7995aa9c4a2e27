"""Graph passes over an imported :class:`~accel.frontend.graph.FloatGraph`, run in this order.

1. :func:`prune_dead_nodes`: drop nodes that no graph output depends on;
2. :func:`fold_batchnorm`: fold ``affine`` nodes (BatchNormalization, constant
   add/mul) into the conv/linear before them when that layer feeds nothing else;
3. :func:`fuse_activations`: fuse Relu/Clip (identity ``affine`` nodes with
   ``act``) into the conv, linear, affine or add before them; an activation
   with nothing to fuse into stays an identity ``affine``.

Each pass changes the graph in place and returns it, so that it can be tested
on its own (``tests/frontend/test_passes.py``).
"""

from __future__ import annotations

from .graph import FloatGraph, FloatNode

__all__ = ["GRAPH_PASSES", "prune_dead_nodes", "fold_batchnorm", "fuse_activations", "run_graph_passes"]


def prune_dead_nodes(graph: FloatGraph) -> FloatGraph:
    """Drop nodes whose outputs no graph output depends on (dead branches). Returns ``graph``."""
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if node.output in needed:
            keep.append(node)
            needed.update(node.inputs)
    graph.nodes = keep[::-1]
    graph.shapes = {k: v for k, v in graph.shapes.items()
                    if k == graph.input or any(n.output == k for n in graph.nodes)}
    return graph


def fold_batchnorm(graph: FloatGraph) -> FloatGraph:
    """Fold ``affine`` nodes (BatchNorm, constant add/mul) into the conv/linear before them.

    A fold happens when the affine reads the only output of a conv or linear
    layer that has no fused activation, feeds nothing else and is no graph
    output: ``W' = scale * W`` per output channel, ``b' = scale * b + shift``.
    Returns ``graph`` (changed in place).
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node.op != "affine" or node.attrs.get("identity"):
                continue
            prev = graph.producer(node.inputs[0])
            if (prev is None or prev.op not in ("conv", "linear") or prev.act is not None
                    or len(graph.consumers(prev.output)) != 1 or prev.output in graph.outputs):
                continue
            scale, shift = node.params["scale"], node.params["shift"]
            w = prev.params["weight"]
            prev.params["weight"] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            prev.params["bias"] = prev.params["bias"] * scale + shift
            prev.attrs["act"] = node.act
            prev.attrs.setdefault("folded", []).append(node.name)
            _fold_bn_stats(prev, node, scale, shift)
            _replace_output(graph, prev, node)
            changed = True
    return graph


def _fold_bn_stats(prev: FloatNode, affine: FloatNode, scale, shift) -> None:
    """Keep the per-channel output mean and deviation (BatchNorm's beta, |gamma|) with the folded
    layer: a BatchNorm's own, or an earlier one's carried through a later affine fold."""
    if "bn_stats" in affine.attrs:
        prev.attrs["bn_stats"] = affine.attrs["bn_stats"]
    elif "bn_stats" in prev.attrs:
        mean, std = prev.attrs["bn_stats"]
        prev.attrs["bn_stats"] = (mean * scale + shift, std * abs(scale))


def _replace_output(graph: FloatGraph, keep: FloatNode, drop: FloatNode) -> None:
    """``keep`` now writes ``drop``'s output tensor; ``drop`` leaves the graph."""
    del graph.shapes[keep.output]
    keep.output = drop.output
    graph.nodes.remove(drop)


def fuse_activations(graph: FloatGraph) -> FloatGraph:
    """Fuse Relu/Clip (identity ``affine`` with ``act``) into the conv, linear, affine or add before it.

    Two clips in a row intersect. An activation whose producer feeds other
    nodes too, or has no MAC/add producer (it follows the input or a pool),
    stays an identity ``affine`` (a depthwise 1x1 conv on the datapath).
    Returns ``graph`` (changed in place).
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node.op != "affine" or not node.attrs.get("identity"):
                continue
            prev = graph.producer(node.inputs[0])
            if (prev is None or prev.op not in ("conv", "linear", "affine", "add")
                    or len(graph.consumers(prev.output)) != 1 or prev.output in graph.outputs):
                continue
            lo, hi = node.act
            if prev.act is not None:
                lo, hi = max(lo, prev.act[0]), min(hi, prev.act[1])
            prev.attrs["act"] = (lo, hi)
            _replace_output(graph, prev, node)
            changed = True
    return graph


#: The passes :func:`run_graph_passes` applies, in order.
GRAPH_PASSES = (prune_dead_nodes, fold_batchnorm, fuse_activations)


def run_graph_passes(graph: FloatGraph) -> FloatGraph:
    """Apply :data:`GRAPH_PASSES` in order; returns ``graph`` (changed in place)."""
    for graph_pass in GRAPH_PASSES:
        graph_pass(graph)
    return graph
