"""Limits of the datapath contract (DESIGN.md): tensor types and the ranges of the vector ops' fields.

Every other package reads these names; none writes the numbers again.
"""

from __future__ import annotations

__all__ = ["DTYPE_RANGES", "ADD_INPUT_SHIFT_MAX", "ADD_SHIFT_MAX", "POOL_MULT_BITS", "POOL_SHIFT_MAX",
           "POINT_SHIFT_MAX", "max_pool_padding_fits", "PE_TERMS", "pe_decodable"]

#: Integer range of each tensor type the datapath moves.
DTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int32": (-(1 << 31), (1 << 31) - 1),
}

#: Largest left shift of each input of a residual add (``shift_a``, ``shift_b``: 0..16).
ADD_INPUT_SHIFT_MAX = 16

#: Largest rounding right shift of a residual add (``shift``: 0..31).
ADD_SHIFT_MAX = 31

#: Largest left shift of a multipoint layer's extra accumulator before it joins its channel's
#: accumulator (``point_shift``: 0..16; the vector unit's shifter, as for a residual add's inputs).
POINT_SHIFT_MAX = 16

#: Width of the unsigned multiplier of average pooling (window sum * M >> s).
POOL_MULT_BITS = 16

#: Largest rounding right shift of average and global average pooling (``shift``: 0..47).
POOL_SHIFT_MAX = 47


def max_pool_padding_fits(kernel, padding) -> bool:
    """Whether every window of a max pool holds a real element: padding below the kernel on every side.

    ``kernel`` is (KH, KW), ``padding`` (top, left, bottom, right); as in ONNX
    ``MaxPool``, a window of padding only has no value.
    """
    kh, kw = kernel
    pt, pl, pb, pr = padding
    return max(pt, pb) < kh and max(pl, pr) < kw


#: Powers of two a PE kind adds per weight (``shift``: one, ``shift_add``: up to two); ``general``
#: multiplies, so any int8 value is decodable.
PE_TERMS = {"shift": 1, "shift_add": 2}


def pe_decodable(values, pe_kind):
    """Which int8 LUT ``values`` a PE of ``pe_kind`` computes exactly: all for ``general``; for
    ``shift`` 0 and +-2^e (at most one bit set in the magnitude), for ``shift_add`` at most two.

    >>> pe_decodable([0, 1, -2, 3, 96, 127, -128], "shift_add").tolist()
    [True, True, True, True, True, False, True]
    """
    import numpy as np

    v = np.asarray(values, dtype=np.int64)
    kind = getattr(pe_kind, "value", pe_kind)
    inside = (v >= -128) & (v <= 127)
    if kind == "general":
        return inside
    mag = np.abs(v)
    bits = np.zeros(v.shape, np.int64)
    for b in range(8):
        bits += (mag >> b) & 1
    return inside & (bits <= PE_TERMS[kind])
