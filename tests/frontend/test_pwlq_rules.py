"""PWLQ's closed-form breakpoint rules against the grid search they replace."""

import math

import numpy as np
import pytest

from accel.frontend.lut import family_levels, pwlq_breakpoint, squared_error
from accel.frontend.weights import quantize_weights


def _sqnr(x, levels):
    return 10 * math.log10(float((x ** 2).sum()) / squared_error(x, levels))


def test_breakpoints_follow_the_papers_formulas():
    x = np.random.default_rng(1).normal(size=50_000) * 3.0
    m, sigma = np.abs(x).max(), x.std()
    p, top = pwlq_breakpoint(x, "gauss")
    assert top == m and p == pytest.approx(sigma * math.log(0.8614 * m / sigma + 0.6079))
    p, _ = pwlq_breakpoint(x, "laplace")
    assert p == pytest.approx(sigma * (0.8030 * math.sqrt(m / sigma) - 0.3167))
    assert pwlq_breakpoint(np.zeros(10), "gauss") == (0.0, 0.0)


@pytest.mark.parametrize("dist,rule", [("normal", "pwlq_gauss"), ("laplace", "pwlq_laplace")])
def test_each_rule_is_close_to_the_grid_search_on_its_own_distribution(dist, rule):
    x = getattr(np.random.default_rng(0), dist)(size=20_000)
    x = x / np.abs(x).max() * 127
    grid = _sqnr(x, family_levels("pwlq", x, 16))
    closed_form = _sqnr(x, family_levels(rule, x, 16))
    # no search, at most half a dB lost (measured: 0.4 dB Gaussian, 0.3 dB Laplace)
    assert grid - 0.5 < closed_form <= grid + 1e-9
    assert family_levels(rule, x, 16).size <= 16


def test_rule_families_quantize_weights():
    w = np.random.default_rng(2).normal(size=(8, 4, 3, 3))
    for family in ("pwlq_gauss", "pwlq_laplace"):
        q = quantize_weights(w, family=family, weight_bits=4, lut_scope="channel")
        assert 10 * np.log10((w ** 2).sum() / ((q.dequantize() - w) ** 2).sum()) > 15
