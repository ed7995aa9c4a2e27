"""AdaRound (Nagel et al. 2020) on the LUT grid: each weight chooses between the two LUT levels
around it, instead of the nearer one.

Per conv/linear layer, in execution order, with the earlier layers already rounded:

* the layer's input is what the bit-exact engine computes on calibration images
  (:mod:`.layerwise`), so the quantized activations, shift rounding included, are in the loop;
* weight ``k`` of channel ``n`` at ``u = w / step[n]`` LUT units lies between the row's levels
  ``lo <= u <= hi``; the soft weight is ``lo + h(V) (hi - lo)`` with the rectified sigmoid
  ``h(V) = clip(1.2 sigmoid(V) - 0.1, 0, 1)``, ``V`` initialised so that ``h`` is ``u``'s
  fractional position;
* the loss is the squared error of the layer's output in real units (accumulator plus bias,
  requantized with the layer's shift, rounded with a straight-through estimator, clamped by its
  ReLU/ReLU6 bounds; raw accumulators for the last layer) against the float network's output,
  plus ``lam * sum(1 - |2h - 1|^beta)`` with ``beta`` annealed from 20 to 2 after a warm-up of
  20 % of the iterations without it;
* at the end each weight takes ``hi`` where ``h >= 0.5``, else ``lo``; the layer keeps the new
  codes only if they lower its reconstruction error on the calibration images against nearest
  rounding (so the method never makes a layer worse than where it started).

Only ``codes`` change: LUTs, biases, shifts and exponents stay, and the model stays bit-exact on
every executor. Torch on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...ir import Model
from ..graph import FloatGraph
from ..weights import WeightQuant
from .layerwise import MacLayer, engine_tensor, float_tensors, mac_layers, quantize_network_input

__all__ = ["DEFAULT_ITERS", "AdaRoundResult", "adaround", "neighbour_levels", "reconstruction_error"]

#: Iterations per layer of ``accel quantize --adaround`` (a bundled model in well under 2 minutes on 2 cores).
DEFAULT_ITERS = 500
_BATCH = 32
# The reconstruction loss is relative to the output's power, so lambda is 1, not the paper's 0.01;
# with a few hundred steps (not 10k) the larger step size settles nearly every h at 0 or 1.
_LAMBDA = 1.0
_LR = 3e-2
_WARMUP = 0.2
_BETA = (20.0, 2.0)
_ZETA, _GAMMA = 1.1, -0.1  # h = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)


@dataclass
class AdaRoundResult:
    """Per layer: reconstruction error (mean squared, real units) with nearest rounding and after
    AdaRound, the fraction of codes changed, and whether the new codes were kept."""

    nearest: float
    adaround: float
    changed: float
    kept: bool


def neighbour_levels(q: WeightQuant, weights: np.ndarray):
    """For every weight, the codes and int8 levels of the LUT entries just below and above it and
    its fractional position between them.

    Returns
    -------
    code_lo, code_hi : numpy.ndarray
        ``int64``, the shape of ``weights``.
    level_lo, level_hi, frac : numpy.ndarray
        ``float64``; ``frac`` in [0, 1] (0 below the lowest level, 1 above the highest).
    """
    n = weights.shape[0]
    flat = weights.reshape(n, -1) / np.asarray(q.step, np.float64)[:, None]
    shape = flat.shape
    code_lo, code_hi = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    lv_lo, lv_hi, frac = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    rows = q.lut.astype(np.int64)
    for r in range(rows.shape[0]):
        sl = slice(None) if rows.shape[0] == 1 else slice(r, r + 1)
        levels, first_code = np.unique(rows[r], return_index=True)
        u = flat[sl]
        if levels.size == 1:
            code_lo[sl] = code_hi[sl] = first_code[0]
            lv_lo[sl] = lv_hi[sl] = levels[0]
            continue
        i = np.clip(np.searchsorted(levels, u, side="right") - 1, 0, levels.size - 2)
        lo, hi = levels[i].astype(np.float64), levels[i + 1].astype(np.float64)
        code_lo[sl], code_hi[sl] = first_code[i], first_code[i + 1]
        lv_lo[sl], lv_hi[sl] = lo, hi
        frac[sl] = np.clip((u - lo) / (hi - lo), 0.0, 1.0)
    return tuple(a.reshape(weights.shape) for a in (code_lo, code_hi, lv_lo, lv_hi, frac))


class _LayerForward:
    """The layer's real-valued output from integer inputs and (soft) integer weights, in torch."""

    def __init__(self, mac: MacLayer, model: Model):
        import torch

        layer, node = mac.layer, mac.node
        self.op, self.attrs = node.op, node.attrs
        self.bias = torch.as_tensor(np.asarray(layer.arrays["bias"], np.float64), dtype=torch.float32)
        self.raw = bool(layer.attrs["raw"])
        self.acc_scale = torch.as_tensor(mac.acc_scale, dtype=torch.float32)
        if not self.raw:
            shift = np.asarray(layer.arrays["shift"], np.float64)
            mult = np.asarray(layer.arrays.get("mult", np.ones_like(shift)), np.float64)
            self.requant = torch.as_tensor(mult * np.exp2(-shift), dtype=torch.float32)
            self.lo, self.hi = float(layer.attrs["lo"]), float(layer.attrs["hi"])
            self.y_scale = math.ldexp(1.0, -model.tensors[layer.output].exponent)

    def __call__(self, x_int, w_int):
        import torch
        import torch.nn.functional as F

        if self.op == "conv":
            t, left, b, r = self.attrs["padding"]
            x = F.pad(x_int, (left, r, t, b)) if (t or left or b or r) else x_int
            acc = F.conv2d(x, w_int, None, tuple(self.attrs["stride"]), 0, tuple(self.attrs["dilation"]),
                           self.attrs["groups"])
        else:
            acc = x_int @ w_int.t()
        view = (1, -1) + (1,) * (acc.ndim - 2)
        acc = acc + self.bias.view(view)
        if self.raw:
            return acc / self.acc_scale.view(view)
        y = acc * self.requant.view(view)
        y = y + (torch.floor(y + 0.5) - y).detach()  # straight-through rounding (half up, as the shift)
        return torch.clamp(y, self.lo, self.hi) * self.y_scale


def _h(v):
    import torch

    return torch.clamp(torch.sigmoid(v) * (_ZETA - _GAMMA) + _GAMMA, 0.0, 1.0)


def reconstruction_error(forward: _LayerForward, x_int, w_int, target, batch: int = 256) -> float:
    """Mean squared error of the layer's output against ``target`` (real units)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for s in range(0, x_int.shape[0], batch):
            d = forward(x_int[s:s + batch], w_int) - target[s:s + batch]
            total += float((d.double() ** 2).sum())
            count += d.numel()
    return total / max(count, 1)


def _optimise_layer(mac: MacLayer, model: Model, x_int: np.ndarray, target: np.ndarray, iters: int,
                    rng: np.random.Generator, bar) -> AdaRoundResult:
    import torch

    weights = mac.node.params["weight"]
    code_lo, code_hi, lv_lo, lv_hi, frac = neighbour_levels(mac.weights, weights)
    live = np.any(mac.weights.weights().reshape(weights.shape[0], -1) != 0, axis=1)  # dead channels stay
    movable = (lv_hi > lv_lo) & live.reshape((-1,) + (1,) * (weights.ndim - 1))
    forward = _LayerForward(mac, model)
    x_t = torch.as_tensor(x_int, dtype=torch.float32)
    y_t = torch.as_tensor(target, dtype=torch.float32)
    lo_t = torch.as_tensor(lv_lo, dtype=torch.float32)
    span_t = torch.as_tensor(lv_hi - lv_lo, dtype=torch.float32)
    mask_t = torch.as_tensor(movable)
    nearest_w = torch.as_tensor(mac.weights.weights().astype(np.float32))
    p = np.clip((frac - _GAMMA) / (_ZETA - _GAMMA), 1e-4, 1 - 1e-4)  # h(V) = frac
    v = torch.nn.Parameter(torch.as_tensor(np.log(p / (1 - p)), dtype=torch.float32))
    opt = torch.optim.Adam([v], lr=_LR)
    scale = float((y_t.double() ** 2).mean()) or 1.0  # losses relative to the output's power
    n_movable = max(int(movable.sum()), 1)
    warmup = int(_WARMUP * iters)
    for it in range(iters):
        idx = torch.as_tensor(rng.choice(x_t.shape[0], min(_BATCH, x_t.shape[0]), replace=False))
        h = _h(v)
        w_soft = torch.where(mask_t, lo_t + h * span_t, nearest_w)
        loss = ((forward(x_t[idx], w_soft) - y_t[idx]) ** 2).mean() / scale
        if it >= warmup:
            beta = _BETA[1] + (_BETA[0] - _BETA[1]) * (1 - (it - warmup) / max(iters - warmup, 1))
            loss = loss + _LAMBDA * ((1 - (2 * h[mask_t] - 1).abs() ** beta).sum() / n_movable)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    with torch.no_grad():
        up = (_h(v) >= 0.5).numpy() & movable
    new_codes = np.where(movable, np.where(up, code_hi, code_lo), mac.weights.codes).astype(np.uint8)
    new_w = torch.as_tensor(np.where(movable, np.where(up, lv_hi, lv_lo), mac.weights.weights()).astype(np.float32))
    err_nearest = reconstruction_error(forward, x_t, nearest_w, y_t)
    err_new = reconstruction_error(forward, x_t, new_w, y_t)
    kept = err_new < err_nearest
    changed = float(np.mean(new_codes != mac.weights.codes))
    if kept:
        mac.layer.arrays["codes"] = new_codes
        mac.weights.codes = new_codes
    return AdaRoundResult(err_nearest, err_new, changed, kept)


def adaround(model: Model, graph: FloatGraph, weights: dict[str, WeightQuant], calib_x: np.ndarray, *,
             iters: int = DEFAULT_ITERS, seed: int = 0, progress: bool = False) -> dict[str, AdaRoundResult]:
    """Round every conv/linear layer of ``model`` adaptively (module docstring), in place.

    Parameters
    ----------
    model : accel.ir.Model
        Emitted from ``graph`` and ``weights``; only ``codes`` change.
    graph : FloatGraph
        The float network (the reference outputs; equalized first if CLE ran).
    weights : dict
        :class:`~accel.frontend.weights.WeightQuant` per node (their codes are updated too).
    calib_x : numpy.ndarray
        Calibration images, normalized as the model expects.
    iters : int
        Adam steps per layer (batch of 32 images).
    seed : int
        Batch sampling seed.
    progress : bool
        A progress bar over all iterations.

    Returns
    -------
    dict
        Layer name -> :class:`AdaRoundResult`.
    """
    import torch

    threads = torch.get_num_threads()
    # one thread: these layers are small, and on a shared 2-core machine more threads ran 6x slower
    torch.set_num_threads(1)
    floats = float_tensors(graph, calib_x)
    x_int = quantize_network_input(model, calib_x)
    layers = mac_layers(model, graph, weights)
    rng = np.random.default_rng(seed)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=iters * len(layers), desc="adaround", unit="it", leave=False)
    results = {}
    try:
        with torch.enable_grad():
            for mac in layers:
                x_layer = engine_tensor(model, x_int, mac.layer.inputs[0]).astype(np.float32)
                target = floats[mac.node.output]
                results[mac.layer.name] = _optimise_layer(mac, model, x_layer, target, iters, rng, bar)
    finally:
        torch.set_num_threads(threads)
        if bar is not None:
            bar.close()
    return results
