"""Reference implementation of the datapath contract (DESIGN.md, "The datapath contract").

Conventions
-----------
* Integers are numpy ``int64``; every function returns ``int64`` arrays.
* A Conv/Linear layer's reduction index ``k`` runs over its weight tensor in
  C order: input channel (within the group), then kernel row, then kernel
  column. With ``overflow="saturate"`` the accumulator is clamped after every
  addition, bias first, ``k`` ascending; padded positions count as additions
  of ``w * pad_value``.
* ``rounding`` is ``"half_up"`` (``(v + 2^(s-1)) >> s``) or ``"floor"`` (``v >> s``),
  shifts are arithmetic.
* Multipoint layers (v1.3) pass ``points = (point_codes, point_channel, point_shift)``: extra
  weight-code rows, each computing its own accumulator (bias 0) and joining the accumulator of
  output channel ``point_channel[p]`` as ``acc_p << point_shift[p]`` before requantization
  (:func:`combine_points`).
"""

from __future__ import annotations

import numpy as np

from ..config import AcceleratorConfig, Overflow, Requant, Rounding
from .geometry import conv_gemm_groups, im2col, window_counts
from .limits import max_pool_padding_fits

__all__ = ["wrap", "saturate", "clamp", "rshift_round", "decode_weights", "accumulate", "requantize",
           "matmul_requant", "conv2d", "linear", "add", "max_pool", "avg_pool", "global_avg_pool",
           "concat", "quantize_input", "point_weights", "combine_points", "effective_weights"]


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


def wrap(value, bits: int) -> np.ndarray:
    """Two's complement wrap of ``value`` to ``bits`` bits."""
    v = _i64(value)
    half = np.int64(1) << np.int64(bits - 1)
    return ((v + half) & ((half << 1) - 1)) - half


def saturate(value, bits: int) -> np.ndarray:
    """Clamp ``value`` to the signed ``bits``-bit range."""
    half = 1 << (bits - 1)
    return np.clip(_i64(value), -half, half - 1)


def clamp(value, lo, hi) -> np.ndarray:
    """Clamp to ``[lo, hi]`` (the output type and fused activation)."""
    return np.minimum(np.maximum(_i64(value), _i64(lo)), _i64(hi))


def rshift_round(value, shift, rounding: Rounding | str = Rounding.HALF_UP) -> np.ndarray:
    """Arithmetic right shift by ``shift`` (>= 0) with the contract's rounding.

    ``half_up``: ``(v + 2^(s-1)) >> s`` for ``s > 0``, ``v`` for ``s == 0``;
    ``floor``: ``v >> s``. The addition is exact (int64 has the spare bit).
    """
    v = _i64(value)
    s = _i64(shift)
    if Rounding(rounding) is Rounding.FLOOR:
        return v >> s
    bias = np.where(s > 0, np.int64(1) << np.maximum(s - 1, 0), 0)
    return (v + bias) >> s


def decode_weights(codes, lut) -> np.ndarray:
    """Effective weights ``w[n, ...] = T[c[n, ...]]`` (``T_n`` when ``lut`` has one row per channel).

    ``codes`` has the output channel first; ``lut`` has shape ``(1, E)`` or ``(N, E)``.
    """
    codes = _i64(codes)
    lut = _i64(lut)
    n = codes.shape[0]
    flat = codes.reshape(n, -1)
    rows = np.zeros(n, dtype=np.int64) if lut.shape[0] == 1 else np.arange(n)
    return lut[rows[:, None], flat].reshape(codes.shape)


def point_weights(point_codes, point_channel, lut) -> np.ndarray:
    """Effective weights of a multipoint layer's extra rows: ``T[c]`` (``T_n`` of the row's channel ``n``
    when ``lut`` has one row per channel); ``point_codes`` has the extra row first."""
    lut = _i64(lut)
    rows = _i64(point_channel) if lut.shape[0] > 1 else np.zeros(len(point_channel), np.int64)
    return decode_weights(point_codes, lut[rows])


def combine_points(acc, point_acc, point_channel, point_shift, acc_bits: int,
                   overflow: Overflow | str) -> np.ndarray:
    """Join the extra accumulators of a multipoint layer to their channels (contract v1.3).

    ``acc[..., n]`` are the main accumulators (bias included), ``point_acc[..., p]`` the extra ones
    (no bias), both already in ``acc_bits`` two's complement with the layer's overflow rule; channels
    along the last axis. For ``p`` ascending: ``acc[n_p] = acc[n_p] + (point_acc[p] << s_p)`` in
    ``acc_bits`` two's complement: under ``wrap`` the shifted value and the sum wrap (order-free: the
    result is the exact sum of all lanes wrapped once), under ``saturate`` the shifted value is
    clamped to the accumulator range, then the sum.
    """
    out = _i64(acc).copy()
    point_acc = _i64(point_acc)
    wrapping = Overflow(overflow) is Overflow.WRAP
    for p, (n, s) in enumerate(zip(_i64(point_channel).tolist(), _i64(point_shift).tolist())):
        term = point_acc[..., p] << np.int64(s)
        if wrapping:
            out[..., n] = wrap(out[..., n] + wrap(term, acc_bits), acc_bits)
        else:
            out[..., n] = saturate(out[..., n] + saturate(term, acc_bits), acc_bits)
    return out


def effective_weights(codes, lut, points=None) -> np.ndarray:
    """``T[c]`` plus, for a multipoint layer, every extra row shifted onto its channel: the weights of
    one equivalent ordinary layer. Exact for ``wrap`` accumulators always (the lanes' wraps and the
    combination's are one wrap of the exact sum) and for ``saturate`` when no lane, shifted lane or
    partial sum can leave the accumulator range; fast executors rely on it under those conditions."""
    w = decode_weights(codes, lut)
    if points is None:
        return w
    point_codes, point_channel, point_shift = points
    wp = point_weights(point_codes, point_channel, lut) << _i64(point_shift).reshape((-1,) + (1,) * (w.ndim - 1))
    np.add.at(w, _i64(point_channel), wp)
    return w


def accumulate(x, w, bias, acc_bits: int, overflow: Overflow | str) -> np.ndarray:
    """``acc[b, n] = bias[n] + sum_k w[n, k] * x[b, k]`` in ``acc_bits`` two's complement.

    ``x``: (B, K) activations; ``w``: (N, K) effective weights; ``bias``: (N,).
    """
    x = _i64(x)
    w = _i64(w)
    bias = _i64(bias)
    if Overflow(overflow) is Overflow.WRAP:
        # Order-free: the exact sum (int64 never overflows for K < 2^40) wrapped once.
        return wrap(bias[None, :] + x @ w.T, acc_bits)
    acc = np.broadcast_to(saturate(bias, acc_bits), (x.shape[0], w.shape[0])).copy()
    for k in range(x.shape[1]):
        acc = saturate(acc + x[:, k, None] * w[None, :, k], acc_bits)
    return acc


def requantize(acc, shift, mult, lo, hi, config: AcceleratorConfig) -> np.ndarray:
    """Rescale accumulators to the output type: shift, or multiply then shift; round; clamp.

    ``shift`` and ``mult`` broadcast along the last axis (output channels);
    ``mult`` is ignored for ``requant="shift"``.
    """
    acc = _i64(acc)
    if config.requant is Requant.MULTIPLY_SHIFT:
        acc = acc * _i64(mult)
    return clamp(rshift_round(acc, shift, config.rounding), lo, hi)


def matmul_requant(x, w, bias, shift, mult, lo, hi, config: AcceleratorConfig,
                   raw: bool = False, point_w=None, point_channel=None, point_shift=None) -> np.ndarray:
    """Accumulate then requantize (or return raw accumulators): (B, K) x (N, K) -> (B, N).

    A multipoint product also takes the extra rows' effective weights ``point_w`` (P, K), their
    channels and shifts: their accumulators join the main ones (:func:`combine_points`) first.
    """
    acc = accumulate(x, w, bias, config.acc_bits, config.overflow)
    if point_w is not None and len(point_w):
        lanes = accumulate(x, point_w, np.zeros(len(point_w), np.int64), config.acc_bits, config.overflow)
        acc = combine_points(acc, lanes, point_channel, point_shift, config.acc_bits, config.overflow)
    if raw:
        return acc
    return requantize(acc, shift, mult, lo, hi, config)


def conv2d(x, codes, lut, bias, shift, mult, lo, hi, config: AcceleratorConfig, *,
           stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups: int = 1,
           pad_value: int = 0, raw: bool = False, points=None) -> np.ndarray:
    """Quantized 2-D convolution: (B, C, H, W) -> (B, N, OH, OW).

    ``codes``: (N, C // groups, KH, KW) weight codes; see :func:`decode_weights`. ``points``:
    ``(point_codes, point_channel, point_shift)`` of a multipoint layer (an extra row reads the
    inputs of its channel's group).
    """
    x = _i64(x)
    w = decode_weights(codes, lut)
    n, _, kh, kw = w.shape
    b = x.shape[0]
    cols = im2col(x, (kh, kw), stride, padding, dilation, pad_value)
    _, oh, ow = cols.shape[:3]
    out = np.empty((b, oh * ow, n), dtype=np.int64)
    shift, mult, bias = (np.broadcast_to(_i64(a), (n,)) for a in (shift, mult, bias))
    pw, pch, psh = _split_points(points, lut)
    for sl, patch in conv_gemm_groups(cols, n, groups):
        mine = (pch >= sl.start) & (pch < sl.stop)
        res = matmul_requant(patch, w[sl].reshape(-1, patch.shape[1]), bias[sl], shift[sl], mult[sl],
                             lo, hi, config, raw, pw[mine].reshape(-1, patch.shape[1]), pch[mine] - sl.start,
                             psh[mine])
        out[:, :, sl] = res.reshape(b, oh * ow, -1)
    return out.reshape(b, oh, ow, n).transpose(0, 3, 1, 2)


def _split_points(points, lut):
    """(effective weights, channels, shifts) of a multipoint layer's extra rows; empty without points."""
    if points is None:
        return np.zeros((0, 1), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    point_codes, point_channel, point_shift = points
    return point_weights(point_codes, point_channel, lut), _i64(point_channel), _i64(point_shift)


def linear(x, codes, lut, bias, shift, mult, lo, hi, config: AcceleratorConfig, *,
           raw: bool = False, points=None) -> np.ndarray:
    """Quantized fully connected layer: (B, K) x codes (N, K) -> (B, N); ``points`` as for :func:`conv2d`."""
    w = decode_weights(codes, lut)
    return matmul_requant(x, w, bias, shift, mult, lo, hi, config, raw, *_split_points(points, lut))


def add(a, b, shift_a: int, shift_b: int, shift: int, lo: int, hi: int,
        rounding: Rounding | str) -> np.ndarray:
    """Residual add: ``clamp(rshift_round((a << shift_a) + (b << shift_b), shift), lo, hi)``."""
    total = (_i64(a) << np.int64(shift_a)) + (_i64(b) << np.int64(shift_b))
    return clamp(rshift_round(total, shift, rounding), lo, hi)


def max_pool(x, kernel, stride, padding) -> np.ndarray:
    """Exact max pooling; padded positions never win.

    Padding must be smaller than the kernel on every side (every window holds a
    real element; :func:`~accel.datapath.limits.max_pool_padding_fits`).
    """
    if not max_pool_padding_fits(kernel, padding):
        raise ValueError(f"max_pool padding {tuple(padding)} must be smaller than the kernel {tuple(kernel)}")
    x = _i64(x)
    lowest = np.iinfo(np.int64).min
    cols = im2col(x, kernel, stride, padding, (1, 1), lowest)
    return cols.max(axis=(4, 5)).transpose(0, 3, 1, 2)


def avg_pool(x, kernel, stride, padding, pad_value: int, mult: int, shift: int, lo: int, hi: int,
             rounding: Rounding | str, count_mult=None, count_shift=None) -> np.ndarray:
    """Average pool: window sum (padding counts as ``pad_value``) times ``mult``, rounding shift, clamp.

    Excluding padding (ONNX ``count_include_pad=0``; contract v1.2): with ``count_mult`` and
    ``count_shift`` (length ``KH*KW``, indexed by ``c - 1``), the sum runs over the ``c`` real
    elements of each window only (``pad_value`` plays no part) and is rescaled by that window's
    ``count_mult[c - 1]`` and ``count_shift[c - 1]``: a 16-bit multiplier and a shift per divisor.
    """
    if count_mult is None:
        cols = im2col(x, kernel, stride, padding, (1, 1), pad_value)
        total = cols.sum(axis=(4, 5)).transpose(0, 3, 1, 2)
        return clamp(rshift_round(total * np.int64(mult), shift, rounding), lo, hi)
    cols = im2col(x, kernel, stride, padding, (1, 1), 0)
    total = cols.sum(axis=(4, 5)).transpose(0, 3, 1, 2)
    counts = window_counts(np.shape(x)[2:], kernel, stride, padding) - 1
    return clamp(rshift_round(total * _i64(count_mult)[counts], _i64(count_shift)[counts], rounding), lo, hi)


def global_avg_pool(x, mult: int, shift: int, lo: int, hi: int, rounding: Rounding | str) -> np.ndarray:
    """Global average pool to (B, C, 1, 1): sum over H, W, times ``mult``, rounding shift, clamp."""
    total = _i64(x).sum(axis=(2, 3), keepdims=True)
    return clamp(rshift_round(total * np.int64(mult), shift, rounding), lo, hi)


def concat(tensors, axis: int = 1) -> np.ndarray:
    """Concatenation along ``axis`` (data movement only)."""
    return np.concatenate([_i64(t) for t in tensors], axis=axis)


def quantize_input(x, exponent: int, lo: int = -128, hi: int = 127) -> np.ndarray:
    """Real-valued network input to integers: ``clamp(floor(x * 2^e + 1/2), lo, hi)``."""
    scaled = np.floor(np.asarray(x, dtype=np.float64) * np.ldexp(1.0, exponent) + 0.5)
    return np.clip(scaled, lo, hi).astype(np.int64)
