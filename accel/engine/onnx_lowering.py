"""Lowering of integer layers to an exact floating-point ONNX graph for onnxruntime.

Why this is exact: every tensor holds integers. A convolution of integer
tensors computed in float32 is exact whatever the summation order, as long as
every partial sum stays below 2^24 in magnitude; :func:`exact_in_float` checks
that bound per layer from the weights, the bias and the input type (and that
the accumulator can neither wrap nor saturate, so both overflow modes agree).
Requantization uses only exact float operations: scaling by powers of two,
``Floor`` and ``Clip``. The half-up rounding shift uses the identity

    (t + 2^(s-1)) >> s  ==  floor((floor(t * 2^(1-s)) + 1) / 2)

which needs no addition of a large constant (exact for |t| < 2^23, s >= 0).
``multiply_shift`` and pooling multipliers run in float64 (exact below 2^52).
Layers that fail these checks run in the numba kernels instead.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..config import Requant, Rounding
from ..datapath import decode_weights
from ..ir import Layer, Model

__all__ = ["exact_in_float", "lower_layers", "ONNX_OPSET"]

ONNX_OPSET = 17
_F32_SAFE = 1 << 23   # |t| below this keeps 2t exact in float32 (the s = 0 case of the identity)
_F64_SAFE = 1 << 51
_ONNX_TYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int32": TensorProto.INT32}


def _input_bound(model: Model, layer: Layer) -> int:
    lo, hi = model.tensors[layer.inputs[0]].range
    bound = max(abs(lo), abs(hi))
    if layer.op in ("conv2d", "avg_pool"):
        bound = max(bound, abs(int(layer.attrs["pad_value"])))
    return bound


def exact_in_float(model: Model, layer: Layer) -> bool:
    """Whether the float lowering of ``layer`` is provably bit-exact."""
    cfg = model.config
    a = layer.attrs
    xmax = _input_bound(model, layer) if layer.inputs and layer.op not in ("add", "concat") else 255
    if layer.op in ("conv2d", "linear"):
        w = decode_weights(layer.arrays["codes"], layer.arrays["lut"])
        n = w.shape[0]
        bound = np.abs(w).reshape(n, -1).sum(axis=1) * xmax + np.abs(layer.arrays["bias"].astype(np.int64))
        worst = int(bound.max(initial=0))
        if worst >= _F32_SAFE or worst > cfg.acc_max:
            return False
        if cfg.requant is Requant.MULTIPLY_SHIFT and not a["raw"]:
            return worst * int(layer.arrays["mult"].max(initial=0)) < _F64_SAFE
        return True
    if layer.op == "add":
        return 255 * ((1 << a["shift_a"]) + (1 << a["shift_b"])) < _F32_SAFE
    if layer.op in ("avg_pool", "global_avg_pool"):
        shape = model.tensors[layer.inputs[0]].shape
        window = a["kernel"][0] * a["kernel"][1] if layer.op == "avg_pool" else shape[1] * shape[2]
        return window * xmax < (1 << 24) and window * xmax * a["mult"] < _F64_SAFE
    return layer.op in ("max_pool", "flatten", "reshape", "concat")


def _fold_fits(w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int, half_up: bool) -> bool:
    """Whether acc + bias + 2^(s-1) stays below 2^24 for every channel (folded requantization)."""
    n = w.shape[0]
    bound = np.abs(w).reshape(n, -1).sum(axis=1) * xmax + np.abs(bias)
    if half_up:
        bound = bound + np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0)
    return bool(np.all(bound < (1 << 24)))


class _Graph:
    def __init__(self):
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}__{self._n}"

    def const(self, value, hint: str, dtype=np.float32) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _channel_shape(rank: int, n: int) -> tuple[int, ...]:
    return (1, n) + (1,) * (rank - 2)


def _round_shift(g: _Graph, t: str, shift, rank: int, half_up: bool, dtype, hint: str) -> str:
    """Exact ``rshift_round(t, shift)`` for an integer-valued float tensor ``t``."""
    shift = np.asarray(shift, dtype=np.int64)
    n = shift.size
    shape = _channel_shape(rank, n) if shift.ndim else ()
    if not half_up:
        scale = g.const(np.ldexp(1.0, -shift).reshape(shape), hint + "_scale", dtype)
        return g.op("Floor", [g.op("Mul", [t, scale], hint)], hint)
    scale = g.const(np.ldexp(1.0, 1 - shift).reshape(shape), hint + "_scale", dtype)
    u = g.op("Floor", [g.op("Mul", [t, scale], hint)], hint)
    u = g.op("Add", [u, g.const(1.0, hint + "_one", dtype)], hint)
    return g.op("Floor", [g.op("Mul", [u, g.const(0.5, hint + "_half", dtype)], hint)], hint)


def _clip(g: _Graph, t: str, lo: int, hi: int, dtype, hint: str) -> str:
    return g.op("Clip", [t, g.const(lo, hint + "_lo", dtype), g.const(hi, hint + "_hi", dtype)], hint)


def _requant(g: _Graph, acc: str, layer: Layer, model: Model, rank: int, shift, mult, hint: str) -> str:
    """acc (float32, exact) -> float32 requantized values."""
    cfg = model.config
    half_up = cfg.rounding is Rounding.HALF_UP
    a = layer.attrs
    if mult is None:
        t = _round_shift(g, acc, shift, rank, half_up, np.float32, hint)
        return _clip(g, t, a["lo"], a["hi"], np.float32, hint)
    t = g.op("Cast", [acc], hint, to=TensorProto.DOUBLE)
    mult = np.asarray(mult, dtype=np.float64)
    m = g.const(mult.reshape(_channel_shape(rank, mult.size) if mult.ndim else ()), hint + "_mult", np.float64)
    t = g.op("Mul", [t, m], hint)
    t = _round_shift(g, t, shift, rank, half_up, np.float64, hint)
    t = _clip(g, t, a["lo"], a["hi"], np.float64, hint)
    return g.op("Cast", [t], hint, to=TensorProto.FLOAT)


def _lower_layer(g: _Graph, layer: Layer, model: Model, names: dict[str, str]) -> str:
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    x = names[layer.inputs[0]]
    hint = layer.name.replace("/", "_")
    if layer.op in ("conv2d", "linear"):
        w = decode_weights(arr["codes"], arr["lut"]).astype(np.float64)
        bias = arr["bias"].astype(np.float64)
        shift = arr["shift"].astype(np.int64)
        half_up = cfg.rounding is Rounding.HALF_UP
        folded = (not a["raw"] and cfg.requant is Requant.SHIFT
                  and _fold_fits(w, bias, shift, _input_bound(model, layer), half_up))
        if folded:
            # Fold the rounding offset and the power-of-two scale into the weights and bias:
            # conv(x, W 2^-s) + (b + 2^(s-1)) 2^-s is exactly (acc + 2^(s-1)) / 2^s, so one
            # Clip and one Floor finish the requantization (clip and floor commute on integers).
            scale = np.ldexp(1.0, -shift)
            offset = np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0) if half_up else 0.0
            w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            bias = (bias + offset) * scale
        wname, bname = g.const(w.astype(np.float32), hint + "_w"), g.const(bias.astype(np.float32), hint + "_bias")
        if layer.op == "conv2d":
            if a["pad_value"] != 0 and any(a["padding"]):
                pt, pl, pb, pr = a["padding"]
                x = g.op("Pad", [x, g.const(np.array([0, 0, pt, pl, 0, 0, pb, pr]), hint + "_pads", np.int64),
                                 g.const(a["pad_value"], hint + "_padv")], hint, mode="constant")
                pads = [0, 0, 0, 0]
            else:
                pads = list(a["padding"])
            acc = g.op("Conv", [x, wname, bname], hint, pads=pads, strides=list(a["stride"]),
                       dilations=list(a["dilation"]), group=int(a["groups"]),
                       kernel_shape=list(w.shape[2:]))
            rank = 4
        else:
            acc = g.op("Gemm", [x, wname, bname], hint, transB=1)
            rank = 2
        if a["raw"]:
            return acc
        if folded:
            return g.op("Floor", [_clip(g, acc, a["lo"], a["hi"], np.float32, hint)], hint)
        mult = arr["mult"] if cfg.requant is Requant.MULTIPLY_SHIFT else None
        return _requant(g, acc, layer, model, rank, shift, mult, hint)
    if layer.op == "add":
        b = names[layer.inputs[1]]
        ta = g.op("Mul", [x, g.const(float(1 << a["shift_a"]), hint + "_sa")], hint) if a["shift_a"] else x
        tb = g.op("Mul", [b, g.const(float(1 << a["shift_b"]), hint + "_sb")], hint) if a["shift_b"] else b
        t = g.op("Add", [ta, tb], hint)
        t = _round_shift(g, t, a["shift"], 4, cfg.rounding is Rounding.HALF_UP, np.float32, hint)
        return _clip(g, t, a["lo"], a["hi"], np.float32, hint)
    if layer.op == "max_pool":
        return g.op("MaxPool", [x], hint, kernel_shape=list(a["kernel"]), strides=list(a["stride"]),
                    pads=list(a["padding"]))
    if layer.op == "avg_pool":
        c = model.tensors[layer.inputs[0]].shape[0]
        if any(a["padding"]):
            pt, pl, pb, pr = a["padding"]
            x = g.op("Pad", [x, g.const(np.array([0, 0, pt, pl, 0, 0, pb, pr]), hint + "_pads", np.int64),
                             g.const(a["pad_value"], hint + "_padv")], hint, mode="constant")
        ones = g.const(np.ones((c, 1) + tuple(a["kernel"])), hint + "_ones")
        total = g.op("Conv", [x, ones], hint, strides=list(a["stride"]), group=c,
                     kernel_shape=list(a["kernel"]))
        return _requant(g, total, layer, model, 4, a["shift"], a["mult"], hint)
    if layer.op == "global_avg_pool":
        total = g.op("ReduceSum", [x, g.const(np.array([2, 3]), hint + "_axes", np.int64)], hint, keepdims=1)
        return _requant(g, total, layer, model, 4, a["shift"], a["mult"], hint)
    if layer.op == "flatten":
        return g.op("Flatten", [x], hint, axis=1)
    if layer.op == "reshape":
        return g.op("Reshape", [x, g.const(np.array([0] + list(a["shape"])), hint + "_shape", np.int64)], hint)
    if layer.op == "concat":
        return g.op("Concat", [names[t] for t in layer.inputs], hint, axis=int(a["axis"]))
    raise ValueError(f"layer {layer.name!r}: op {layer.op!r} has no float lowering")


def lower_layers(model: Model, layers: list[Layer], inputs: list[str], outputs: list[str]) -> onnx.ModelProto:
    """An ONNX graph computing ``layers`` from integer tensors ``inputs`` to integer tensors ``outputs``."""
    g = _Graph()
    names: dict[str, str] = {}
    graph_inputs = []
    for t in inputs:
        info = model.tensors[t]
        graph_inputs.append(helper.make_tensor_value_info(t, _ONNX_TYPE[info.dtype], [None, *info.shape]))
        names[t] = g.op("Cast", [t], "in", to=TensorProto.FLOAT)
    for layer in layers:
        names[layer.output] = _lower_layer(g, layer, model, names)
    graph_outputs = []
    for t in outputs:
        info = model.tensors[t]
        g.nodes.append(helper.make_node("Cast", [names[t]], [t], to=_ONNX_TYPE[info.dtype]))
        graph_outputs.append(helper.make_tensor_value_info(t, _ONNX_TYPE[info.dtype], [None, *info.shape]))
    graph = helper.make_graph(g.nodes, "accel_segment", graph_inputs, graph_outputs, initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="accel")
    proto.ir_version = 8  # readable by every onnxruntime we support
    return proto
