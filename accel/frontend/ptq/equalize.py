"""Cross-layer equalization and bias absorption on the float graph (DFQ, Nagel et al. 2019).

For a conv/linear ``first`` whose output reaches exactly one conv/linear ``second``
through ops that commute with a positive per-channel factor (ReLU, max/average
pools, flatten), scaling output channel ``i`` of ``first`` (weights and bias) by
``1/s_i`` and input channel ``i`` of ``second`` by ``s_i`` leaves the network's
function unchanged: ReLU is positively homogeneous. :func:`equalize` picks
``s_i = sqrt(r1_i / r2_i)`` (``r`` = per-channel weight range) so both ranges become
``sqrt(r1_i r2_i)``, and sweeps over the pairs until the factors settle.
Depthwise -> pointwise pairs are ordinary pairs (the depthwise conv's row ``i`` is
input channel ``i``). ReLU6 is not homogeneous (its clip at 6 would become a
per-channel clip that the datapath's one ``hi`` per layer cannot hold), so, as in
the paper, ``relu6_as_relu=True`` turns a pair's ReLU6 into ReLU; ``False`` skips
those pairs and keeps the float function exact.

``power_of_two=True`` adds a last sweep for our datapath: each layer's output
channel ranges are moved (by factors within 2^+-0.5 of the equalized ones) onto one
common mantissa ``2^(mu + k_i)``. Per-channel power-of-two exponents then put every
channel's largest weight on the same point of the int8 grid, so one LUT per layer
fits every channel alike and the shift-only requantization loses nothing that a
free per-channel scale would win.

:func:`absorb_biases` moves ``c_i``, a lower bound of ``first``'s pre-activation,
out of ``first``'s bias into ``second``'s (``relu(y) = relu(y - c) + c`` when
``y >= c``), shrinking activation ranges; ``c`` comes from the folded BatchNorm
(``beta - 3 |gamma|``) or from calibration data (the smallest pre-activation seen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..graph import FloatGraph, FloatNode, run_float, run_node

__all__ = ["EqualizationPair", "equalization_pairs", "channel_ranges", "input_channel_ranges", "equalize",
           "absorb_biases", "EqualizationReport"]

_HOMOGENEOUS_OPS = ("max_pool", "avg_pool", "global_avg_pool", "flatten")
_RELU = (0.0, math.inf)


@dataclass
class EqualizationPair:
    """Two MAC nodes that CLE can rescale against each other.

    Members
    -------
    first, second : FloatNode
        ``first``'s output channel ``i`` is ``second``'s input channel ``i``.
    between : list of FloatNode
        The per-channel homogeneous ops between them (pools, flatten).
    relu6 : bool
        ``first`` ends in ReLU6 (equalizing it turns it into ReLU).
    """

    first: FloatNode
    second: FloatNode
    between: list[FloatNode]
    relu6: bool = False

    @property
    def channels(self) -> int:
        return self.first.params["weight"].shape[0]


def _act_kind(node: FloatNode) -> str | None:
    act = node.act
    if act is None or tuple(act) == _RELU:
        return "homogeneous"
    if act[0] == 0.0 and act[1] == 6.0:
        return "relu6"
    return None


def equalization_pairs(graph: FloatGraph, *, relu6_as_relu: bool = True) -> list[EqualizationPair]:
    """The (first, second) MAC pairs of ``graph`` in execution order (see the module docstring)."""
    pairs = []
    for node in graph.nodes:
        if node.op not in ("conv", "linear"):
            continue
        kind = _act_kind(node)
        if kind is None or (kind == "relu6" and not relu6_as_relu):
            continue
        tensor, between = node.output, []
        while True:
            users = graph.consumers(tensor)
            if tensor in graph.outputs or len(users) != 1:
                users = []
                break
            if users[0].op not in _HOMOGENEOUS_OPS:
                break
            between.append(users[0])
            tensor = users[0].output
        if not users or users[0].op not in ("conv", "linear"):
            continue
        second = users[0]
        if _input_view(second, graph.shapes[tensor], node.params["weight"].shape[0]) is None:
            continue
        pairs.append(EqualizationPair(node, second, between, kind == "relu6"))
    return pairs


def _input_view(second: FloatNode, in_shape, channels: int):
    """``second``'s weights viewed so that axis 1 runs over its input channels: (groups*?, C, ...) or None."""
    w = second.params["weight"]
    if second.op == "conv":
        groups = second.attrs["groups"]
        if w.shape[1] * groups != channels:
            return None
        return w.reshape(groups, w.shape[0] // groups, w.shape[1], -1)  # (g, n/g, c/g, kk)
    k = w.shape[1]
    if k % channels:
        return None
    return w.reshape(1, w.shape[0], channels, k // channels)  # flatten is channel-major


def channel_ranges(node: FloatNode) -> np.ndarray:
    """Per output channel ``max |W|`` of a conv/linear node."""
    w = node.params["weight"]
    return np.abs(w.reshape(w.shape[0], -1)).max(axis=1)


def input_channel_ranges(pair: EqualizationPair) -> np.ndarray:
    """Per input channel ``max |W|`` of ``pair.second`` (channel ``grp * c/g + j`` is view ``[grp, :, j]``)."""
    return np.abs(_input_view(pair.second, None, pair.channels)).max(axis=(1, 3)).ravel()


def _rescale(pair: EqualizationPair, s: np.ndarray) -> None:
    """Output channel ``i`` of ``first`` divided by ``s_i``, input channel ``i`` of ``second`` times ``s_i``."""
    first, second = pair.first, pair.second
    w1 = first.params["weight"]
    first.params["weight"] = w1 / s.reshape((-1,) + (1,) * (w1.ndim - 1))
    first.params["bias"] = first.params["bias"] / s
    if "bn_stats" in first.attrs:
        mean, std = first.attrs["bn_stats"]
        first.attrs["bn_stats"] = (mean / s, std / s)
    shape = second.params["weight"].shape
    view = _input_view(second, None, pair.channels).copy()
    g, _, cg, _ = view.shape
    view *= s.reshape(g, 1, cg, 1)
    second.params["weight"] = view.reshape(shape)
    if pair.relu6:
        first.attrs["act"] = _RELU


def _cle_factors(pair: EqualizationPair) -> np.ndarray:
    r1, r2 = channel_ranges(pair.first), input_channel_ranges(pair)
    ok = (r1 > 0) & (r2 > 0)
    s = np.ones(pair.channels)
    s[ok] = np.sqrt(r1[ok] / r2[ok])
    return s


def _pow2_factors(ranges: np.ndarray, grid: int = 256) -> np.ndarray:
    """Factors ``t`` within ``2^+-0.5`` that put every ``ranges / t`` on one mantissa ``2^(mu + k)``;
    ``mu`` is chosen to move the ranges least (sum of squared log2 moves)."""
    live = ranges > 0
    t = np.ones_like(ranges)
    if not live.any():
        return t
    logs = np.log2(ranges[live])
    mus = np.arange(grid) / grid
    moves = logs[None, :] - mus[:, None]
    moves = moves - np.round(moves)  # in [-0.5, 0.5]
    mu = mus[int(np.argmin((moves ** 2).sum(axis=1)))]
    move = logs - mu
    t[live] = np.exp2(move - np.round(move))
    return t


@dataclass
class EqualizationReport:
    """What :func:`equalize` did: the pairs, the sweeps it took, and the total factor per pair."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    sweeps: int = 0
    factors: dict[str, np.ndarray] = field(default_factory=dict)
    relu6_replaced: list[str] = field(default_factory=list)


def equalize(graph: FloatGraph, *, max_sweeps: int = 100, tolerance: float = 1e-4, power_of_two: bool = False,
             relu6_as_relu: bool = True) -> EqualizationReport:
    """Cross-layer equalization of ``graph`` in place (module docstring).

    Parameters
    ----------
    graph : FloatGraph
        Imported float graph (BatchNorm already folded).
    max_sweeps : int
        Most passes over all pairs.
    tolerance : float
        Stop when no factor of a sweep differs from 1 by more than this.
    power_of_two : bool
        A last sweep that aligns each layer's channel ranges on one power-of-two mantissa.
    relu6_as_relu : bool
        Equalize through ReLU6 by turning it into ReLU (the paper's choice); ``False`` skips those pairs.

    Returns
    -------
    EqualizationReport
    """
    pairs = equalization_pairs(graph, relu6_as_relu=relu6_as_relu)
    report = EqualizationReport(pairs=[(p.first.name, p.second.name) for p in pairs],
                                relu6_replaced=[p.first.name for p in pairs if p.relu6])
    total = {p.first.name: np.ones(p.channels) for p in pairs}
    for sweep in range(max_sweeps):
        report.sweeps = sweep + 1
        worst = 0.0
        for pair in pairs:
            s = _cle_factors(pair)
            _rescale(pair, s)
            total[pair.first.name] *= s
            worst = max(worst, float(np.max(np.abs(s - 1.0))) if s.size else 0.0)
        if worst < tolerance:
            break
    if power_of_two:
        for pair in pairs:  # execution order: a layer's rows are set last by its own pair
            t = _pow2_factors(channel_ranges(pair.first))
            _rescale(pair, t)
            total[pair.first.name] *= t
    report.factors = total
    return report


def _pre_activation_min(graph: FloatGraph, node: FloatNode, calib_x: np.ndarray) -> np.ndarray:
    values = run_float(graph, calib_x, return_all=True)
    pre = run_node(replace(node, attrs={**node.attrs, "act": None}), [values[t] for t in node.inputs])
    axes = (0,) + tuple(range(2, pre.ndim))
    return pre.min(axis=axes).astype(np.float64)


def _absorbable(pair: EqualizationPair) -> bool:
    """Exact only through ReLU (not ReLU6), pools without padding and an unpadded ``second``."""
    if pair.first.act is None or tuple(pair.first.act) != _RELU:
        return False
    if any(n.op == "avg_pool" and any(n.attrs["padding"]) for n in pair.between):
        return False
    return pair.second.op == "linear" or not any(pair.second.attrs["padding"])


def absorb_biases(graph: FloatGraph, calib_x: np.ndarray | None = None, *, n_sigma: float = 3.0) -> dict[str, int]:
    """Bias absorption in place: returns, per ``first`` layer, how many channels gave some bias away.

    ``c_i = max(0, beta_i - n_sigma |gamma_i|)`` from the folded BatchNorm when ``first`` had one,
    else ``max(0, min pre-activation on calib_x)``; pairs without either are left alone.
    """
    absorbed = {}
    for pair in equalization_pairs(graph, relu6_as_relu=False):
        if not _absorbable(pair):
            continue
        first, second = pair.first, pair.second
        if "bn_stats" in first.attrs:
            mean, std = first.attrs["bn_stats"]
            c = np.maximum(0.0, mean - n_sigma * std)
        elif calib_x is not None:
            c = np.maximum(0.0, _pre_activation_min(graph, first, calib_x))
        else:
            continue
        if not np.any(c > 0):
            continue
        first.params["bias"] = first.params["bias"] - c
        if "bn_stats" in first.attrs:
            first.attrs["bn_stats"] = (first.attrs["bn_stats"][0] - c, first.attrs["bn_stats"][1])
        view = _input_view(second, None, pair.channels)
        g, ng, cg, _ = view.shape
        second.params["bias"] = second.params["bias"] + np.einsum("gnck,gc->gn", view, c.reshape(g, cg)).ravel()
        absorbed[first.name] = int(np.count_nonzero(c > 0))
    return absorbed
