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
from ..datapath import DTYPE_RANGES, decode_weights, window_counts
from ..ir import Layer, Model

__all__ = ["EXACT_IN_FLOAT", "F32_EXACT_BOUND", "FLOAT_LOWERINGS", "exact_in_float", "lower_layers",
           "ONNX_OPSET"]

ONNX_OPSET = 17
#: Integers below this in magnitude are exact in float32 (24-bit significand), so is any sum of
#: them whose partial sums all stay below it, in any order.
F32_EXACT_BOUND = 1 << 24
_F32_SAFE = F32_EXACT_BOUND >> 1  # |t| below this keeps 2t exact in float32 (the s = 0 case of the identity)
_F64_SAFE = 1 << 51
#: Largest magnitude of an 8-bit tensor (int8 or uint8): the bound on a residual add's inputs.
_BYTE_MAX = max(abs(v) for dtype in ("int8", "uint8") for v in DTYPE_RANGES[dtype])
_ONNX_TYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int32": TensorProto.INT32}


def _input_bound(model: Model, layer: Layer) -> int:
    lo, hi = model.tensors[layer.inputs[0]].range
    # Padded positions hold pad_value (conv2d, avg_pool): it bounds the products too.
    return max(abs(lo), abs(hi), abs(int(layer.attrs.get("pad_value", 0))))


def _mac_exact(model: Model, layer: Layer) -> bool:
    cfg = model.config
    w = decode_weights(layer.arrays["codes"], layer.arrays["lut"])
    n = w.shape[0]
    bound = (np.abs(w).reshape(n, -1).sum(axis=1) * _input_bound(model, layer)
             + np.abs(layer.arrays["bias"].astype(np.int64)))
    worst = int(bound.max(initial=0))
    if worst >= _F32_SAFE or worst > cfg.acc_max:
        return False
    if cfg.requant is Requant.MULTIPLY_SHIFT and not layer.attrs["raw"]:
        return worst * int(layer.arrays["mult"].max(initial=0)) < _F64_SAFE
    return True


def _add_exact(model: Model, layer: Layer) -> bool:
    a = layer.attrs
    return _BYTE_MAX * ((1 << a["shift_a"]) + (1 << a["shift_b"])) < _F32_SAFE


def _pool_exact(model: Model, layer: Layer) -> bool:
    a = layer.attrs
    shape = model.tensors[layer.inputs[0]].shape
    window = a["kernel"][0] * a["kernel"][1] if layer.op == "avg_pool" else shape[1] * shape[2]
    xmax = _input_bound(model, layer)
    mult = int(np.max(layer.arrays["count_mult"])) if "count_mult" in layer.arrays else a["mult"]
    return window * xmax < F32_EXACT_BOUND and window * xmax * mult < _F64_SAFE


def _no_arithmetic(model: Model, layer: Layer) -> bool:
    return True


#: Per op of :data:`accel.ir.OPS`: whether the float lowering of a layer is provably bit-exact.
EXACT_IN_FLOAT = {
    "conv2d": _mac_exact, "linear": _mac_exact, "add": _add_exact, "avg_pool": _pool_exact,
    "global_avg_pool": _pool_exact, "max_pool": _no_arithmetic, "flatten": _no_arithmetic,
    "reshape": _no_arithmetic, "concat": _no_arithmetic,
}


def exact_in_float(model: Model, layer: Layer) -> bool:
    """Whether the float lowering of ``layer`` is provably bit-exact (an op without a check is not)."""
    check = EXACT_IN_FLOAT.get(layer.op)
    return check is not None and check(model, layer)


def _fold_fits(w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int, half_up: bool) -> bool:
    """Whether acc + bias + 2^(s-1) stays below 2^24 for every channel (folded requantization)."""
    n = w.shape[0]
    bound = np.abs(w).reshape(n, -1).sum(axis=1) * xmax + np.abs(bias)
    if half_up:
        bound = bound + np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0)
    return bool(np.all(bound < F32_EXACT_BOUND))


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
    # a scalar, one shift per channel, or (avg pool excluding padding) a full-rank map per position
    shape = shift.shape if shift.ndim == rank else _channel_shape(rank, n) if shift.ndim else ()
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
    m_shape = mult.shape if mult.ndim == rank else _channel_shape(rank, mult.size) if mult.ndim else ()
    m = g.const(mult.reshape(m_shape), hint + "_mult", np.float64)
    t = g.op("Mul", [t, m], hint)
    t = _round_shift(g, t, shift, rank, half_up, np.float64, hint)
    t = _clip(g, t, a["lo"], a["hi"], np.float64, hint)
    return g.op("Cast", [t], hint, to=TensorProto.FLOAT)


def _pad_node(g: _Graph, x: str, padding, pad_value: int, hint: str) -> str:
    """Explicit constant padding with ``pad_value`` (ONNX pads of Conv and AveragePool pad with 0)."""
    pt, pl, pb, pr = padding
    return g.op("Pad", [x, g.const(np.array([0, 0, pt, pl, 0, 0, pb, pr]), hint + "_pads", np.int64),
                        g.const(pad_value, hint + "_padv")], hint, mode="constant")


def _lower_mac(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    x = names[layer.inputs[0]]
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
            x = _pad_node(g, x, a["padding"], a["pad_value"], hint)
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


def _lower_add(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    x, b = names[layer.inputs[0]], names[layer.inputs[1]]
    ta = g.op("Mul", [x, g.const(float(1 << a["shift_a"]), hint + "_sa")], hint) if a["shift_a"] else x
    tb = g.op("Mul", [b, g.const(float(1 << a["shift_b"]), hint + "_sb")], hint) if a["shift_b"] else b
    t = g.op("Add", [ta, tb], hint)
    t = _round_shift(g, t, a["shift"], 4, model.config.rounding is Rounding.HALF_UP, np.float32, hint)
    return _clip(g, t, a["lo"], a["hi"], np.float32, hint)


def _lower_max_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    return g.op("MaxPool", [names[layer.inputs[0]]], hint, kernel_shape=list(a["kernel"]),
                strides=list(a["stride"]), pads=list(a["padding"]))


def _lower_avg_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    x = names[layer.inputs[0]]
    c, h, w = model.tensors[layer.inputs[0]].shape
    exclude = "count_mult" in layer.arrays  # padding excluded: zeros in the sum, a divisor per position
    if any(a["padding"]):
        x = _pad_node(g, x, a["padding"], 0 if exclude else a["pad_value"], hint)
    ones = g.const(np.ones((c, 1) + tuple(a["kernel"])), hint + "_ones")
    total = g.op("Conv", [x, ones], hint, strides=list(a["stride"]), group=c, kernel_shape=list(a["kernel"]))
    if exclude:
        counts = window_counts((h, w), a["kernel"], a["stride"], a["padding"]) - 1
        shape = (1, 1) + counts.shape
        return _requant(g, total, layer, model, 4, np.asarray(layer.arrays["count_shift"])[counts].reshape(shape),
                        np.asarray(layer.arrays["count_mult"])[counts].reshape(shape), hint)
    return _requant(g, total, layer, model, 4, a["shift"], a["mult"], hint)


def _lower_global_avg_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    total = g.op("ReduceSum", [names[layer.inputs[0]], g.const(np.array([2, 3]), hint + "_axes", np.int64)],
                 hint, keepdims=1)
    return _requant(g, total, layer, model, 4, a["shift"], a["mult"], hint)


def _lower_flatten(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    return g.op("Flatten", [names[layer.inputs[0]]], hint, axis=1)


def _lower_reshape(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    shape = g.const(np.array([0] + list(layer.attrs["shape"])), hint + "_shape", np.int64)
    return g.op("Reshape", [names[layer.inputs[0]], shape], hint)


def _lower_concat(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    return g.op("Concat", [names[t] for t in layer.inputs], hint, axis=int(layer.attrs["axis"]))


#: Per op of :data:`accel.ir.OPS`: (graph, layer, model, tensor names, name hint) -> the output's name.
FLOAT_LOWERINGS = {
    "conv2d": _lower_mac, "linear": _lower_mac, "add": _lower_add, "max_pool": _lower_max_pool,
    "avg_pool": _lower_avg_pool, "global_avg_pool": _lower_global_avg_pool, "flatten": _lower_flatten,
    "reshape": _lower_reshape, "concat": _lower_concat,
}


def _lower_layer(g: _Graph, layer: Layer, model: Model, names: dict[str, str]) -> str:
    lower = FLOAT_LOWERINGS.get(layer.op)
    if lower is None:
        raise ValueError(f"layer {layer.name!r}: op {layer.op!r} has no float lowering")
    return lower(g, layer, model, names, layer.name.replace("/", "_"))


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
