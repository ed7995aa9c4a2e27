"""A plain symmetric uniform weight quantizer (used only until ``weights.py`` provides the LUT families)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelImportError

__all__ = ["quantize_weights_uniform"]


@dataclass
class _Quant:
    codes: np.ndarray
    lut: np.ndarray
    step: np.ndarray

    @property
    def exponent(self) -> np.ndarray:
        e = -np.log2(self.step)
        if not np.all(e == np.round(e)):
            raise ValueError("a step is not a power of two")
        return np.round(e).astype(np.int64)

    def dequantize(self) -> np.ndarray:
        n = self.codes.shape[0]
        rows = np.zeros(n, int) if self.lut.shape[0] == 1 else np.arange(n)
        flat = self.codes.reshape(n, -1).astype(np.int64)
        w = self.lut.astype(np.float64)[rows[:, None], flat] * self.step[:, None]
        return w.reshape(self.codes.shape)


def quantize_weights_uniform(weights, *, weight_bits=4, granularity="channel", levels=None,
                             power_of_two=True, name="weights"):
    w = np.asarray(weights, np.float64)
    if not np.all(np.isfinite(w)):
        raise ModelImportError(f"layer {name!r}: weights hold NaN or Inf")
    n = w.shape[0]
    entries = 1 << weight_bits
    half = (min(levels or entries, entries) - 1) // 2  # symmetric levels -half..half
    lut = np.zeros((1, entries), np.int8)
    lut[0, :2 * half + 1] = np.round(np.arange(-half, half + 1) * (127 / half))
    flat = np.abs(w.reshape(n, -1))
    top = flat.max(axis=1) if granularity == "channel" else np.full(n, flat.max())
    top = np.where(top > 0, top, 1.0)
    step = top / 127 if not power_of_two else np.exp2(np.ceil(np.log2(top / 127)))
    scaled = w.reshape(n, -1) / step[:, None]
    codes = np.abs(scaled[:, :, None] - lut[0, None, None, :2 * half + 1]).argmin(axis=2).astype(np.uint8)
    return _Quant(codes.reshape(w.shape), lut, step)
