"""Window geometry and the im2col order of the datapath contract.

A convolution's reduction index ``k`` runs over (input channel of the group,
kernel row, kernel column) in that nesting. :func:`im2col` lays patches out in
that order and :func:`conv_gemm_groups` cuts them into the matrix products of a
grouped convolution; every executor that lowers a convolution to GEMMs (the
contract, the compiler, the fake-quant model) goes through them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["conv_output_size", "im2col", "conv_gemm_groups", "window_counts"]


def conv_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int,
                     dilation: int = 1) -> int:
    """Output length of a convolution or pooling window along one axis."""
    return (size + pad_before + pad_after - dilation * (kernel - 1) - 1) // stride + 1


def window_counts(in_hw, kernel, stride, padding) -> np.ndarray:
    """Real (not padded) positions in each pooling window: int64 (OH, OW), values 1..KH*KW.

    ``padding`` is (top, left, bottom, right); the divisor of an average pool that excludes padding.
    """
    (h, w), (kh, kw), (sh, sw), (pt, pl, pb, pr) = in_hw, kernel, stride, padding

    def along(size, k, s, before, after):
        n = conv_output_size(size, k, s, before, after)
        pos = np.arange(n)[:, None] * s - before + np.arange(k)[None, :]
        return ((pos >= 0) & (pos < size)).sum(axis=1)

    return np.outer(along(h, kh, sh, pt, pb), along(w, kw, sw, pl, pr)).astype(np.int64)


def im2col(x, kernel, stride, padding, dilation, pad_value) -> np.ndarray:
    """Patches of ``x`` (B, C, H, W) as int64 (B, OH, OW, C, KH, KW), padding with ``pad_value``.

    ``padding`` is (top, left, bottom, right).
    """
    x = np.asarray(x, dtype=np.int64)
    b, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    pt, pl, pb, pr = padding
    dh, dw = dilation
    oh = conv_output_size(h, kh, sh, pt, pb, dh)
    ow = conv_output_size(w, kw, sw, pl, pr, dw)
    padded = np.full((b, c, h + pt + pb, w + pl + pr), pad_value, dtype=np.int64)
    padded[:, :, pt:pt + h, pl:pl + w] = x
    out = np.empty((b, oh, ow, c, kh, kw), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            rows = padded[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]
            out[:, :, :, :, i, j] = rows.transpose(0, 2, 3, 1)
    return out


def conv_gemm_groups(cols, out_channels: int, groups: int):
    """The matrix products of a grouped convolution, one per group, in the contract's order.

    Parameters
    ----------
    cols : array (B, OH, OW, C, KH, KW)
        Patches as :func:`im2col` lays them out (a numpy array or a torch tensor).
    out_channels : int
        Output channels of the whole layer (a multiple of ``groups``).
    groups : int

    Yields
    ------
    channels : slice
        The output channels of group ``g``.
    patch : array (B * OH * OW, C / groups * KH * KW)
        Its activations, one row per output pixel (batch first), columns in the
        order (input channel of the group, kernel row, kernel column).
    """
    b, oh, ow, c, kh, kw = cols.shape
    cg, ng = c // groups, out_channels // groups
    for g in range(groups):
        yield slice(g * ng, (g + 1) * ng), cols[:, :, :, g * cg:(g + 1) * cg].reshape(b * oh * ow, cg * kh * kw)
