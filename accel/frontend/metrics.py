"""Quantization error measures shared by the weight quantizer, the evaluation and the scripts."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["sqnr_db", "signal_noise_energy"]


def signal_noise_energy(reference: np.ndarray, approx: np.ndarray) -> tuple[float, float]:
    """``(sum(ref^2), sum((ref - approx)^2))`` in float64: the two terms of :func:`sqnr_db`.

    Energies add up over batches, so a streamed evaluation sums them and calls
    :func:`sqnr_db` once at the end.
    """
    ref = np.asarray(reference, np.float64)
    err = ref - np.asarray(approx, np.float64)
    return float(np.sum(ref * ref)), float(np.sum(err * err))


def sqnr_db(signal_energy: float, noise_energy: float) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(signal / noise)`` in dB.

    ``inf`` when the noise is zero (an exact result), ``-inf`` when only the
    signal is zero.

    >>> sqnr_db(*signal_noise_energy([3.0, 4.0], [3.0, 4.5]))  # 25 / 0.25
    20.0
    >>> sqnr_db(1.0, 0.0)
    inf
    """
    if noise_energy <= 0:
        return math.inf
    if signal_energy <= 0:
        return -math.inf
    return 10.0 * math.log10(signal_energy / noise_energy)
