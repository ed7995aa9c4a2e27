"""LUT families: the int8 levels that a layer's 4-bit (or 2..8-bit) weight codes expand to.

A family is a function ``levels(x, n_levels)`` that returns at most ``n_levels``
sorted distinct int8 levels fitted to ``x``, weights already scaled onto the
int8 grid (``|x| <= 127.5``) by their power-of-two exponents
(:mod:`accel.frontend.weights` chooses those and assigns the codes).

The families (:data:`FAMILIES`):

``uniform``
    ``2m + 1`` equally spaced levels ``round(alpha * k / m)``, ``k = -m..m``,
    the clipping ``alpha`` searched for the least squared error.
``pot``
    Zero and ``+-round(alpha * 2**-j)``: power-of-two levels (exact powers of
    two in the int8 LUT when ``alpha`` is 64); ``alpha`` searched.
``apot``
    Additive powers of two (Li et al. 2020): each magnitude a sum of two terms,
    the first from ``{0, 2^0, 2^-2, 2^-4, ...}``, the second from
    ``{0, 2^-1, 2^-3, ...}``, splitting the magnitude bits between the terms;
    ``alpha`` searched.
``pwlq``
    Piecewise linear (Fang et al. 2020): ``[-m, m]`` split at ``+-p`` into a
    dense centre and sparse tails with (nearly) equal numbers of levels (a
    quarter of the entries uniform on each tail ``(p, m]``, the rest but one
    uniform over ``[-p, p]`` with zero among them: 7 + 8 levels of 16), the
    breakpoint ``p/m`` found by a coarse-to-fine grid search on the squared
    error; ``m`` is the largest weight.
``pwlq_gauss``, ``pwlq_laplace``
    PWLQ's levels with the breakpoint from the paper's closed-form rules
    instead of the search (:func:`pwlq_breakpoint`): no search, for bell-shaped
    weights nearly the same error (tables of 8 levels or more; smaller ones search).
``mse``
    The MSE-optimal codebook on the int8 grid: Lloyd-Max / k-means solved
    *exactly* in one dimension by dynamic programming over the 256 int8
    candidates (k-means' optimum restricted to the grid, no local minima).
``user``
    The levels given in ``user_lut`` (absolute int8 values); the exponents are
    searched (``floor(log2(max|level| / max|w|))`` and its neighbours) for the
    least squared error.

Multiplier-free PEs (``AcceleratorConfig.pe_kind``) decode only some int8 values
(:func:`accel.datapath.pe_decodable`): :data:`PE_FAMILIES` lists the families each
kind accepts, and for ``shift``/``shift_add`` ``pot`` and ``apot`` fit a power-of-two
``alpha`` to their raw shapes (``alpha * 2^-j``, ``alpha * (p1 + p2)``), so every level is
``+-2^e`` (or a sum of two): exact in the PE's shifts.

Measured on the bundled models' weights at 4 bits, per-channel exponents and a
shared LUT, ``mse`` has the highest SQNR of all families (docs/QUANTIZATION.md,
"LUT families"), so it is :data:`DEFAULT_FAMILY`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import ConfigError

__all__ = ["FAMILIES", "DEFAULT_FAMILY", "PE_FAMILIES", "family_levels", "uniform_levels", "pot_levels",
           "apot_levels", "pwlq_levels", "pwlq_breakpoint", "PWLQ_RULES", "mse_levels", "user_levels",
           "nearest_codes", "squared_error"]

#: Names of the LUT families (the values ``accel quantize --lut`` accepts).
FAMILIES = ("uniform", "pot", "apot", "pwlq", "pwlq_gauss", "pwlq_laplace", "mse", "user")
#: PWLQ breakpoint rules (Fang et al. 2020, their code): ``p / sigma`` from ``m / sigma``.
PWLQ_RULES = {
    "gauss": lambda ratio: math.log(0.8614 * ratio + 0.6079),
    "laplace": lambda ratio: 0.8030 * math.sqrt(ratio) - 0.3167,
}
#: The best general-purpose family at 4-bit weights (highest SQNR on the bundled models).
DEFAULT_FAMILY = "mse"
#: The families whose levels each PE kind can decode (``user`` when its levels are decodable).
PE_FAMILIES = {"general": FAMILIES, "shift": ("pot", "user"), "shift_add": ("pot", "apot", "user")}

_SEARCH_POINTS = 8192  # the parameter searches run on at most this many (quantile) samples


# ----------------------------------------------------------------------------------------------
# Helpers


def nearest_codes(x: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest of the sorted distinct ``levels`` for each value of ``x``.

    A value exactly halfway between two levels takes the one nearer zero.

    Parameters
    ----------
    x : numpy.ndarray
        Values (any shape).
    levels : numpy.ndarray
        Sorted, distinct levels (1-D, at least one).

    Returns
    -------
    numpy.ndarray
        ``int64`` indices into ``levels``, the shape of ``x``.
    """
    x = np.asarray(x, np.float64)
    lv = np.asarray(levels, np.float64)
    mids = (lv[:-1] + lv[1:]) / 2
    left = np.searchsorted(mids, x, side="left")    # x == mid -> the lower level
    right = np.searchsorted(mids, x, side="right")  # x == mid -> the upper level
    return np.where(x < 0, right, left).astype(np.int64)


def squared_error(x: np.ndarray, levels: np.ndarray) -> float:
    """Sum of squared distances from each value of ``x`` to its nearest of the sorted ``levels``."""
    lv = np.asarray(levels, np.float64)
    return float(np.sum((x - lv[nearest_codes(x, lv)]) ** 2))


def _search_sample(x: np.ndarray) -> np.ndarray:
    """``x`` itself, or evenly spaced order statistics of it when it is large."""
    x = np.asarray(x, np.float64).ravel()
    if x.size <= _SEARCH_POINTS:
        return x
    s = np.sort(x)
    idx = np.round(np.linspace(0, s.size - 1, _SEARCH_POINTS)).astype(np.int64)
    return s[idx]


def _snap(real_levels) -> np.ndarray:
    """Real levels to sorted distinct int8 values."""
    return np.unique(np.clip(np.round(np.asarray(real_levels, np.float64)), -128, 127)).astype(np.int64)


def _best_alpha(x: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Levels ``round(alpha * shape)`` with ``alpha`` searched for the least squared error on ``x``.

    ``shape`` holds normalized levels (largest magnitude 1).
    """
    xs = _search_sample(x)
    top = float(np.max(np.abs(xs))) if xs.size else 0.0
    hi = min(max(top, 1.0), 127.0)
    best, best_err, best_alpha = None, math.inf, hi

    def scan(alphas):
        nonlocal best, best_err, best_alpha
        for alpha in np.unique(np.round(alphas, 3)):
            lv = _snap(alpha * shape)
            err = squared_error(xs, lv)
            if err < best_err - 1e-12:
                best, best_err, best_alpha = lv, err, float(alpha)

    coarse = np.linspace(0.3 * hi, hi, 24)  # coarse to fine: 24 points, then 16 around the best
    scan(coarse)
    d = coarse[1] - coarse[0]
    scan(np.linspace(max(best_alpha - d, 0.3 * hi), min(best_alpha + d, hi), 16))
    return best


# ----------------------------------------------------------------------------------------------
# LUT families: each returns the sorted distinct int8 levels (int64 array, at most n_levels)
# fitted to ``x``, weights already scaled onto the int8 grid (|x| <= 127.5).


def uniform_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Uniform levels ``round(alpha * k / m)``, ``k = -m..m``, ``m = (n_levels - 1) // 2``; ``alpha`` searched.

    Parameters
    ----------
    x : numpy.ndarray
        Scaled weights on the int8 grid.
    n_levels : int
        At most this many levels (2 or more).

    Returns
    -------
    numpy.ndarray
        Sorted distinct int8 levels (int64).
    """
    if n_levels == 2:
        return _best_alpha(x, np.array([-1.0, 1.0]))
    m = (n_levels - 1) // 2
    return _best_alpha(x, np.arange(-m, m + 1) / m)


def pot_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Zero and ``+-round(alpha * 2**-j)``, ``j = 0..(n_levels - 1) // 2 - 1``; ``alpha`` searched.

    See :func:`uniform_levels` for the parameters.
    """
    if n_levels == 2:
        return _best_alpha(x, np.array([-1.0, 1.0]))
    m = (n_levels - 1) // 2
    mags = 2.0 ** -np.arange(m)
    return _best_alpha(x, np.concatenate([-mags, [0.0], mags]))


def _apot_magnitudes(n_mags: int, normalize: bool = True) -> np.ndarray:
    """The ``n_mags`` largest nonzero APoT magnitudes (normalized to a largest of 1, or the raw
    sums ``p1 + p2`` with ``p1 <= 1``)."""
    bits = max(1, math.ceil(math.log2(n_mags + 1)))  # magnitude bits (zero included)
    k1 = (bits + 1) // 2
    k2 = bits - k1
    t1 = np.array([0.0] + [2.0 ** -(2 * j) for j in range((1 << k1) - 1)])
    t2 = np.array([0.0] + [2.0 ** -(2 * j + 1) for j in range((1 << k2) - 1)])
    mags = np.unique((t1[:, None] + t2[None, :]).ravel())
    mags = mags[mags > 0][::-1][:n_mags]
    return mags / mags.max() if normalize else mags


def apot_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Additive powers of two: zero and ``+-alpha * (p1 + p2)``; ``alpha`` searched.

    ``p1`` from ``{0, 2^0, 2^-2, ...}``, ``p2`` from ``{0, 2^-1, 2^-3, ...}``
    (Li et al. 2020, two additive terms). See :func:`uniform_levels` for the
    parameters.
    """
    if n_levels == 2:
        return _best_alpha(x, np.array([-1.0, 1.0]))
    m = (n_levels - 1) // 2
    mags = _apot_magnitudes(m)
    return _best_alpha(x, np.concatenate([-mags, [0.0], mags]))


def _pwlq_real(p: float, m: float, n_levels: int) -> np.ndarray:
    t = n_levels // 4
    c = n_levels - 2 * t
    if c % 2 == 0 and c > 2:  # an odd centre, so that zero is a level (dead weights stay dead)
        c -= 1
    centre = np.linspace(-p, p, c) if c > 1 else np.zeros(1)
    tail = p + (m - p) * np.arange(1, t + 1) / max(t, 1)
    return np.concatenate([-tail, centre, tail])


def pwlq_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """Piecewise linear levels: ``n_levels // 4`` uniform on each tail ``(p, m]``, the rest over ``[-p, p]``.

    The centre gets an odd count (zero among its levels) when it has more than
    two levels: 16 entries give 7 centre and 4 + 4 tail levels.

    ``m`` is the largest ``|x|`` (at most 127); the breakpoint ``p/m`` is
    searched on a coarse grid (step 0.05), then a fine one (step 0.005) around
    the best, for the least squared error. See :func:`uniform_levels` for the
    parameters.
    """
    xs = _search_sample(x)
    m = min(max(float(np.max(np.abs(xs))) if xs.size else 1.0, 1.0), 127.0)

    def err(r):
        lv = _snap(_pwlq_real(r * m, m, n_levels))
        return squared_error(xs, lv), lv

    coarse = np.round(np.arange(0.05, 1.0001, 0.05), 4)
    errs = [err(r)[0] for r in coarse]
    r0 = float(coarse[int(np.argmin(errs))])
    fine = np.round(np.arange(max(r0 - 0.05, 0.005), min(r0 + 0.05, 1.0) + 1e-9, 0.005), 4)
    best = min((err(r) for r in fine), key=lambda t: t[0])
    return best[1]


def pwlq_breakpoint(x: np.ndarray, rule: str) -> tuple[float, float]:
    """``(p, m)``: PWLQ's breakpoint by a closed-form rule of :data:`PWLQ_RULES` and the range ``m``.

    ``m`` is the largest ``|x|`` and ``sigma`` the standard deviation; ``p`` is kept in
    ``(0, m]``.

    >>> x = np.random.default_rng(0).normal(size=100_000)
    >>> p, m = pwlq_breakpoint(x, "gauss")
    >>> round(p / m, 2)  # the paper's Gaussian rule: p/sigma = ln(0.8614 m/sigma + 0.6079)
    0.33
    """
    x = np.asarray(x, np.float64).ravel()
    m = float(np.max(np.abs(x))) if x.size else 0.0
    sigma = float(np.std(x)) if x.size else 0.0
    if m == 0.0 or sigma == 0.0:
        return m, m
    p = PWLQ_RULES[rule](m / sigma) * sigma
    return float(min(max(p, 1e-3 * m), m)), m


def _pwlq_rule_levels(rule: str):
    def levels(x: np.ndarray, n_levels: int) -> np.ndarray:
        if n_levels < 8:  # the rules are fitted to the paper's 3- and 4-bit tables; a 2-bit one searches
            return pwlq_levels(x, n_levels)
        p, m = pwlq_breakpoint(x, rule)
        top = min(max(m, 1.0), 127.0)
        return _snap(_pwlq_real(p * top / m if m else top, top, n_levels))

    levels.__doc__ = f"PWLQ levels with the ``{rule}`` breakpoint rule (:func:`pwlq_breakpoint`), no search."
    return levels


def mse_levels(x: np.ndarray, n_levels: int) -> np.ndarray:
    """The levels on the int8 grid with the least squared error on ``x`` (exact 1-D k-means).

    Dynamic programming over the 256 int8 candidates: ``D[k][j]`` is the least
    error of the values at or below candidate ``j`` with ``k`` levels, the
    highest being ``j``; between two consecutive levels each value goes to the
    nearer one. See :func:`uniform_levels` for the parameters.
    """
    xs = np.sort(np.asarray(x, np.float64).ravel())
    if xs.size == 0:
        return np.zeros(1, np.int64)
    nearest = _snap(xs)
    if nearest.size <= n_levels:  # every value at its nearest grid point: no error beyond rounding
        return nearest
    # Levels outside [min x, max x] (rounded outwards) never help.
    lo = int(np.clip(np.floor(xs[0]), -128, 127))
    hi = int(np.clip(np.ceil(xs[-1]), -128, 127))
    cand = np.arange(lo, hi + 1, dtype=np.float64)
    n_c = cand.size
    # Prefix sums of count, sum, sum of squares at every boundary t (values <= t).
    c1 = np.concatenate([[0.0], np.cumsum(xs)])
    c2 = np.concatenate([[0.0], np.cumsum(xs * xs)])

    def stats(t):
        i = np.searchsorted(xs, t, side="right")
        return i.astype(np.float64), c1[i], c2[i]

    def cost(lo_t, hi_t, level):
        """Squared error of the values in (lo_t, hi_t] all assigned to ``level``."""
        n_a, s_a, q_a = stats(lo_t)
        n_b, s_b, q_b = stats(hi_t)
        n, s, q = n_b - n_a, s_b - s_a, q_b - q_a
        return np.maximum(q - 2 * level * s + level * level * n, 0.0)

    a = cand[:, None]
    b = cand[None, :]
    mid = (a + b) / 2
    pair = cost(a, mid, a) + cost(mid, b, b)  # values in (a, b] between consecutive levels a < b
    pair = np.where(b > a, pair, np.inf)
    left = cost(np.full(n_c, -np.inf), cand, cand)    # values <= the lowest level
    right = cost(cand, np.full(n_c, np.inf), cand)    # values above the highest level
    k_max = min(n_levels, n_c)
    dp = left.copy()
    back = []
    best_total, best_k = dp + right, 1
    best_end = int(np.argmin(best_total))
    best_val = best_total[best_end]
    for k in range(2, k_max + 1):
        tot = dp[:, None] + pair
        arg = np.argmin(tot, axis=0)
        dp = tot[arg, np.arange(n_c)]
        back.append(arg)
        final = dp + right
        j = int(np.argmin(final))
        if final[j] < best_val - 1e-9 * max(best_val, 1.0):  # more levels only when they help
            best_val, best_k, best_end = final[j], k, j
    idx = [best_end]
    for k in range(best_k, 1, -1):
        idx.append(int(back[k - 2][idx[-1]]))
    return np.sort(cand[idx]).astype(np.int64)


def user_levels(x: np.ndarray, n_levels: int, user_lut: np.ndarray) -> np.ndarray:
    """The user's levels (sorted, distinct); ``x`` is not used.

    Raises
    ------
    ConfigError
        More distinct levels than ``n_levels``.
    """
    lv = np.unique(np.asarray(user_lut, np.int64))
    if lv.size > n_levels:
        raise ConfigError(f"user_lut: {lv.size} distinct levels, expected at most {n_levels}")
    return lv


_FAMILY_FUNCS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "uniform": uniform_levels, "pot": pot_levels, "apot": apot_levels, "pwlq": pwlq_levels, "mse": mse_levels,
    "pwlq_gauss": _pwlq_rule_levels("gauss"), "pwlq_laplace": _pwlq_rule_levels("laplace"),
}


def _power_of_two_alpha(x: np.ndarray, raw_shape: np.ndarray) -> np.ndarray:
    """Levels ``round(2^k * raw_shape)`` for the ``k`` in 0..6 with the least squared error on ``x``
    (``raw_shape``: powers of two, or sums of two, largest magnitude at most 1.5)."""
    xs = _search_sample(x)
    candidates = [_snap(2.0 ** k * raw_shape) for k in range(7)]
    return min(candidates, key=lambda lv: squared_error(xs, lv))


def _shift_levels(family: str, x: np.ndarray, n_levels: int) -> np.ndarray:
    """``pot`` / ``apot`` levels that shift / shift-add PEs decode exactly (power-of-two ``alpha``)."""
    if n_levels == 2:
        return _power_of_two_alpha(x, np.array([-1.0, 1.0]))
    m = (n_levels - 1) // 2
    mags = 2.0 ** -np.arange(m) if family == "pot" else _apot_magnitudes(m, normalize=False)
    return _power_of_two_alpha(x, np.concatenate([-mags, [0.0], mags]))


def family_levels(family: str, x: np.ndarray, n_levels: int, user_lut: np.ndarray | None = None,
                  pe_kind: str = "general") -> np.ndarray:
    """The sorted distinct int8 levels of ``family`` fitted to the scaled weights ``x``.

    Parameters
    ----------
    family : str
        One of :data:`FAMILIES`.
    x : numpy.ndarray
        Weights already scaled onto the int8 grid.
    n_levels : int
        At most this many levels.
    user_lut : numpy.ndarray, optional
        The levels of the ``user`` family.
    pe_kind : str
        The PEs' kind (``AcceleratorConfig.pe_kind``): ``shift``/``shift_add`` fit ``pot``/``apot``
        with a power-of-two ``alpha`` (see :data:`PE_FAMILIES`).

    Returns
    -------
    numpy.ndarray
        int64, sorted, distinct, within -128..127.
    """
    if family == "user":
        return user_levels(x, n_levels, user_lut)
    if pe_kind != "general" and family in ("pot", "apot"):
        return _shift_levels(family, np.asarray(x, np.float64).ravel(), n_levels)
    return _FAMILY_FUNCS[family](np.asarray(x, np.float64).ravel(), n_levels)
