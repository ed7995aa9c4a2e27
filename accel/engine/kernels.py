"""numba kernels of the engine.

The arithmetic follows :mod:`accel.datapath` exactly; the tests hold every
kernel to it. Kernels are parallel over independent outputs only, so results
never depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["wrap_scalar", "requant_scalar", "conv2d_direct", "im2col_f", "mac_epilogue", "max_pool2d",
           "avg_pool2d", "requant_array"]


@njit(inline="always", cache=True)
def wrap_scalar(acc, acc_bits):
    """Two's complement wrap of the int64 ``acc`` to ``acc_bits`` bits (:func:`accel.datapath.wrap`)."""
    half = np.int64(1) << (acc_bits - 1)
    return ((acc + half) & ((half << 1) - 1)) - half


@njit(inline="always", cache=True)
def requant_scalar(acc, shift, mult, lo, hi, multiply, half_up):
    """``clamp(rshift_round(acc [* mult], shift), lo, hi)`` on int64 scalars."""
    v = acc * mult if multiply else acc
    if shift > 0:
        if half_up:
            v = (v + (np.int64(1) << (shift - 1))) >> shift
        else:
            v = v >> shift
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@njit(parallel=True, cache=True)
def conv2d_direct(x, w, bias, shift, mult, lo, hi, sh, sw, pt, pl, dh, dw, groups, pad_value,
                  acc_bits, saturate, multiply, half_up, raw, out):
    """Direct convolution in int64, k ascending (c, kernel row, kernel column).

    ``x``: (B, C, H, W) int; ``w``: (N, C/groups, KH, KW) int64 effective weights;
    ``out``: (B, N, OH, OW), written in place. Exact for both overflow modes.
    """
    b_n, c_in, h_in, w_in = x.shape
    n_out, cg, kh, kw = w.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    ng = n_out // groups
    amax = (np.int64(1) << (acc_bits - 1)) - 1
    amin = -amax - 1
    pad = np.int64(pad_value)
    for bn in prange(b_n * n_out):
        b = bn // n_out
        n = bn % n_out
        c0 = (n // ng) * cg
        for oh in range(oh_n):
            for ow in range(ow_n):
                acc = np.int64(bias[n])
                if saturate:
                    acc = min(max(acc, amin), amax)
                for c in range(cg):
                    for i in range(kh):
                        ih = oh * sh - pt + i * dh
                        for j in range(kw):
                            iw = ow * sw - pl + j * dw
                            if 0 <= ih < h_in and 0 <= iw < w_in:
                                xv = np.int64(x[b, c0 + c, ih, iw])
                            else:
                                xv = pad
                            acc += w[n, c, i, j] * xv
                            if saturate:
                                acc = min(max(acc, amin), amax)
                if not saturate:
                    acc = wrap_scalar(acc, acc_bits)
                if raw:
                    out[b, n, oh, ow] = acc
                else:
                    out[b, n, oh, ow] = requant_scalar(acc, np.int64(shift[n]), np.int64(mult[n]),
                                                       lo, hi, multiply, half_up)


@njit(parallel=True, cache=True)
def im2col_f(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, oh_n, ow_n, out):
    """Patches of ``x`` (B, C, H, W) into ``out`` (B*OH*OW, C*KH*KW), columns in (c, i, j) order."""
    b_n, c_in, h_in, w_in = x.shape
    padf = pad_value
    for r in prange(b_n * oh_n):
        b = r // oh_n
        oh = r % oh_n
        for ow in range(ow_n):
            row = r * ow_n + ow
            for c in range(c_in):
                for i in range(kh):
                    ih = oh * sh - pt + i * dh
                    base = (c * kh + i) * kw
                    if 0 <= ih < h_in:
                        for j in range(kw):
                            iw = ow * sw - pl + j * dw
                            if 0 <= iw < w_in:
                                out[row, base + j] = x[b, c, ih, iw]
                            else:
                                out[row, base + j] = padf
                    else:
                        for j in range(kw):
                            out[row, base + j] = padf


@njit(parallel=True, cache=True)
def mac_epilogue(acc2d, bias, shift, mult, lo, hi, acc_bits, multiply, half_up, raw, out):
    """Exact sums ``acc2d`` (B*P, N) (float holding integers) + bias, wrapped, requantized into ``out`` (B, N, P)."""
    b_n, n_out, p_n = out.shape
    for bn in prange(b_n * n_out):
        b = bn // n_out
        n = bn % n_out
        bias_n = np.int64(bias[n])
        s = np.int64(shift[n])
        m = np.int64(mult[n])
        for p in range(p_n):
            acc = wrap_scalar(np.int64(acc2d[b * p_n + p, n]) + bias_n, acc_bits)
            if raw:
                out[b, n, p] = acc
            else:
                out[b, n, p] = requant_scalar(acc, s, m, lo, hi, multiply, half_up)


@njit(parallel=True, cache=True)
def max_pool2d(x, kh, kw, sh, sw, pt, pl, out):
    """Exact max pooling; padded positions are skipped."""
    b_n, c_n, h_in, w_in = x.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    for bc in prange(b_n * c_n):
        b = bc // c_n
        c = bc % c_n
        for oh in range(oh_n):
            for ow in range(ow_n):
                best = np.int64(-(1 << 62))
                for i in range(kh):
                    ih = oh * sh - pt + i
                    if 0 <= ih < h_in:
                        for j in range(kw):
                            iw = ow * sw - pl + j
                            if 0 <= iw < w_in:
                                v = np.int64(x[b, c, ih, iw])
                                if v > best:
                                    best = v
                out[b, c, oh, ow] = best


@njit(parallel=True, cache=True)
def avg_pool2d(x, kh, kw, sh, sw, pt, pl, pad_value, count_mult, count_shift, exclude_pad, lo, hi, half_up, out):
    """Window sum times a multiplier, rounding shift, clamp.

    Padding counts as ``pad_value`` and every window uses ``count_mult[-1]``, ``count_shift[-1]``;
    with ``exclude_pad`` padded positions are left out and a window of ``c`` real elements uses
    ``count_mult[c - 1]``, ``count_shift[c - 1]``.
    """
    b_n, c_n, h_in, w_in = x.shape
    oh_n, ow_n = out.shape[2], out.shape[3]
    for bc in prange(b_n * c_n):
        b = bc // c_n
        c = bc % c_n
        for oh in range(oh_n):
            for ow in range(ow_n):
                total = np.int64(0)
                count = 0
                for i in range(kh):
                    ih = oh * sh - pt + i
                    for j in range(kw):
                        iw = ow * sw - pl + j
                        if 0 <= ih < h_in and 0 <= iw < w_in:
                            total += np.int64(x[b, c, ih, iw])
                            count += 1
                        elif not exclude_pad:
                            total += pad_value
                k = count - 1 if exclude_pad else kh * kw - 1
                out[b, c, oh, ow] = requant_scalar(total, count_shift[k], count_mult[k], lo, hi, True, half_up)


@njit(parallel=True, cache=True)
def requant_array(values, mult, shift, lo, hi, half_up, out):
    """Element-wise ``clamp(rshift_round(v * mult, shift), lo, hi)`` over flat arrays."""
    for i in prange(values.shape[0]):
        out[i] = requant_scalar(np.int64(values[i]), shift, mult, lo, hi, True, half_up)
