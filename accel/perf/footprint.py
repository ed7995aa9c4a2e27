"""Weight storage of a conv/linear layer, honest about the LUT.

Everything the core must be given to run a layer counts: the packed weight
codes, the LUT tables (one per layer or one per output channel, 8 bits an
entry), the per-channel shifts, biases and (``multiply_shift``) multipliers.
A per-channel LUT on a depthwise 3x3 layer holds 16 entries for 9 weights, so
its "4-bit" weights cost far more than 4 bits each; :attr:`WeightStorage.bits_per_weight`
shows it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..config import AcceleratorConfig, Requant
from ..datapath import POINT_SHIFT_MAX
from ..ir import Layer

__all__ = ["WeightStorage", "weight_storage"]

LUT_ENTRY_BITS = 8  #: LUT entries are signed int8 (DESIGN.md)


@dataclass(frozen=True)
class WeightStorage:
    """Bits of a layer's parameters, by kind."""

    weights: int
    code_bits: int
    lut_bits: int
    shift_bits: int
    bias_bits: int
    mult_bits: int
    point_bits: int = 0  #: a multipoint layer's extra code rows, and per point its channel and shift

    @property
    def total_bits(self) -> int:
        return self.code_bits + self.lut_bits + self.shift_bits + self.bias_bits + self.mult_bits + self.point_bits

    @property
    def total_bytes(self) -> int:
        return -(-self.total_bits // 8)

    @property
    def bits_per_weight(self) -> float:
        return self.total_bits / self.weights

    def to_dict(self) -> dict:
        return {**asdict(self), "total_bits": self.total_bits, "total_bytes": self.total_bytes,
                "bits_per_weight": self.bits_per_weight}


def weight_storage(layer: Layer, config: AcceleratorConfig, *, lut: bool = True) -> WeightStorage:
    """Storage of ``layer``'s parameters under ``config``; ``lut=False`` prices plain weights of
    ``config.weight_bits`` bits with no table."""
    codes = np.asarray(layer.arrays["codes"])
    n = codes.shape[0]
    lut_bits = int(np.asarray(layer.arrays["lut"]).size) * LUT_ENTRY_BITS if lut else 0
    mult = n * config.mult_bits if config.requant is Requant.MULTIPLY_SHIFT else 0
    point_bits = 0
    if layer.points is not None:
        point_codes = np.asarray(layer.arrays["point_codes"])
        per_point = max(1, (n - 1).bit_length()) + POINT_SHIFT_MAX.bit_length()
        point_bits = int(point_codes.size) * config.weight_bits + layer.n_points * per_point
    return WeightStorage(weights=int(codes.size), code_bits=int(codes.size) * config.weight_bits,
                         lut_bits=lut_bits, shift_bits=n * config.max_shift.bit_length(),
                         bias_bits=n * config.acc_bits, mult_bits=mult, point_bits=point_bits)
