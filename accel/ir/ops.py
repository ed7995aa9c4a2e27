"""Op schemas of the integer model: fields, shape inference and validation.

Each op declares its attributes and arrays; :func:`validate_model` checks a
whole model and raises :class:`~accel.errors.ModelError` naming the layer and
the field at the first problem.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import Requant
from ..datapath import POOL_MULT_BITS, conv_output_size
from ..errors import ModelError
from .model import DTYPE_RANGES, Layer, Model

__all__ = ["OPS", "MAC_OPS", "OpSpec", "infer_shape", "validate_layer", "validate_model"]


@dataclass(frozen=True)
class OpSpec:
    n_inputs: int | None         #: None: one or more
    attrs: tuple[str, ...]       #: required attributes
    arrays: tuple[str, ...] = ()  #: required arrays
    optional_arrays: tuple[str, ...] = ()


_REQUANT_ATTRS = ("lo", "hi", "raw")
_MAC_ARRAYS = ("codes", "lut", "bias", "shift")
_MAC_OPTIONAL = ("mult", "weight_exponent")

OPS: dict[str, OpSpec] = {
    "conv2d": OpSpec(1, ("stride", "padding", "dilation", "groups", "pad_value") + _REQUANT_ATTRS,
                     _MAC_ARRAYS, _MAC_OPTIONAL),
    "linear": OpSpec(1, _REQUANT_ATTRS, _MAC_ARRAYS, _MAC_OPTIONAL),
    "add": OpSpec(2, ("shift_a", "shift_b", "shift", "lo", "hi")),
    "max_pool": OpSpec(1, ("kernel", "stride", "padding")),
    "avg_pool": OpSpec(1, ("kernel", "stride", "padding", "pad_value", "mult", "shift", "lo", "hi")),
    "global_avg_pool": OpSpec(1, ("mult", "shift", "lo", "hi")),
    "flatten": OpSpec(1, ()),
    "reshape": OpSpec(1, ("shape",)),
    "concat": OpSpec(None, ("axis",)),
}

#: Ops that run on the MAC array (codes through the LUT, accumulate, requantize).
MAC_OPS = ("conv2d", "linear")


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


def infer_shape(layer: Layer, in_shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """Output shape (without batch) of ``layer`` given its input shapes; checks consistency."""
    op = layer.op
    if op in ("conv2d", "max_pool", "avg_pool", "global_avg_pool") and len(in_shapes[0]) != 3:
        raise layer.error("inputs", f"expected a (C, H, W) input, got shape {in_shapes[0]}")
    if op == "conv2d":
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
    if op == "linear":
        codes = np.asarray(layer.arrays["codes"])
        if codes.ndim != 2:
            raise layer.error("codes", f"expected 2 dimensions (N, K), got shape {codes.shape}")
        if len(in_shapes[0]) != 1 or in_shapes[0][0] != codes.shape[1]:
            raise layer.error("codes", f"shape {codes.shape} does not match input shape {in_shapes[0]} "
                              f"(expected a flat input of {codes.shape[1]})")
        return (codes.shape[0],)
    if op == "add":
        if in_shapes[0] != in_shapes[1]:
            raise layer.error("inputs", f"shapes differ: {in_shapes[0]} and {in_shapes[1]}")
        return in_shapes[0]
    if op in ("max_pool", "avg_pool"):
        kernel = _int_list(layer, "kernel", 2, 1)
        stride = _int_list(layer, "stride", 2, 1)
        padding = _int_list(layer, "padding", 4, 0)
        return (in_shapes[0][0],) + _window_shape(layer, in_shapes[0], kernel, stride, padding)
    if op == "global_avg_pool":
        return (in_shapes[0][0], 1, 1)
    if op == "flatten":
        return (math.prod(in_shapes[0]),)
    if op == "reshape":
        shape = _int_list(layer, "shape", len(layer.attrs["shape"]), 1)
        if math.prod(shape) != math.prod(in_shapes[0]):
            raise layer.error("shape", f"{list(shape)} does not hold the {math.prod(in_shapes[0])} "
                              f"elements of input shape {in_shapes[0]}")
        return shape
    if op == "concat":
        axis = _int_attr(layer, "axis", 1, len(in_shapes[0]))
        first = in_shapes[0]
        for s in in_shapes[1:]:
            if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != axis - 1):
                raise layer.error("inputs", f"shapes {first} and {s} differ outside axis {axis}")
        out = list(first)
        out[axis - 1] = sum(s[axis - 1] for s in in_shapes)
        return tuple(out)
    raise layer.error("op", f"unknown op; known ops: {', '.join(OPS)}")


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


def _check_requant(layer: Layer, model: Model, n_channels: int) -> None:
    cfg = model.config
    raw = layer.attrs["raw"]
    if not isinstance(raw, (bool, np.bool_)):
        raise layer.error("raw", f"expected true or false, got {raw!r}")
    _check_int_array(layer, "shift", (n_channels,), 0, cfg.max_shift, np.int32)
    if cfg.requant is Requant.MULTIPLY_SHIFT:
        if "mult" not in layer.arrays:
            raise layer.error("mult", "missing: requant 'multiply_shift' needs a multiplier per channel")
        _check_int_array(layer, "mult", (n_channels,), 0, (1 << cfg.mult_bits) - 1, np.int64)


def _check_clamp(layer: Layer, dtype: str) -> None:
    lo_t, hi_t = DTYPE_RANGES[dtype]
    lo = _int_attr(layer, "lo", lo_t, hi_t)
    hi = _int_attr(layer, "hi", lo_t, hi_t)
    if lo > hi:
        raise layer.error("hi", f"{hi} is below lo = {lo}")


def validate_layer(layer: Layer, model: Model) -> None:
    cfg = model.config
    spec = OPS.get(layer.op)
    if spec is None:
        raise ModelError(f"layer {layer.name!r}: unknown op {layer.op!r}; known ops: {', '.join(OPS)}")
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

    if layer.op in MAC_OPS:
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
        _check_int_array(layer, "lut", lut.shape, -128, 127, np.int8)
        _check_int_array(layer, "bias", (n,), cfg.acc_min, cfg.acc_max, np.int64)
        if "weight_exponent" in layer.arrays:
            _check_int_array(layer, "weight_exponent", (n,), -64, 64, np.int32)
        _check_requant(layer, model, n)
        if layer.op == "conv2d":
            lo_in, hi_in = ins[0].range
            _int_attr(layer, "pad_value", lo_in, hi_in)
        if layer.attrs["raw"]:
            if out.dtype != "int32":
                raise layer.error("output", f"raw accumulators need an int32 output tensor, got {out.dtype}")
        else:
            if out.dtype not in ("int8", "uint8"):
                raise layer.error("output", f"requantized output must be int8 or uint8, got {out.dtype}")
            _check_clamp(layer, out.dtype)
    elif layer.op in ("add", "avg_pool", "global_avg_pool"):
        for t in ins:
            if t.dtype not in ("int8", "uint8"):
                raise layer.error("inputs", f"input {t.name!r} is {t.dtype}; expected int8 or uint8")
        if out.dtype not in ("int8", "uint8"):
            raise layer.error("output", f"output must be int8 or uint8, got {out.dtype}")
        _check_clamp(layer, out.dtype)
        if layer.op == "add":
            _int_attr(layer, "shift_a", 0, 16)
            _int_attr(layer, "shift_b", 0, 16)
            _int_attr(layer, "shift", 0, 31)
        else:
            _int_attr(layer, "mult", 0, (1 << POOL_MULT_BITS) - 1)
            _int_attr(layer, "shift", 0, 47)
            if layer.op == "avg_pool":
                _int_attr(layer, "pad_value", *ins[0].range)
    else:
        for t in ins:
            if t.dtype != out.dtype:
                raise layer.error("output", f"{layer.op} moves data only: input {t.name!r} is {t.dtype}, "
                                  f"output {out.name!r} is {out.dtype}")
        if layer.op == "concat":
            exps = {t.exponent for t in ins}
            if len(exps) > 1:
                raise layer.error("inputs", f"concat inputs must share one exponent, got {sorted(exps, key=str)}")

    shape = infer_shape(layer, [t.shape for t in ins])
    if tuple(shape) != tuple(out.shape):
        raise layer.error("output", f"tensor {out.name!r} is declared with shape {out.shape}, "
                          f"the op produces {tuple(shape)}")


def validate_model(model: Model) -> None:
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
