"""Weight quantization: a LUT of signed int8 levels, a power-of-two exponent, a code per weight.

A MAC layer's weights are stored as ``codes`` (unsigned ``weight_bits``-bit
integers) that the datapath expands through a LUT of signed int8 levels; the
real weight of output channel ``n`` is ``lut[row(n), code] * step[n]`` with
``step[n] = 2**-exponent[n]`` (DESIGN.md, the datapath contract).

How a tensor is quantized (:func:`quantize_weights`):

1. **Exponents.** With ``granularity="channel"`` each output channel ``n`` gets
   the exponent ``e_n = floor(log2(127.5 / max|w_n|))`` (one exponent for the
   whole layer with ``granularity="layer"``), so that the largest weight lands
   in 64..127 on the int8 grid (see step 2 for when a table ends up finer). A channel whose exponent would be more than
   :data:`MAX_EXPONENT_SPREAD` finer than the layer's coarsest is capped there
   (its weights are negligible and quantize to the level nearest zero), so the
   requantization shifts stay short. An all-zero channel gets the layer's finest
   live exponent.
2. **Levels.** The weights, scaled to the int8 grid by their exponent, are
   handed to a *LUT family*: a function that returns the sorted distinct int8
   levels (at most ``levels`` of them). With ``lut_scope="layer"`` one table is
   fitted to the pooled scaled weights of all channels; with
   ``lut_scope="channel"`` one table per output channel. Any real factor between
   two powers of two lives in the levels themselves ("the LUT as a free
   mantissa", LITERATURE.md): the parametric families search that factor (or
   PWLQ's breakpoint) for the least squared error. When a fitted table's
   largest level is below 64 (a family that clips), the exponents of its
   channels are made finer by one and the table refitted, as long as the
   error shrinks, so the largest level lands in 64..127.
3. **Codes.** Each weight takes the code of its nearest level; a weight exactly
   halfway between two levels takes the one nearer zero (deterministic and
   sign-symmetric). Unused LUT entries repeat the largest level, so a table
   never holds more distinct values than the family chose.

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
``mse``
    The MSE-optimal codebook on the int8 grid: Lloyd-Max / k-means solved
    *exactly* in one dimension by dynamic programming over the 256 int8
    candidates (k-means' optimum restricted to the grid, no local minima).
``user``
    The levels given in ``user_lut`` (absolute int8 values); the exponents are
    searched (``floor(log2(max|level| / max|w|))`` and its neighbours) for the
    least squared error.

With ``power_of_two=False`` (the ``multiply_shift`` baseline) the scale of a
channel (or layer) is the free float ``max|w| / 127``; everything else is
the same, so ``uniform`` with per-channel float steps is the classic
per-channel symmetric uniform quantizer.

Measured on the bundled models' weights at 4 bits, per-channel exponents and a
shared LUT, ``mse`` has the highest SQNR of all families (docs/QUANTIZATION.md,
"LUT families"), so it is :data:`DEFAULT_FAMILY`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, ModelImportError

__all__ = ["FAMILIES", "DEFAULT_FAMILY", "GRANULARITIES", "LUT_SCOPES", "MAX_EXPONENT_SPREAD", "WeightQuant",
           "quantize_weights", "family_levels", "uniform_levels", "pot_levels", "apot_levels", "pwlq_levels",
           "mse_levels", "user_levels", "nearest_codes", "sqnr_db"]

#: Names of the LUT families (the values ``accel quantize --lut`` accepts).
FAMILIES = ("uniform", "pot", "apot", "pwlq", "mse", "user")
#: The best general-purpose family at 4-bit weights (highest SQNR on the bundled models).
DEFAULT_FAMILY = "mse"
GRANULARITIES = ("layer", "channel")
LUT_SCOPES = ("layer", "channel")
#: A channel's exponent is at most this much finer than the layer's coarsest one.
MAX_EXPONENT_SPREAD = 16

_INT8_TOP = 127.5      # scaled weights stay within +-127.5 so that they round into int8
_SEARCH_POINTS = 8192  # the parameter searches run on at most this many (quantile) samples


@dataclass
class WeightQuant:
    """A quantized weight tensor: LUT codes, the LUT, and a step per output channel.

    Attributes
    ----------
    codes : numpy.ndarray
        ``uint8``, the shape of the weight tensor (N, ...), values ``< 2**weight_bits``.
    lut : numpy.ndarray
        ``int8``, shape ``(1, 2**weight_bits)`` (one table shared by the layer)
        or ``(N, 2**weight_bits)`` (one per output channel).
    step : numpy.ndarray
        ``float64`` (N,): ``w_real[n, ...] ~= lut[row(n), codes[n, ...]] * step[n]``.
    """

    codes: np.ndarray
    lut: np.ndarray
    step: np.ndarray

    @property
    def exponent(self) -> np.ndarray:
        """``int64`` (N,) with ``step == 2.0 ** -exponent``.

        Raises
        ------
        ValueError
            A step is not a power of two (the ``power_of_two=False`` baseline).
        """
        step = np.asarray(self.step, np.float64)
        mant, ex = np.frexp(step)
        if not np.all(mant == 0.5):
            n = int(np.argmax(mant != 0.5))
            raise ValueError(f"step[{n}] = {step[n]!r} is not a power of two")
        return (1 - ex).astype(np.int64)

    def weights(self) -> np.ndarray:
        """The integer weights ``lut[row(n), codes]`` (int64, shape of ``codes``)."""
        n = self.codes.shape[0]
        rows = np.zeros(n, np.int64) if self.lut.shape[0] == 1 else np.arange(n)
        flat = self.codes.reshape(n, -1).astype(np.int64)
        return self.lut.astype(np.int64)[rows[:, None], flat].reshape(self.codes.shape)

    def dequantize(self) -> np.ndarray:
        """The float64 weights as the datapath sees them: ``lut[row(n), codes] * step[n]``."""
        w = self.weights().astype(np.float64)
        return w * np.asarray(self.step, np.float64).reshape((-1,) + (1,) * (w.ndim - 1))


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


def _sq_error(x: np.ndarray, levels: np.ndarray) -> float:
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
            err = _sq_error(xs, lv)
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


def _apot_magnitudes(n_mags: int) -> np.ndarray:
    """The ``n_mags`` largest nonzero APoT magnitudes (normalized to a largest of 1)."""
    bits = max(1, math.ceil(math.log2(n_mags + 1)))  # magnitude bits (zero included)
    k1 = (bits + 1) // 2
    k2 = bits - k1
    t1 = np.array([0.0] + [2.0 ** -(2 * j) for j in range((1 << k1) - 1)])
    t2 = np.array([0.0] + [2.0 ** -(2 * j + 1) for j in range((1 << k2) - 1)])
    mags = np.unique((t1[:, None] + t2[None, :]).ravel())
    mags = mags[mags > 0][::-1][:n_mags]
    return mags / mags.max()


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
        return _sq_error(xs, lv), lv

    coarse = np.round(np.arange(0.05, 1.0001, 0.05), 4)
    errs = [err(r)[0] for r in coarse]
    r0 = float(coarse[int(np.argmin(errs))])
    fine = np.round(np.arange(max(r0 - 0.05, 0.005), min(r0 + 0.05, 1.0) + 1e-9, 0.005), 4)
    best = min((err(r) for r in fine), key=lambda t: t[0])
    return best[1]


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
}


def family_levels(family: str, x: np.ndarray, n_levels: int, user_lut: np.ndarray | None = None) -> np.ndarray:
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

    Returns
    -------
    numpy.ndarray
        int64, sorted, distinct, within -128..127.
    """
    if family == "user":
        return user_levels(x, n_levels, user_lut)
    return _FAMILY_FUNCS[family](np.asarray(x, np.float64).ravel(), n_levels)


# ----------------------------------------------------------------------------------------------
# The quantizer


def _check_args(family, weight_bits, granularity, lut_scope, levels, user_lut, name):
    if family not in FAMILIES:
        raise ConfigError(f"layer {name!r}: LUT family {family!r} is not one of {', '.join(FAMILIES)}")
    if isinstance(weight_bits, bool) or not isinstance(weight_bits, (int, np.integer)) or not 2 <= weight_bits <= 8:
        raise ConfigError(f"layer {name!r}: weight_bits {weight_bits!r}, expected an integer in 2..8")
    if granularity not in GRANULARITIES:
        raise ConfigError(f"layer {name!r}: granularity {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    if lut_scope not in LUT_SCOPES:
        raise ConfigError(f"layer {name!r}: lut_scope {lut_scope!r} is not one of {', '.join(LUT_SCOPES)}")
    entries = 1 << int(weight_bits)
    if levels is not None and (isinstance(levels, bool) or not isinstance(levels, (int, np.integer))
                               or not 2 <= levels <= entries):
        raise ConfigError(f"layer {name!r}: levels {levels!r}, expected an integer in 2..{entries} "
                          f"for {weight_bits}-bit weights")
    n_levels = entries if levels is None else int(levels)
    if family == "user":
        if user_lut is None:
            raise ConfigError(f"layer {name!r}: LUT family 'user' needs user_lut (the int8 levels)")
        u = np.asarray(user_lut)
        if u.ndim != 1 or u.size == 0 or not np.issubdtype(u.dtype, np.number) or not np.all(np.isfinite(u)):
            raise ConfigError(f"layer {name!r}: user_lut must be a non-empty 1-D list of int8 levels, got {user_lut!r}")
        if np.any(u != np.round(u)) or u.min() < -128 or u.max() > 127:
            raise ConfigError(f"layer {name!r}: user_lut levels must be integers in -128..127, got {u.tolist()}")
        if np.unique(u).size > n_levels:
            raise ConfigError(f"layer {name!r}: user_lut has {np.unique(u).size} distinct levels, expected at most "
                              f"{n_levels}")
        if not np.any(u != 0):
            raise ConfigError(f"layer {name!r}: user_lut holds only zeros")
    return entries, n_levels


def _channel_scales(flat: np.ndarray, granularity: str, power_of_two: bool, top: float) -> np.ndarray:
    """Factor per channel that brings the weights onto the int8 grid (largest ~ ``top``)."""
    n = flat.shape[0]
    amax = np.max(np.abs(flat), axis=1)
    if granularity == "layer":
        amax = np.full(n, amax.max())
    live = amax > 0
    factor = np.ones(n, np.float64)
    if not live.any():
        return factor
    if power_of_two:
        e = np.floor(np.log2(top / amax[live]))
        e = np.minimum(e, e.min() + MAX_EXPONENT_SPREAD)
        exps = np.zeros(n)
        exps[live] = e
        exps[~live] = e.max()
        factor = np.ldexp(1.0, exps.astype(int))
    else:
        factor[live] = top / amax[live]
        factor[~live] = factor[live].max()
    return factor


def _fit_table(family: str, x: np.ndarray, n_levels: int) -> tuple[np.ndarray, int]:
    """Levels for ``x`` and the number of doublings of its scale (finer exponents) that were taken.

    While the largest level is below 64 the weights are scaled by 2 more (the
    exponent one finer) and the table refitted, kept when the error (in the
    weights' own units) is smaller: the table then uses the int8 range.
    """
    lv = family_levels(family, x, n_levels)
    err = _sq_error(x, lv)
    d = 0
    while np.abs(lv).max() < 64 and d < 6 and err > 0:
        x2 = x * 2.0 ** (d + 1)
        lv2 = family_levels(family, x2, n_levels)
        err2 = _sq_error(x2, lv2) / 4.0 ** (d + 1)
        if err2 >= err:  # only a strictly smaller error justifies a longer shift
            break
        lv, err, d = lv2, err2, d + 1
    return lv, d


def _assign(scaled_rows: list[np.ndarray], level_rows: list[np.ndarray], entries: int):
    codes = [nearest_codes(x, lv).astype(np.uint8) for x, lv in zip(scaled_rows, level_rows)]
    lut = np.empty((len(level_rows), entries), np.int8)
    for r, lv in enumerate(level_rows):
        lut[r, :lv.size] = lv
        lut[r, lv.size:] = lv[-1]
    return codes, lut


def _user_factors(flat, granularity, power_of_two, lv):
    """Scale factors for the user's fixed levels: exponents searched per channel (or layer)."""
    top = float(np.max(np.abs(lv)))
    base = _channel_scales(flat, granularity, power_of_two, top)
    if not power_of_two:
        return base
    n = flat.shape[0]
    cands = [base * 2.0 ** d for d in (-2, -1, 0, 1, 2)]
    errs = []
    for f in cands:
        if granularity == "layer":
            s = flat * f[:, None]
            e = (s - lv[nearest_codes(s, lv)]) / f[:, None]
            errs.append(np.full(n, np.sum(e * e)))
        else:
            s = flat * f[:, None]
            e = (s - lv[nearest_codes(s, lv)]) / f[:, None]
            errs.append(np.sum(e * e, axis=1))
    pick = np.argmin(np.stack(errs), axis=0)
    return np.stack(cands)[pick, np.arange(n)]


def quantize_weights(weights: np.ndarray, *, family: str = DEFAULT_FAMILY, weight_bits: int = 4,
                     granularity: str = "channel", lut_scope: str = "layer", levels: int | None = None,
                     user_lut: np.ndarray | None = None, power_of_two: bool = True,
                     name: str = "weights") -> WeightQuant:
    """Quantize a float weight tensor (output channel first) onto LUT codes + per-channel steps.

    Parameters
    ----------
    weights : numpy.ndarray
        Float weights, output channel first: (N, C/g, KH, KW) or (N, K).
    family : str
        LUT family, one of :data:`FAMILIES` (default :data:`DEFAULT_FAMILY`).
    weight_bits : int
        Code width, 2..8; the LUT has ``2**weight_bits`` entries.
    granularity : str
        ``"channel"``: one power-of-two exponent per output channel;
        ``"layer"``: one for the layer.
    lut_scope : str
        ``"layer"``: one LUT shared by the layer (fitted to all channels, each
        scaled by its exponent); ``"channel"``: one LUT per output channel.
    levels : int, optional
        Use at most this many distinct levels (2..``2**weight_bits``), e.g.
        2- or 3-bit weights on 4-bit hardware.
    user_lut : numpy.ndarray, optional
        For family ``"user"``: the int8 levels.
    power_of_two : bool
        ``False``: the ``multiply_shift`` baseline, ``step[n]`` is a free float.
    name : str
        The layer's name, for error messages.

    Returns
    -------
    WeightQuant

    Raises
    ------
    ConfigError
        Unknown family, granularity or LUT scope; bit width or level count out of
        range; a missing or malformed ``user_lut``.
    ModelImportError
        Weights that are empty, not at least 2-D, or hold NaN or Inf.

    Examples
    --------
    >>> w = np.random.default_rng(0).normal(size=(8, 4, 3, 3)) * 0.1
    >>> q = quantize_weights(w, family="uniform", weight_bits=4)
    >>> q.codes.shape, q.lut.shape, q.exponent.shape
    ((8, 4, 3, 3), (1, 16), (8,))
    >>> err = q.dequantize() - w
    >>> bool(10 * np.log10((w ** 2).sum() / (err ** 2).sum()) > 18)  # weight SQNR in dB
    True
    """
    entries, n_levels = _check_args(family, weight_bits, granularity, lut_scope, levels, user_lut, name)
    try:
        w = np.asarray(weights, np.float64)
    except (TypeError, ValueError) as exc:
        raise ModelImportError(f"layer {name!r}: weights are not a numeric array ({exc})") from None
    if w.ndim < 2 or w.size == 0:
        raise ModelImportError(f"layer {name!r}: weights of shape {w.shape}, expected a non-empty tensor with the "
                               f"output channel first (N, ...)")
    if not np.all(np.isfinite(w)):
        bad = int(np.argmax(~np.isfinite(w).reshape(w.shape[0], -1).all(axis=1)))
        raise ModelImportError(f"layer {name!r}: weights hold NaN or Inf (output channel {bad})")
    n = w.shape[0]
    flat = w.reshape(n, -1)

    if family == "user":
        lv = np.unique(np.asarray(user_lut, np.float64).round().astype(np.int64))
        factor = _user_factors(flat, granularity, power_of_two, lv.astype(np.float64))
        scaled = flat * factor[:, None]
        level_rows = [lv] if lut_scope == "layer" else [lv] * n
    else:
        factor = _channel_scales(flat, granularity, power_of_two, _INT8_TOP if power_of_two else 127.0)
        scaled = flat * factor[:, None]
        if lut_scope == "layer":
            lv, d = _fit_table(family, scaled.ravel(), n_levels)
            level_rows = [lv]
            factor = factor * 2.0 ** d
        else:
            fits = [_fit_table(family, scaled[i], n_levels) for i in range(n)]
            doublings = np.array([d for _, d in fits])
            level_rows = [lv for lv, _ in fits]
            if granularity == "layer":  # one exponent for the layer: the doublings all channels accept
                d = int(doublings.min())
                level_rows = [lv if doublings[i] == d else family_levels(family, scaled[i] * 2.0 ** d, n_levels)
                              for i, lv in enumerate(level_rows)]
                doublings[:] = d
            factor = factor * 2.0 ** doublings
        scaled = flat * factor[:, None]
    if lut_scope == "layer":
        codes, lut = _assign([scaled], level_rows, entries)
        codes = codes[0]
    else:
        codes, lut = _assign(list(scaled), level_rows, entries)
        codes = np.stack(codes)
    return WeightQuant(codes=codes.reshape(w.shape).astype(np.uint8), lut=lut, step=1.0 / factor)


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio ``10 log10(sum(ref^2) / sum((ref - approx)^2))`` in dB.

    Returns ``inf`` when the two are equal.
    """
    ref = np.asarray(reference, np.float64)
    err = float(np.sum((ref - np.asarray(approx, np.float64)) ** 2))
    sig = float(np.sum(ref * ref))
    if err == 0.0:
        return math.inf
    return 10.0 * math.log10(max(sig, 1e-300) / err)
