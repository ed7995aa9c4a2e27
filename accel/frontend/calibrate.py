"""Calibration: a power-of-two exponent per activation tensor from a sample of data.

A tensor ``x`` is stored as integers ``q = clamp(round(x * 2^e), lo, hi)``; the
exponent ``e`` is chosen per tensor from the float activations of a seeded
sample of calibration images (default 256):

* ``minmax``: the largest ``e`` that keeps the observed range inside ``[lo, hi]``
  (no clipping on the sample);
* ``percentile``: the same on the 99.99th percentile of ``|x|`` (clips outliers);
* ``mse``: of ``e_minmax .. e_minmax + 4``, the one with the least squared
  error of quantize-then-dequantize on the sample (trades clipping against
  resolution; for power-of-two steps this is the whole useful range).

The mean and standard deviation of the calibration images travel with the model
(:func:`input_statistics`), so that data with grossly different statistics (one set
normalized, the other not) draws a warning (:func:`warn_if_statistics_differ`)
instead of silently poor accuracy.

Tensors whose producer ends in ReLU/ReLU6 (or a Clip with a non-negative lower
bound), and pools/reshapes of them, are unsigned (``uint8``: one more bit of
resolution); every other tensor, and always the network input, is signed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import DataError, ModelImportError
from .graph import FloatGraph, run_float

__all__ = ["METHODS", "DEFAULT_METHOD", "DEFAULT_CALIB_SIZE", "STATISTICS_FACTOR", "Calibration",
           "tensor_signedness", "choose_exponent", "choose_offset", "calibrate", "input_statistics",
           "statistics_mismatch", "warn_if_statistics_differ"]

_log = logging.getLogger(__name__)

#: Calibration methods.
METHODS = ("minmax", "percentile", "mse")
#: Default method: on the bundled models it ties ``minmax`` (within one test image, W8A8 and W4A8,
#: docs/RESULTS.md "Calibration methods") while a rare outlier activation cannot halve the
#: resolution of a whole tensor; ``mse`` was 0.1-0.2 points lower at W8A8 there.
DEFAULT_METHOD = "percentile"
#: Default number of calibration images.
DEFAULT_CALIB_SIZE = 256
#: Percentile of |x| that the ``percentile`` method keeps unclipped.
PERCENTILE = 99.99
#: Values per tensor that the percentile and MSE searches look at (a seeded subsample).
_MAX_VALUES = 1 << 20
#: Input statistics differ grossly when their standard deviations differ by more than this
#: factor or their means by more than this many (larger) standard deviations. Normalizing
#: MNIST ((x - 0.1307) / 0.3081) changes the standard deviation 3.2 times; two samples of one
#: set differ by a few percent.
STATISTICS_FACTOR = 2.0
_E_MIN, _E_MAX = -24, 24


@dataclass
class Calibration:
    """Per-tensor calibration result.

    Members
    -------
    exponents : dict
        Tensor name -> power-of-two exponent ``e`` (``x_real = q * 2^-e``).
    signed : dict
        Tensor name -> whether the tensor holds negative values (int8) or not (uint8).
    ranges : dict
        Tensor name -> observed ``(min, max)`` on the calibration sample.
    method : str
        The method used.
    images : int
        Number of calibration images.
    input_statistics : dict
        ``mean`` and ``std`` of the calibration images' values (:func:`input_statistics`).
    offsets : dict
        Tensor name -> integer activation offset ``o`` (``x_real = (q + o) * 2^-e``); absent means 0.
        Only tensors whose offset folds exactly into biases and pad values have one
        (:func:`~accel.frontend.quantize.offset_groups`).
    bits : dict
        Tensor name -> activation width narrower than the configuration's ``act_bits`` (per-layer
        mixed precision, :mod:`accel.precision`); absent means ``act_bits``. The exponents of these
        tensors must have been chosen for that width.
    """

    exponents: dict[str, int]
    signed: dict[str, bool]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    method: str = DEFAULT_METHOD
    images: int = 0
    input_statistics: dict[str, float] = field(default_factory=dict)
    offsets: dict[str, int] = field(default_factory=dict)
    bits: dict[str, int] = field(default_factory=dict)


def tensor_signedness(graph: FloatGraph) -> dict[str, bool]:
    """Whether each tensor of ``graph`` can be negative (``True``: int8) or not (``False``: uint8)."""
    signed = {graph.input: True}
    for node in graph.nodes:
        if node.act is not None and node.act[0] >= 0:
            signed[node.output] = False
        elif node.op in ("max_pool", "avg_pool", "global_avg_pool", "flatten", "reshape"):
            signed[node.output] = signed[node.inputs[0]]
        elif node.op == "concat":
            signed[node.output] = any(signed[t] for t in node.inputs)
        else:
            signed[node.output] = True
    return signed


def _quant_error(values: np.ndarray, e: int, lo: int, hi: int) -> float:
    scale = math.ldexp(1.0, e)
    q = np.clip(np.round(values * scale), lo, hi)
    return float(np.mean((q / scale - values) ** 2))


def choose_exponent(values: np.ndarray, lo: int, hi: int, method: str = DEFAULT_METHOD) -> int:
    """The power-of-two exponent for a tensor with sample ``values`` stored in ``[lo, hi]``.

    Parameters
    ----------
    values : numpy.ndarray
        Float samples of the tensor (any shape).
    lo, hi : int
        Integer range of the stored tensor (e.g. -128, 127).
    method : str
        One of :data:`METHODS`.

    Returns
    -------
    int
        ``e`` such that ``round(x * 2^e)`` fits ``[lo, hi]`` (``minmax``) or best
        trades clipping for resolution (``percentile``, ``mse``).

    Examples
    --------
    >>> choose_exponent(np.array([0.0, 0.9, 1.0]), 0, 255, "minmax")
    7
    """
    if method not in METHODS:
        raise ModelImportError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")
    values = np.asarray(values, np.float64).reshape(-1)

    def fit(top: float, bottom: float) -> int:
        bounds = []
        if top > 0:
            bounds.append(math.log2(hi / top) if hi > 0 else -math.inf)
        if bottom < 0:
            bounds.append(math.log2(lo / bottom) if lo < 0 else -math.inf)
        if not bounds:
            return _E_MAX
        return int(min(max(math.floor(min(bounds)), _E_MIN), _E_MAX))

    if values.size == 0:
        return 0
    e_minmax = fit(float(values.max()), float(values.min()))
    if method == "minmax":
        return e_minmax
    if method == "percentile":
        top = float(np.percentile(np.abs(values), PERCENTILE))
        return fit(top if values.max() > 0 else 0.0, -top if values.min() < 0 else 0.0)
    candidates = range(e_minmax, min(e_minmax + 5, _E_MAX + 1))
    errors = [_quant_error(values, e, lo, hi) for e in candidates]
    return candidates[int(np.argmin(errors))]


def choose_offset(values: np.ndarray, lo: int, hi: int, exponent: int, *, spread: int = 3,
                  max_values: int = 1 << 14, seed: int = 0) -> tuple[int, int]:
    """The exponent and integer offset with the least squared error, LSQ+'s MSE initialisation on
    power-of-two steps: ``x ~ (clamp(round(x * 2^e) - o, lo, hi) + o) * 2^-e``.

    Exponents ``exponent - spread .. exponent + spread`` are tried, each with every offset that
    keeps zero a code (``-hi <= o <= -lo``: the padding value ``-o``, the real zero, must be an
    activation the array takes), on a seeded subsample of ``max_values`` values.

    Returns
    -------
    (int, int)
        ``(e, o)``.

    Examples
    --------
    >>> choose_offset(np.array([0.0, 1.0, 2.0, 3.0]), -2, 1, 0)
    (0, 2)
    """
    values = np.asarray(values, np.float64).reshape(-1)
    if values.size > max_values:
        values = values[np.random.default_rng(seed).choice(values.size, max_values, replace=False)]
    candidates = np.array(sorted(range(-hi, -lo + 1), key=abs), np.float64)  # ties: the smallest |o|
    best = (math.inf, exponent, 0)
    for e in range(max(exponent - spread, _E_MIN), min(exponent + spread, _E_MAX) + 1):
        scaled = np.round(values * math.ldexp(1.0, e))[None, :]
        q = np.clip(scaled - candidates[:, None], lo, hi) + candidates[:, None]
        errors = np.mean((q * math.ldexp(1.0, -e) - values[None, :]) ** 2, axis=1)
        i = int(np.argmin(errors))
        if errors[i] < best[0] - 1e-15:
            best = (float(errors[i]), e, int(candidates[i]))
    return best[1], best[2]


def calibrate(graph: FloatGraph, x: np.ndarray, *, method: str = DEFAULT_METHOD, act_bits: int = 8,
              size: int = DEFAULT_CALIB_SIZE, seed: int = 0, progress: bool = False) -> Calibration:
    """Choose a power-of-two exponent for every tensor of ``graph`` from calibration images.

    Parameters
    ----------
    graph : FloatGraph
        The imported network.
    x : numpy.ndarray
        Calibration images (N, ...), normalized as the model expects; a seeded
        sample of ``size`` of them is used.
    method : str
        ``minmax``, ``percentile`` (default) or ``mse``.
    act_bits : int
        Activation width: signed tensors use ``[-2^(b-1), 2^(b-1) - 1]``,
        unsigned ones ``[0, 2^b - 1]``.
    size, seed : int
        Sample size and seed.
    progress : bool
        Show a progress bar over the tensors.

    Returns
    -------
    Calibration

    Raises
    ------
    DataError
        Empty calibration set, or images whose shape does not match the model input.
    """
    from ..data import sample

    if method not in METHODS:
        raise ModelImportError(f"calibration method {method!r} is not one of {', '.join(METHODS)}")
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[0] == 0:
        raise DataError("the calibration set is empty; expected at least one image")
    if tuple(x.shape[1:]) != graph.input_shape:
        raise DataError(f"calibration images have shape {tuple(x.shape[1:])}; model {graph.name!r} expects "
                        f"{graph.input_shape}")
    x = sample(x, size, seed)
    values = run_float(graph, x, return_all=True)
    signed = tensor_signedness(graph)
    rng = np.random.default_rng(seed)
    exponents, ranges = {}, {}
    names = [graph.input] + [n.output for n in graph.nodes]
    if progress:
        from tqdm import tqdm

        names = tqdm(names, desc="calibrate", unit="tensor", leave=False)
    for name in names:
        v = values[name].reshape(-1)
        ranges[name] = (float(v.min()), float(v.max()))
        if v.size > _MAX_VALUES and method != "minmax":
            v = v[rng.choice(v.size, _MAX_VALUES, replace=False)]
        lo, hi = (-(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1) if signed[name] else (0, (1 << act_bits) - 1)
        exponents[name] = choose_exponent(v, lo, hi, method)
    return Calibration(exponents, signed, ranges, method, int(x.shape[0]), input_statistics(x))


def input_statistics(x: np.ndarray, size: int = DEFAULT_CALIB_SIZE, seed: int = 0) -> dict[str, float]:
    """``mean`` and ``std`` of the values of a seeded sample of ``size`` images of ``x``.

    Examples
    --------
    >>> input_statistics(np.array([[0.0, 1.0], [1.0, 0.0]]))
    {'mean': 0.5, 'std': 0.5}
    """
    from ..data import sample

    values = np.asarray(sample(np.asarray(x), size, seed), np.float64)
    return {"mean": round(float(values.mean()), 6), "std": round(float(values.std()), 6)}


def statistics_mismatch(calib: dict[str, float], reference: dict[str, float]) -> str | None:
    """How ``calib`` statistics differ grossly from ``reference`` ones (``None`` when they do not).

    Examples
    --------
    >>> statistics_mismatch({"mean": 0.13, "std": 0.31}, {"mean": 0.0, "std": 1.0})
    'standard deviation 0.31 against 1 (3.2 times)'
    """
    tiny = 1e-12
    low, high = sorted((calib["std"], reference["std"]))
    if high > STATISTICS_FACTOR * max(low, tiny):
        return (f"standard deviation {calib['std']:.3g} against {reference['std']:.3g} "
                f"({high / max(low, tiny):.2g} times)")
    if abs(calib["mean"] - reference["mean"]) > STATISTICS_FACTOR * max(high, tiny):
        return f"mean {calib['mean']:.3g} against {reference['mean']:.3g} (standard deviation {high:.3g})"
    return None


def warn_if_statistics_differ(calib: dict[str, float] | None, calib_name: str, reference: dict[str, float],
                              reference_name: str) -> str | None:
    """Log one warning line when the calibration data's statistics differ grossly from the
    reference data's (say one set normalized and the other not); return the line, if any."""
    if not calib:
        return None
    mismatch = statistics_mismatch(calib, reference)
    if mismatch is None:
        return None
    line = (f"calibration data {calib_name} differs grossly from {reference_name}: {mismatch}; is one "
            f"normalized and the other not? Activation exponents fitted to one do not suit the other")
    _log.warning(line)
    return line
