"""numba kernels of the engine.

The arithmetic follows :mod:`accel.datapath` exactly; the tests hold every
kernel to it. Kernels are parallel over independent outputs only, so results
never depend on the thread count.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["wrap_scalar", "requant_scalar", "im2col_kp", "mac_columns", "max_pool2d", "avg_pool2d",
           "requant_array"]


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


@njit(parallel=True, cache=True)
def im2col_kp(x, kh, kw, sh, sw, pt, pl, dh, dw, pad_value, oh_n, ow_n, out):
    """Patches of ``x`` (B, C, H, W) into ``out`` (B, C*KH*KW, OH*OW): rows in the (c, i, j) im2col order,
    output pixels contiguous, so that a kernel can run along the pixels with SIMD."""
    b_n, c_in, h_in, w_in = x.shape
    for bc in prange(b_n * c_in):
        b = bc // c_in
        c = bc % c_in
        for i in range(kh):
            for j in range(kw):
                row = (c * kh + i) * kw + j
                for oh in range(oh_n):
                    ih = oh * sh - pt + i * dh
                    for ow in range(ow_n):
                        iw = ow * sw - pl + j * dw
                        if 0 <= ih < h_in and 0 <= iw < w_in:
                            out[b, row, oh * ow_n + ow] = x[b, c, ih, iw]
                        else:
                            out[b, row, oh * ow_n + ow] = pad_value


@njit(parallel=True, cache=True)
def mac_columns(cols, w, bias, shift, mult, lo, hi, groups, acc_bits, saturate, multiply, half_up, raw, out):
    """Conv/linear over im2col columns, vectorised along the output pixels, exact for both overflow modes.

    ``cols``: (B, C*KH*KW, P); ``w``: (N, C/groups*KH*KW) int64; ``out``: (B, N, P). Per output channel
    the accumulator vector starts at the bias and takes k in ascending order (the contract's order, which
    matters under saturation: clamped after every addition); a zero weight adds nothing and is skipped.
    """
    b_n, _, p_n = cols.shape
    n_out, k_g = w.shape
    ng = n_out // groups
    amax = (np.int64(1) << (acc_bits - 1)) - 1
    amin = -amax - 1
    for bn in prange(b_n * n_out):
        b = bn // n_out
        n = bn % n_out
        k0 = (n // ng) * k_g
        start = np.int64(bias[n])
        if saturate:
            start = min(max(start, amin), amax)
        acc = np.full(p_n, start, dtype=np.int64)
        for k in range(k_g):
            wk = w[n, k]
            if wk == 0:
                continue
            row = cols[b, k0 + k]
            if saturate:
                for p in range(p_n):
                    acc[p] = min(max(acc[p] + wk * np.int64(row[p]), amin), amax)
            else:
                for p in range(p_n):
                    acc[p] += wk * np.int64(row[p])
        s = np.int64(shift[n])
        m = np.int64(mult[n])
        for p in range(p_n):
            v = acc[p] if saturate else wrap_scalar(acc[p], acc_bits)
            if raw:
                out[b, n, p] = v
            else:
                out[b, n, p] = requant_scalar(v, s, m, lo, hi, multiply, half_up)
