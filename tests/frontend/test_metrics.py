"""One SQNR measure: energies in, dB out, exact and silent tensors at the ends of the scale."""

import math

import numpy as np
import pytest

from accel.frontend.metrics import signal_noise_energy, sqnr_db


def test_sqnr_of_arrays_and_of_summed_batches_agree():
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(6, 10))
    approx = ref + rng.normal(size=ref.shape) * 0.01
    whole = sqnr_db(*signal_noise_energy(ref, approx))
    parts = [signal_noise_energy(ref[i:i + 2], approx[i:i + 2]) for i in range(0, 6, 2)]
    streamed = sqnr_db(sum(p[0] for p in parts), sum(p[1] for p in parts))
    assert streamed == pytest.approx(whole, rel=1e-12)
    assert 35 < whole < 45  # noise 1% of the signal's amplitude: about 40 dB


def test_exact_and_silent_ends():
    assert sqnr_db(*signal_noise_energy([1.0, -2.0], [1.0, -2.0])) == math.inf
    assert sqnr_db(*signal_noise_energy([0.0, 0.0], [0.0, 0.5])) == -math.inf
    assert sqnr_db(100.0, 1.0) == 20.0
