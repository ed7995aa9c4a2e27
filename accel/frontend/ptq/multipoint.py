"""Multipoint quantization (Liu et al.) on the LUT datapath: the output channels that lose most get
extra points, under a budget of extra array columns.

A channel's float weights ``w`` are approximated by a sum of LUT vectors at power-of-two steps,
``w ~= sum_j T[c_j] * step * 2^-D_j`` (``D_0 = 0``: the layer's own codes), built greedily: each new
point quantizes the residual ``w - approximation`` onto the channel's LUT levels (nearest level)
at the finer step ``step * 2^-d`` whose ``d`` lowers the error most. The error of a channel is
its pre-activation output error on calibration data, ``r^T C r`` with ``r`` the weight residual
and ``C`` the second moments of the layer's im2col inputs (as the bit-exact engine computes them,
earlier layers already changed). Per layer, ``round(fraction * N)`` points go one at a time to the
channel whose error drops most (a channel may take several).

On the hardware (contract v1.3) the finest lane is the channel's main row and the coarser lanes
are extra rows shifted left onto it, so the channel's accumulator is in units of the finest step:
its requantization shift grows by ``D_max`` and its bias is shifted left by ``D_max`` (the same
real value). A point is only given where that stays legal: ``D_max <= 16``
(:data:`~accel.datapath.POINT_SHIFT_MAX`), the shift within the config's, and no lane, shifted
lane or sum able to leave the accumulator range on any input (so the layer never overflows).
Raw layers (the logits) keep one scale for all channels and get no points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...datapath import POINT_SHIFT_MAX, conv_gemm_groups, im2col
from ...errors import ConfigError
from ...ir import Model
from ..graph import FloatGraph
from ..weights import WeightQuant
from .layerwise import MacLayer, engine_tensor, mac_layers, quantize_network_input

__all__ = ["MultipointResult", "multipoint"]

#: Calibration patches used for a layer's input second moments (a seeded subsample beyond this).
_MAX_PATCHES = 20000


@dataclass
class MultipointResult:
    """Per layer: the points given (extra array columns) out of the budget, and the layer's
    pre-activation output error on the calibration data relative to its output power, before and
    after."""

    points: int
    budget: int
    error_before: float
    error_after: float


def _second_moments(mac: MacLayer, model: Model, x_int: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
    """Per group, ``E[p p^T]`` of the layer's real-valued input patches ``p`` in the contract's k order."""
    layer = mac.layer
    x = engine_tensor(model, x_int, layer.inputs[0])
    scale = np.ldexp(1.0, -(model.tensors[layer.inputs[0]].exponent or 0))
    codes = np.asarray(layer.arrays["codes"])
    if layer.op == "linear":
        patches = [np.asarray(x, np.float64).reshape(len(x), -1)]
    else:
        a = layer.attrs
        cols = im2col(x, codes.shape[2:], a["stride"], a["padding"], a["dilation"], a["pad_value"])
        patches = [p for _, p in conv_gemm_groups(cols, codes.shape[0], a["groups"])]
    out = []
    for p in patches:
        if len(p) > _MAX_PATCHES:
            p = p[rng.choice(len(p), _MAX_PATCHES, replace=False)]
        p = np.asarray(p, np.float64) * scale
        out.append(p.T @ p / len(p))
    return out


class _Channel:
    """One output channel's lanes ``(codes, D)`` and its weight residual."""

    def __init__(self, index: int, w: np.ndarray, codes: np.ndarray, lut_row: np.ndarray, step: float,
                 moments: np.ndarray):
        self.index, self.w, self.lut_row, self.step, self.c = index, w, lut_row, step, moments
        self.levels = np.unique(lut_row)
        self.code_of_level = np.zeros(256, np.int64)  # int8 level + 128 -> the first code holding it
        for v in self.levels:
            self.code_of_level[int(v) + 128] = int(np.flatnonzero(lut_row == v)[0])
        self.lanes = [(codes, 0)]
        self.residual = w - lut_row[codes] * step

    def error(self, residual: np.ndarray | None = None) -> float:
        r = self.residual if residual is None else residual
        return float(r @ self.c @ r)

    def candidate(self, d_max: int, fits) -> tuple[float, np.ndarray, int] | None:
        """The best next point: (error after, codes, D), over the steps ``D`` that ``fits`` allows."""
        best = None
        last = self.lanes[-1][1]
        for d in range(last + 1, d_max + 1):
            u = self.residual / (self.step * np.ldexp(1.0, -d))
            i = np.clip(np.searchsorted(self.levels, u), 1, len(self.levels) - 1)
            nearer_lo = np.abs(u - self.levels[i - 1]) <= np.abs(self.levels[i] - u)
            level = np.where(nearer_lo, self.levels[i - 1], self.levels[i]) if len(self.levels) > 1 else \
                np.full_like(u, self.levels[0])
            if not np.any(level) or not fits(self, level, d):
                continue
            err = self.error(self.residual - level * self.step * np.ldexp(1.0, -d))
            if best is None or err < best[0]:
                best = (err, self.code_of_level[level.astype(np.int64) + 128], d)
        return best

    def add(self, codes: np.ndarray, d: int) -> None:
        self.lanes.append((codes, d))
        self.residual = self.residual - self.lut_row[codes] * self.step * np.ldexp(1.0, -d)


def _layer_points(mac: MacLayer, model: Model, moments: list[np.ndarray], budget: int) -> MultipointResult:
    cfg, layer = model.config, mac.layer
    arr = layer.arrays
    codes = np.asarray(arr["codes"])
    n = codes.shape[0]
    w_float = np.asarray(mac.node.params["weight"], np.float64).reshape(n, -1)
    flat = codes.reshape(n, -1).astype(np.int64)
    lut = np.asarray(arr["lut"], np.int64)
    step = np.asarray(mac.weights.step, np.float64)
    groups = len(moments)
    bias = np.asarray(arr["bias"], np.int64)
    shift = np.asarray(arr["shift"], np.int64)
    lo, hi = model.tensors[layer.inputs[0]].range
    x_max = max(abs(lo), abs(hi), abs(int(layer.attrs.get("pad_value", 0))))
    channels = []
    for ch in range(n):
        row = lut[0 if lut.shape[0] == 1 else ch]
        channels.append(_Channel(ch, w_float[ch], flat[ch], row, float(step[ch]), moments[ch // (n // groups)]))

    def fits(chan: _Channel, level: np.ndarray, d: int) -> bool:
        """Whether the channel with a point at ``D = d`` (its finest) stays within the contract and the
        accumulator on every input: shifts, the bias shifted left, every lane's worst sum shifted."""
        ch = chan.index
        if d > POINT_SHIFT_MAX or shift[ch] + d > cfg.max_shift:
            return False
        worst = abs(int(bias[ch])) << d
        for lane_codes, dj in chan.lanes:
            worst += int(np.abs(chan.lut_row[lane_codes]).sum()) * x_max << (d - dj)
        worst += int(np.abs(level).sum()) * x_max
        return worst <= cfg.acc_max

    power = sum(float(w_float[ch] @ c.c @ w_float[ch]) for ch, c in enumerate(channels)) or 1.0
    before = sum(c.error() for c in channels) / power
    cands = {c.index: c.candidate(POINT_SHIFT_MAX, fits) for c in channels}
    given = 0
    while given < budget:
        gains = {ch: channels[ch].error() - cand[0] for ch, cand in cands.items() if cand is not None}
        if not gains or max(gains.values()) <= 0:
            break
        ch = max(gains, key=gains.get)
        _, pcodes, d = cands[ch]
        channels[ch].add(pcodes, d)
        cands[ch] = channels[ch].candidate(POINT_SHIFT_MAX, fits)
        given += 1
    after = sum(c.error() for c in channels) / power
    if given:
        _rewrite(mac, channels, codes.shape)
    return MultipointResult(given, budget, before, after)


def _rewrite(mac: MacLayer, channels: list[_Channel], shape: tuple[int, ...]) -> None:
    """The layer's arrays with the points: the finest lane as the main row, coarser lanes as extra rows
    shifted left by ``D_max - D_j``; shift, bias, exponent of the channel in the finest units."""
    arr = mac.layer.arrays
    codes = np.asarray(arr["codes"]).copy().reshape(len(channels), -1)
    shift, bias = np.asarray(arr["shift"]).copy(), np.asarray(arr["bias"]).copy()
    exponent = np.asarray(arr["weight_exponent"]).copy() if "weight_exponent" in arr else None
    step = np.asarray(mac.weights.step, np.float64).copy()
    p_codes, p_channel, p_shift = [], [], []
    for chan in channels:
        if len(chan.lanes) == 1:
            continue
        ch, d_max = chan.index, chan.lanes[-1][1]
        codes[ch] = chan.lanes[-1][0]
        for lane_codes, dj in chan.lanes[:-1]:
            p_codes.append(lane_codes)
            p_channel.append(ch)
            p_shift.append(d_max - dj)
        shift[ch] += d_max
        bias[ch] = int(bias[ch]) << d_max
        step[ch] = np.ldexp(step[ch], -d_max)
        if exponent is not None:
            exponent[ch] += d_max
    arr["codes"] = codes.reshape(shape).astype(np.uint8)
    arr["shift"], arr["bias"] = shift, bias
    if exponent is not None:
        arr["weight_exponent"] = exponent
    arr["point_codes"] = np.asarray(p_codes, np.uint8).reshape((len(p_codes),) + tuple(shape[1:]))
    arr["point_channel"] = np.asarray(p_channel, np.int32)
    arr["point_shift"] = np.asarray(p_shift, np.int32)
    # the quantizer's record follows the main row (layerwise methods read the step as the LUT unit)
    mac.weights.codes = arr["codes"]
    mac.weights.step = step


def multipoint(model: Model, graph: FloatGraph, weights: dict[str, WeightQuant], calib_x: np.ndarray,
               fraction: float, *, seed: int = 0, progress: bool = False) -> dict[str, MultipointResult]:
    """Give extra points to the channels of every requantized conv/linear layer of ``model``, in place.

    Parameters
    ----------
    model : accel.ir.Model
        Emitted from ``graph`` and ``weights`` (after AdaRound, if it ran: the residual is of the final codes).
    graph : FloatGraph
        The float network (its weights are the target).
    weights : dict
        :class:`~accel.frontend.weights.WeightQuant` per node; a changed layer's entry follows its main row.
    calib_x : numpy.ndarray
        Calibration images, normalized as the model expects.
    fraction : float
        Extra array columns per layer as a fraction of its output channels (0 < fraction <= 4).
    seed : int
        Seed of the patch subsample.
    progress : bool
        A progress bar over the layers.

    Returns
    -------
    dict
        Layer name -> :class:`MultipointResult` (raw layers are left out).
    """
    if not 0 < fraction <= 4:
        raise ConfigError(f"multipoint fraction {fraction}: expected more than 0 and at most 4 "
                          "(extra columns per output channel)")
    x_int = quantize_network_input(model, calib_x)
    rng = np.random.default_rng(seed)
    layers = [m for m in mac_layers(model, graph, weights) if not m.layer.attrs["raw"]]
    if progress:
        from tqdm import tqdm

        layers = tqdm(layers, desc="multipoint", unit="layer", leave=False)
    results = {}
    for mac in layers:
        budget = int(round(fraction * np.asarray(mac.layer.arrays["codes"]).shape[0]))
        if budget == 0:
            continue
        moments = _second_moments(mac, model, x_int, rng)
        results[mac.layer.name] = _layer_points(mac, model, moments, budget)
    model.validate()
    return results
