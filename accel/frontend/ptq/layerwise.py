"""What the layer-by-layer methods (empirical bias correction, AdaRound) read for one MAC layer:
its input as the hardware computes it (the bit-exact engine, earlier layers already changed) and
the float network's own tensors as the target.

The engine is in the loop on purpose (LITERATURE.md, AdaRound on our datapath): the quantized
inputs must match the hardware bit for bit, shift rounding and clamps included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ...datapath import quantize_input
from ...engine import run_model
from ...ir import Layer, Model
from ..graph import FloatGraph, FloatNode, run_float, run_node
from ..weights import WeightQuant

__all__ = ["MacLayer", "mac_layers", "engine_tensor", "pre_activation", "quantize_network_input"]


@dataclass
class MacLayer:
    """A conv/linear node of the float graph with the integer layer emitted for it.

    Members
    -------
    node : FloatNode
    layer : accel.ir.Layer
    weights : WeightQuant
        The quantizer's result (its ``step`` is the real size of one LUT unit per channel).
    acc_scale : numpy.ndarray
        Accumulator units per real unit of the pre-activation, per output channel.
    """

    node: FloatNode
    layer: Layer
    weights: WeightQuant
    acc_scale: np.ndarray


def mac_layers(model: Model, graph: FloatGraph, weights: dict[str, WeightQuant]) -> list[MacLayer]:
    """The conv/linear layers in execution order (``affine`` nodes, diagonal on the array, are left out)."""
    nodes = {n.name: n for n in graph.nodes if n.op in ("conv", "linear")}
    out = []
    for layer in model.layers:
        node = nodes.get(layer.name)
        if node is None:
            continue
        e_x = model.tensors[layer.inputs[0]].exponent
        q = weights[node.name]
        if "weight_exponent" in layer.arrays:  # shift requantization: dead channels got their own exponent
            acc_scale = np.ldexp(1.0, e_x + np.asarray(layer.arrays["weight_exponent"], np.int64))
        else:
            acc_scale = math.ldexp(1.0, e_x) / np.asarray(q.step, np.float64)
        out.append(MacLayer(node, layer, q, np.asarray(acc_scale, np.float64)))
    return out


def quantize_network_input(model: Model, x: np.ndarray) -> np.ndarray:
    """Float images to the model's integer input tensor (as ``accel eval`` does)."""
    info = model.tensors[model.inputs[0]]
    lo, hi = info.range
    return quantize_input(x, info.exponent, lo, hi).astype(np.dtype(info.dtype))


def engine_tensor(model: Model, x_int: np.ndarray, tensor: str) -> np.ndarray:
    """The integer tensor ``tensor`` as the bit-exact engine computes it from ``x_int``."""
    if tensor == model.inputs[0]:
        return x_int
    return run_model(model, x_int, return_all=True)[tensor]


def pre_activation(node: FloatNode, x: np.ndarray, **params) -> np.ndarray:
    """``node`` without its fused activation on ``x`` (float32), with ``params`` replaced."""
    bare = replace(node, attrs={**node.attrs, "act": None}, params={**node.params, **params})
    return run_node(bare, [np.asarray(x, np.float32)])


def float_tensors(graph: FloatGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    """Every tensor of the float network on ``x``."""
    return run_float(graph, x, return_all=True)
