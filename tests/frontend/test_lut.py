"""LUT families: the MSE family's optimality, tie breaking, the shapes of the parametric families."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.frontend.lut import family_levels, mse_levels, nearest_codes, pot_levels, pwlq_levels


@settings(max_examples=60)
@given(st.integers(0, 2**32 - 1), st.sampled_from([3, 4, 7, 8, 16]), st.sampled_from(["normal", "laplace", "uniform"]))
def test_mse_levels_beat_every_other_family_on_the_same_data(seed, n_levels, dist):
    """The MSE family is optimal on the int8 grid: no family's levels (at most as many) do better."""
    rng = np.random.default_rng(seed)
    x = getattr(rng, dist)(size=int(rng.integers(5, 400)))
    x = x / np.abs(x).max() * rng.uniform(64, 127.5)
    best = mse_levels(x, n_levels)
    assert best.size <= n_levels and np.all(np.diff(best) > 0)
    err = np.sum((x - best[nearest_codes(x, best)]) ** 2)
    for fam in ("uniform", "pot", "apot", "pwlq"):
        lv = family_levels(fam, x, n_levels)
        assert lv.size <= n_levels
        assert err <= np.sum((x - lv[nearest_codes(x, lv)]) ** 2) + 1e-6


def test_mse_levels_match_brute_force():
    rng = np.random.default_rng(11)
    for trial in range(20):
        x = rng.normal(size=int(rng.integers(3, 40))) * 2.5
        x = np.clip(x, -5.4, 5.4)
        for k in (1, 2, 3):
            got = mse_levels(x, k)
            got_err = np.sum((x - got[nearest_codes(x, got)]) ** 2)
            brute = min(np.sum((x - np.array(c)[nearest_codes(x, np.array(c))]) ** 2)
                        for c in itertools.combinations(range(-7, 8), k))
            assert got_err == pytest.approx(brute, abs=1e-9), (trial, k)


def test_nearest_codes_breaks_ties_towards_zero():
    lv = np.array([-10, -4, 0, 4, 10])
    x = np.array([-7.0, -2.0, 2.0, 7.0, -7.0001, 7.0001, 100.0, -100.0])
    assert lv[nearest_codes(x, lv)].tolist() == [-4, 0, 0, 4, -10, 10, 10, -10]


def test_pot_and_pwlq_shapes():
    x = np.random.default_rng(0).laplace(size=2000)
    x = x / np.abs(x).max() * 120
    pot = pot_levels(x, 16)
    mags = np.sort(pot[pot > 0])[::-1]
    assert pot.size == 15 and 0 in pot and np.array_equal(pot, -pot[::-1])
    assert all(abs(b - a / 2) <= 1 for a, b in zip(mags, mags[1:]))  # each level half the one above
    pw = pwlq_levels(x, 16)
    assert pw.size == 15 and 0 in pw and np.array_equal(pw, -pw[::-1])
    assert pw.max() == 120  # m is the largest weight
    centre, tail = pw[4:11], pw[11:]
    assert np.ptp(np.diff(centre)) <= 1 and np.ptp(np.diff(tail)) <= 1  # uniform within each region
    assert np.diff(tail).mean() > np.diff(centre).mean()  # sparse tails, dense centre
