"""Limits of the datapath contract (DESIGN.md): tensor types and the ranges of the vector ops' fields.

Every other package reads these names; none writes the numbers again.
"""

from __future__ import annotations

__all__ = ["DTYPE_RANGES", "ADD_INPUT_SHIFT_MAX", "ADD_SHIFT_MAX", "POOL_MULT_BITS", "POOL_SHIFT_MAX",
           "max_pool_padding_fits"]

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
