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
   handed to a *LUT family* (:mod:`accel.frontend.lut`): a function that returns the sorted distinct int8
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

With ``power_of_two=False`` (the ``multiply_shift`` baseline) the scale of a
channel (or layer) is the free float ``max|w| / 127``; everything else is
the same, so ``uniform`` with per-channel float steps is the classic
per-channel symmetric uniform quantizer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..datapath import pe_decodable
from ..errors import ConfigError, ModelImportError
from .lut import DEFAULT_FAMILY, FAMILIES, PE_FAMILIES, family_levels, nearest_codes, squared_error

__all__ = ["GRANULARITIES", "LUT_SCOPES", "MAX_EXPONENT_SPREAD", "WeightQuant", "check_pe_family",
           "quantize_weights"]

GRANULARITIES = ("layer", "channel")
LUT_SCOPES = ("layer", "channel")
#: A channel's exponent is at most this much finer than the layer's coarsest one.
MAX_EXPONENT_SPREAD = 16

_INT8_TOP = 127.5      # scaled weights stay within +-127.5 so that they round into int8


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
# The quantizer


def check_pe_family(family: str, pe_kind: str, user_lut=None) -> None:
    """:class:`ConfigError` (one line) unless the ``pe_kind`` PEs decode ``family`` (and every level
    of a ``user`` LUT); checked before any import or calibration work."""
    if pe_kind not in PE_FAMILIES:
        raise ConfigError(f"pe_kind {pe_kind!r} is not one of {', '.join(PE_FAMILIES)}")
    if family not in PE_FAMILIES[pe_kind]:
        raise ConfigError(f"LUT family {family!r} cannot be decoded by the {pe_kind!r} PEs (config.pe_kind); "
                          f"use --lut {' or '.join(PE_FAMILIES[pe_kind])}")
    if family == "user" and user_lut is not None:
        u = np.asarray(user_lut)
        bad = u[~pe_decodable(u, pe_kind)] if np.issubdtype(u.dtype, np.integer) else u[:0]
        if bad.size:
            raise ConfigError(f"user_lut level {int(bad[0])} cannot be decoded by the {pe_kind!r} PEs "
                              f"(config.pe_kind): 'shift' takes 0 and +-2^e, 'shift_add' sums of two")


def _check_args(family, weight_bits, granularity, lut_scope, levels, user_lut, name, pe_kind="general"):
    if family not in FAMILIES:
        raise ConfigError(f"layer {name!r}: LUT family {family!r} is not one of {', '.join(FAMILIES)}")
    check_pe_family(family, pe_kind)
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
        check_pe_family(family, pe_kind, np.round(u).astype(np.int64))
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


def _fit_table(family: str, x: np.ndarray, n_levels: int, pe_kind: str = "general") -> tuple[np.ndarray, int]:
    """Levels for ``x`` and the number of doublings of its scale (finer exponents) that were taken
    (-1: one halving, for a multiplier-free PE's table, whose largest level is a power of two).

    While the largest level is below 64 the weights are scaled by 2 more (the
    exponent one finer) and the table refitted, kept when the error (in the
    weights' own units) is smaller: the table then uses the int8 range.
    """
    lv = family_levels(family, x, n_levels, pe_kind=pe_kind)
    err = squared_error(x, lv)
    d = 0
    if pe_kind != "general" and np.abs(x).max(initial=0) > np.abs(lv).max(initial=0):
        # A multiplier-free PE's table tops out at a power of two (64): weights scaled up to 127
        # clip to it. One coarser exponent (the weights halved) is kept when it loses less.
        lv2 = family_levels(family, x / 2.0, n_levels, pe_kind=pe_kind)
        err2 = squared_error(x / 2.0, lv2) * 4.0
        if err2 < err:
            return lv2, -1
    while np.abs(lv).max() < 64 and d < 6 and err > 0:
        x2 = x * 2.0 ** (d + 1)
        lv2 = family_levels(family, x2, n_levels, pe_kind=pe_kind)
        err2 = squared_error(x2, lv2) / 4.0 ** (d + 1)
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
                     name: str = "weights", pe_kind: str = "general") -> WeightQuant:
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
    pe_kind : str
        The PEs' kind (``AcceleratorConfig.pe_kind``): the family must be one that it decodes
        (:data:`~accel.frontend.lut.PE_FAMILIES`), and its levels are fitted to be decodable.

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
    entries, n_levels = _check_args(family, weight_bits, granularity, lut_scope, levels, user_lut, name, pe_kind)
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
            lv, d = _fit_table(family, scaled.ravel(), n_levels, pe_kind)
            level_rows = [lv]
            factor = factor * 2.0 ** d
        else:
            fits = [_fit_table(family, scaled[i], n_levels, pe_kind) for i in range(n)]
            doublings = np.array([d for _, d in fits])
            level_rows = [lv for lv, _ in fits]
            if granularity == "layer":  # one exponent for the layer: the doublings all channels accept
                d = int(doublings.min())
                level_rows = [lv if doublings[i] == d
                              else family_levels(family, scaled[i] * 2.0 ** d, n_levels, pe_kind=pe_kind)
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
