"""The op registry of the integer model: fields, shape inference, validation and MAC counts.

:data:`OPS` maps each op name to its :class:`OpSpec`, the one place that says
what the op's layers hold and how to check them. :func:`validate_model` checks
a whole model and raises :class:`~accel.errors.ModelError` naming the layer and
the field at the first problem. Executors (the engine's backends, the contract
runner, the fake-quant model) keep a ``{op: handler}`` table each; the tests
hold every table to the ops of :data:`OPS`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..config import Requant
from ..datapath import (
    ADD_INPUT_SHIFT_MAX,
    ADD_SHIFT_MAX,
    DTYPE_RANGES,
    POINT_SHIFT_MAX,
    POOL_MULT_BITS,
    POOL_SHIFT_MAX,
    conv_output_size,
    max_pool_padding_fits,
)
from ..errors import ModelError

if TYPE_CHECKING:
    from .model import Layer, Model, TensorInfo

__all__ = ["OPS", "MAC_OPS", "OpSpec", "infer_shape", "layer_macs", "validate_layer", "validate_model"]

Shape = tuple[int, ...]


def _int_attr(layer: Layer, name: str, lo: int, hi: int) -> int:
    value = layer.attrs[name]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise layer.error(name, f"expected an integer, got {value!r}")
    if not lo <= value <= hi:
        raise layer.error(name, f"{int(value)} is out of range, allowed {lo}..{hi}")
    return int(value)


def _int_list(layer: Layer, name: str, length: int, lo: int) -> tuple[int, ...]:
    value = layer.attrs[name]
    if (not isinstance(value, (list, tuple)) or len(value) != length
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= lo
                       for v in value)):
        raise layer.error(name, f"expected {length} integers >= {lo}, got {value!r}")
    return tuple(int(v) for v in value)


def _window_shape(layer: Layer, shape, kernel, stride, padding, dilation=(1, 1)):
    c, h, w = shape
    oh = conv_output_size(h, kernel[0], stride[0], padding[0], padding[2], dilation[0])
    ow = conv_output_size(w, kernel[1], stride[1], padding[1], padding[3], dilation[1])
    if oh <= 0 or ow <= 0:
        raise layer.error("kernel", f"window {kernel} does not fit input {shape[1:]} with padding {padding}")
    return oh, ow


def _check_int_array(layer: Layer, name: str, shape: tuple[int, ...], lo: int, hi: int,
                     dtype=np.int64) -> np.ndarray:
    value = layer.arrays[name]
    arr = np.asarray(value)
    if arr.dtype.kind not in "iu":
        raise layer.error(name, f"expected an integer array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise layer.error(name, f"expected shape {shape}, got {arr.shape}")
    if arr.size:
        bad = np.flatnonzero((arr < lo) | (arr > hi))
        if bad.size:
            idx = np.unravel_index(bad[0], arr.shape)
            idx = tuple(int(i) for i in idx)
            raise layer.error(name, f"value {int(arr[idx])} at index {idx} is out of range, "
                              f"allowed {lo}..{hi} ({bad.size} value(s) out of range)")
    out = arr.astype(dtype)
    layer.arrays[name] = out
    return out


def _check_clamp(layer: Layer, dtype: str) -> None:
    lo_t, hi_t = DTYPE_RANGES[dtype]
    lo = _int_attr(layer, "lo", lo_t, hi_t)
    hi = _int_attr(layer, "hi", lo_t, hi_t)
    if lo > hi:
        raise layer.error("hi", f"{hi} is below lo = {lo}")


# ----------------------------------------------------------------------------------------------
# Shape inference, one function per op: (layer, input shapes without batch) -> output shape.


def _conv2d_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    codes = np.asarray(layer.arrays["codes"])
    if codes.ndim != 4:
        raise layer.error("codes", f"expected 4 dimensions (N, C/groups, KH, KW), got shape {codes.shape}")
    n, cg, kh, kw = codes.shape
    groups = _int_attr(layer, "groups", 1, 1 << 20)
    c = in_shapes[0][0]
    if c % groups or n % groups or cg * groups != c:
        raise layer.error("codes", f"shape {codes.shape} does not match {c} input channels "
                          f"in {groups} groups (expected (N, {c // groups if c % groups == 0 else '?'}, KH, KW)"
                          f" with N divisible by {groups})")
    stride = _int_list(layer, "stride", 2, 1)
    padding = _int_list(layer, "padding", 4, 0)
    dilation = _int_list(layer, "dilation", 2, 1)
    return (n,) + _window_shape(layer, in_shapes[0], (kh, kw), stride, padding, dilation)


def _linear_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    codes = np.asarray(layer.arrays["codes"])
    if codes.ndim != 2:
        raise layer.error("codes", f"expected 2 dimensions (N, K), got shape {codes.shape}")
    if len(in_shapes[0]) != 1 or in_shapes[0][0] != codes.shape[1]:
        raise layer.error("codes", f"shape {codes.shape} does not match input shape {in_shapes[0]} "
                          f"(expected a flat input of {codes.shape[1]})")
    return (codes.shape[0],)


def _add_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    if in_shapes[0] != in_shapes[1]:
        raise layer.error("inputs", f"shapes differ: {in_shapes[0]} and {in_shapes[1]}")
    return in_shapes[0]


def _pool_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    kernel = _int_list(layer, "kernel", 2, 1)
    stride = _int_list(layer, "stride", 2, 1)
    padding = _int_list(layer, "padding", 4, 0)
    return (in_shapes[0][0],) + _window_shape(layer, in_shapes[0], kernel, stride, padding)


def _global_pool_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    return (in_shapes[0][0], 1, 1)


def _flatten_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    return (math.prod(in_shapes[0]),)


def _reshape_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    shape = _int_list(layer, "shape", len(layer.attrs["shape"]), 1)
    if math.prod(shape) != math.prod(in_shapes[0]):
        raise layer.error("shape", f"{list(shape)} does not hold the {math.prod(in_shapes[0])} "
                          f"elements of input shape {in_shapes[0]}")
    return shape


def _concat_shape(layer: Layer, in_shapes: list[Shape]) -> Shape:
    axis = _int_attr(layer, "axis", 1, len(in_shapes[0]))
    first = in_shapes[0]
    for s in in_shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis - 1):
            raise layer.error("inputs", f"shapes {first} and {s} differ outside axis {axis}")
    out = list(first)
    out[axis - 1] = sum(s[axis - 1] for s in in_shapes)
    return tuple(out)


# ----------------------------------------------------------------------------------------------
# Op-specific validation: (layer, model, input tensors, output tensor); the common checks
# (inputs, attributes, arrays present) run before, shape inference after.


def _check_mac(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    cfg = model.config
    if ins[0].dtype not in ("int8", "uint8"):
        raise layer.error("inputs", f"input {ins[0].name!r} is {ins[0].dtype}; the MAC array takes int8 or uint8")
    codes = np.asarray(layer.arrays["codes"])
    n = codes.shape[0] if codes.ndim else 0
    _check_int_array(layer, "codes", codes.shape, 0, cfg.lut_entries - 1, np.uint8)
    lut = np.asarray(layer.arrays["lut"])
    allowed = [(1, cfg.lut_entries)]
    if cfg.lut_scope.value == "channel":
        allowed.append((n, cfg.lut_entries))  # a shared (1, E) table is also valid: every decoder loads it
    if lut.shape not in allowed:
        raise layer.error("lut", f"expected shape {' or '.join(map(str, allowed))} for lut_scope "
                          f"{cfg.lut_scope.value!r} and weight_bits {cfg.weight_bits}, got {lut.shape}")
    _check_int_array(layer, "lut", lut.shape, *DTYPE_RANGES["int8"], np.int8)
    _check_int_array(layer, "bias", (n,), cfg.acc_min, cfg.acc_max, np.int64)
    if "weight_exponent" in layer.arrays:
        _check_int_array(layer, "weight_exponent", (n,), -64, 64, np.int32)
    raw = layer.attrs["raw"]
    if not isinstance(raw, (bool, np.bool_)):
        raise layer.error("raw", f"expected true or false, got {raw!r}")
    _check_int_array(layer, "shift", (n,), 0, cfg.max_shift, np.int32)
    if cfg.requant is Requant.MULTIPLY_SHIFT:
        if "mult" not in layer.arrays:
            raise layer.error("mult", "missing: requant 'multiply_shift' needs a multiplier per channel")
        _check_int_array(layer, "mult", (n,), 0, (1 << cfg.mult_bits) - 1, np.int64)
    if layer.op == "conv2d":
        _int_attr(layer, "pad_value", *ins[0].range)
    _check_points(layer, codes, cfg.lut_entries)
    if raw:
        if out.dtype != "int32":
            raise layer.error("output", f"raw accumulators need an int32 output tensor, got {out.dtype}")
    else:
        if out.dtype not in ("int8", "uint8"):
            raise layer.error("output", f"requantized output must be int8 or uint8, got {out.dtype}")
        _check_clamp(layer, out.dtype)


_POINT_ARRAYS = ("point_codes", "point_channel", "point_shift")


def _check_points(layer: Layer, codes: np.ndarray, lut_entries: int) -> None:
    """A multipoint layer's extra rows: all three arrays or none, at least one row, codes shaped like
    the main rows, channels of the layer, shifts within the contract's limit."""
    present = [k for k in _POINT_ARRAYS if k in layer.arrays]
    if not present:
        return
    if len(present) < len(_POINT_ARRAYS):
        missing = next(k for k in _POINT_ARRAYS if k not in present)
        raise layer.error(missing, f"missing: a multipoint layer needs {', '.join(_POINT_ARRAYS)}")
    pc = np.asarray(layer.arrays["point_codes"])
    if pc.ndim != codes.ndim or pc.shape[1:] != codes.shape[1:] or pc.shape[0] < 1:
        raise layer.error("point_codes", f"expected shape (P, {', '.join(map(str, codes.shape[1:]))}) with "
                          f"P >= 1 (one extra row per point, shaped like a row of codes), got {pc.shape}")
    p = pc.shape[0]
    _check_int_array(layer, "point_codes", pc.shape, 0, lut_entries - 1, np.uint8)
    _check_int_array(layer, "point_channel", (p,), 0, codes.shape[0] - 1, np.int32)
    _check_int_array(layer, "point_shift", (p,), 0, POINT_SHIFT_MAX, np.int32)


def _check_vector_types(layer: Layer, ins: list[TensorInfo], out: TensorInfo) -> None:
    """Vector-unit ops read and write int8/uint8 and clamp to the output type."""
    for t in ins:
        if t.dtype not in ("int8", "uint8"):
            raise layer.error("inputs", f"input {t.name!r} is {t.dtype}; expected int8 or uint8")
    if out.dtype not in ("int8", "uint8"):
        raise layer.error("output", f"output must be int8 or uint8, got {out.dtype}")
    _check_clamp(layer, out.dtype)


def _check_add(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    _check_vector_types(layer, ins, out)
    _int_attr(layer, "shift_a", 0, ADD_INPUT_SHIFT_MAX)
    _int_attr(layer, "shift_b", 0, ADD_INPUT_SHIFT_MAX)
    _int_attr(layer, "shift", 0, ADD_SHIFT_MAX)


def _check_avg_pool(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    _check_vector_types(layer, ins, out)
    _int_attr(layer, "mult", 0, (1 << POOL_MULT_BITS) - 1)
    _int_attr(layer, "shift", 0, POOL_SHIFT_MAX)
    if layer.op == "avg_pool":
        _int_attr(layer, "pad_value", *ins[0].range)
        present = [k for k in ("count_mult", "count_shift") if k in layer.arrays]
        if len(present) == 1:
            other = "count_shift" if present[0] == "count_mult" else "count_mult"
            raise layer.error(other, "missing: excluding padding needs both count_mult and count_shift")
        if present:  # excluding padding: a multiplier and a shift per window size 1..KH*KW
            size = int(np.prod(_int_list(layer, "kernel", 2, 1)))
            _check_int_array(layer, "count_mult", (size,), 0, (1 << POOL_MULT_BITS) - 1, np.int64)
            _check_int_array(layer, "count_shift", (size,), 0, POOL_SHIFT_MAX, np.int64)


def _check_movement(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    """Data movement keeps the type (max pool only picks elements)."""
    for t in ins:
        if t.dtype != out.dtype:
            raise layer.error("output", f"{layer.op} moves data only: input {t.name!r} is {t.dtype}, "
                              f"output {out.name!r} is {out.dtype}")


def _check_max_pool(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    _check_movement(layer, model, ins, out)
    kernel = _int_list(layer, "kernel", 2, 1)
    padding = _int_list(layer, "padding", 4, 0)
    if not max_pool_padding_fits(kernel, padding):
        raise layer.error("padding", f"{list(padding)} must be smaller than the kernel {list(kernel)} on every "
                          "side (a window of padding only has no maximum)")


def _check_concat(layer: Layer, model: Model, ins: list[TensorInfo], out: TensorInfo) -> None:
    _check_movement(layer, model, ins, out)
    exps = {t.exponent for t in ins}
    if len(exps) > 1:
        raise layer.error("inputs", f"concat inputs must share one exponent, got {sorted(exps, key=str)}")


def _no_macs(layer: Layer, out_shape: Shape) -> int:
    return 0


def _mac_count(layer: Layer, out_shape: Shape) -> int:
    """One multiply-accumulate per output element and reduction index, and per pixel and reduction
    index of every extra row of a multipoint layer (each is one more array column)."""
    codes = np.shape(layer.arrays["codes"])
    rows = codes[0] + (len(layer.arrays["point_channel"]) if "point_channel" in layer.arrays else 0)
    return math.prod(out_shape) // codes[0] * rows * math.prod(codes[1:])


@dataclass(frozen=True)
class OpSpec:
    """What the layers of one op hold and how to check them.

    Attributes
    ----------
    n_inputs : int or None
        Number of input tensors (None: one or more).
    attrs, arrays, optional_arrays : tuple of str
        Required attributes, required arrays and arrays that may be present.
    shape : callable (layer, input shapes) -> output shape
        Shape inference (without batch); raises :class:`ModelError` on inconsistent inputs.
    check : callable (layer, model, input tensors, output tensor) -> None
        The op's own validation: types, ranges and limits of its fields.
    input_rank : int or None
        Rank (without batch) the first input must have; None: any.
    macs : callable (layer, output shape) -> int
        Multiply-accumulates per sample (0 for ops off the MAC array).
    """

    n_inputs: int | None
    attrs: tuple[str, ...]
    shape: Callable[[Layer, list[Shape]], Shape]
    check: Callable[[Layer, Model, list[TensorInfo], TensorInfo], None]
    arrays: tuple[str, ...] = ()
    optional_arrays: tuple[str, ...] = ()
    input_rank: int | None = None
    macs: Callable[[Layer, Shape], int] = _no_macs


_REQUANT_ATTRS = ("lo", "hi", "raw")
_MAC_ARRAYS = ("codes", "lut", "bias", "shift")
_MAC_OPTIONAL = ("mult", "weight_exponent") + _POINT_ARRAYS

OPS: dict[str, OpSpec] = {
    "conv2d": OpSpec(1, ("stride", "padding", "dilation", "groups", "pad_value") + _REQUANT_ATTRS,
                     _conv2d_shape, _check_mac, _MAC_ARRAYS, _MAC_OPTIONAL, input_rank=3, macs=_mac_count),
    "linear": OpSpec(1, _REQUANT_ATTRS, _linear_shape, _check_mac, _MAC_ARRAYS, _MAC_OPTIONAL,
                     macs=_mac_count),
    "add": OpSpec(2, ("shift_a", "shift_b", "shift", "lo", "hi"), _add_shape, _check_add),
    "max_pool": OpSpec(1, ("kernel", "stride", "padding"), _pool_shape, _check_max_pool, input_rank=3),
    "avg_pool": OpSpec(1, ("kernel", "stride", "padding", "pad_value", "mult", "shift", "lo", "hi"),
                       _pool_shape, _check_avg_pool, optional_arrays=("count_mult", "count_shift"), input_rank=3),
    "global_avg_pool": OpSpec(1, ("mult", "shift", "lo", "hi"), _global_pool_shape, _check_avg_pool,
                              input_rank=3),
    "flatten": OpSpec(1, (), _flatten_shape, _check_movement),
    "reshape": OpSpec(1, ("shape",), _reshape_shape, _check_movement),
    "concat": OpSpec(None, ("axis",), _concat_shape, _check_concat),
}

#: Ops that run on the MAC array (codes through the LUT, accumulate, requantize).
MAC_OPS = ("conv2d", "linear")


def _spec(layer: Layer) -> OpSpec:
    spec = OPS.get(layer.op)
    if spec is None:
        raise ModelError(f"layer {layer.name!r}: unknown op {layer.op!r}; known ops: {', '.join(OPS)}")
    return spec


def infer_shape(layer: Layer, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Output shape (without batch) of ``layer`` given its input shapes; checks consistency."""
    spec = _spec(layer)
    if spec.input_rank is not None and len(in_shapes[0]) != spec.input_rank:
        raise layer.error("inputs", f"expected a (C, H, W) input, got shape {in_shapes[0]}")
    return tuple(spec.shape(layer, in_shapes))


def layer_macs(model: Model, layer: Layer) -> int:
    """Multiply-accumulates per sample of ``layer`` (0 for ops off the MAC array)."""
    return _spec(layer).macs(layer, model.tensors[layer.output].shape)


def validate_layer(layer: Layer, model: Model) -> None:
    """Check ``layer`` against its op's :class:`OpSpec` and the model's configuration."""
    spec = _spec(layer)
    if spec.n_inputs is not None and len(layer.inputs) != spec.n_inputs:
        raise layer.error("inputs", f"expected {spec.n_inputs} input(s), got {len(layer.inputs)}")
    if not layer.inputs:
        raise layer.error("inputs", "expected at least one input")
    for name in spec.attrs:
        if name not in layer.attrs:
            raise layer.error(name, "missing attribute")
    for name in spec.arrays:
        if name not in layer.arrays:
            raise layer.error(name, "missing array")
    unknown = set(layer.arrays) - set(spec.arrays) - set(spec.optional_arrays)
    if unknown:
        raise layer.error(sorted(unknown)[0], "not an array of this op")
    for name in layer.inputs:
        if name not in model.tensors:
            raise layer.error("inputs", f"tensor {name!r} is not defined")
    ins = [model.tensors[n] for n in layer.inputs]
    if layer.output not in model.tensors:
        raise layer.error("output", f"tensor {layer.output!r} is not defined")
    out = model.tensors[layer.output]
    spec.check(layer, model, ins, out)
    shape = infer_shape(layer, [t.shape for t in ins])
    if tuple(shape) != tuple(out.shape):
        raise layer.error("output", f"tensor {out.name!r} is declared with shape {out.shape}, "
                          f"the op produces {tuple(shape)}")


def validate_model(model: Model) -> None:
    """Check the whole model: inputs, every layer in order, tensors produced once, outputs."""
    if not model.inputs:
        raise ModelError("model: no inputs")
    for name in model.inputs:
        if name not in model.tensors:
            raise ModelError(f"model: input tensor {name!r} is not defined")
        if model.tensors[name].dtype not in ("int8", "uint8"):
            raise ModelError(f"model: input tensor {name!r} must be int8 or uint8")
    available = set(model.inputs)
    names = set()
    for layer in model.layers:
        if layer.name in names:
            raise ModelError(f"layer {layer.name!r}: duplicate layer name")
        names.add(layer.name)
        validate_layer(layer, model)
        for name in layer.inputs:
            if name not in available:
                raise layer.error("inputs", f"tensor {name!r} is used before any layer produces it")
        if layer.output in available:
            raise layer.error("output", f"tensor {layer.output!r} is produced twice")
        available.add(layer.output)
    for name in model.outputs:
        if name not in available:
            raise ModelError(f"model: output tensor {name!r} is not produced by any layer")
    if not model.outputs:
        raise ModelError("model: no outputs")
