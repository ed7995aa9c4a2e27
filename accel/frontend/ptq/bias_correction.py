"""Bias correction (DFQ, Nagel et al. 2019): remove the shift that weight quantization puts on
each output channel's mean, ``E[(W_q - W) x]``, from the bias.

* :func:`analytic_bias_correction` (data-free, on the float graph before emission): ``E[x_c]``
  of an input channel from the BatchNorm folded into the layer that produces it: that layer's
  pre-activation is ``~N(beta_c, gamma_c^2)``, its fused ReLU/ReLU6 clips it, and the mean of a
  clipped normal is closed-form. Border padding is ignored (as in the paper).
* :func:`empirical_bias_correction` (on the integer model after emission, layer by layer): the
  mean accumulator per channel on calibration data, computed from the layer's input as the
  bit-exact engine produces it (earlier layers already corrected), against the float network's
  mean pre-activation; the difference, in accumulator units, leaves the integer bias. This also
  removes the mean error that quantized inputs carry in from earlier layers.
"""

from __future__ import annotations

import math

import numpy as np

from ...datapath import conv_output_size, effective_weights
from ...ir import Model
from ..graph import FloatGraph, FloatNode
from ..weights import WeightQuant
from .layerwise import engine_tensor, float_tensors, mac_layers, pre_activation, quantize_network_input

__all__ = ["clipped_normal_mean", "input_means_from_batchnorm", "analytic_bias_correction",
           "empirical_bias_correction"]

_MEAN_PRESERVING = ("flatten", "global_avg_pool")


def _phi(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


_ERF = np.vectorize(math.erf, otypes=[np.float64])


def _cdf(z):
    return 0.5 * (1.0 + _ERF(np.asarray(z, np.float64) / math.sqrt(2.0)))


def clipped_normal_mean(mean: np.ndarray, std: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``E[clip(Y, lo, hi)]`` for ``Y ~ N(mean, std^2)`` per channel (``lo``/``hi`` may be infinite).

    >>> float(clipped_normal_mean(np.array([0.0]), np.array([1.0]), 0.0, math.inf)[0])  # E[relu(N(0,1))]
    0.3989422804014327
    """
    mean, std = np.asarray(mean, np.float64), np.maximum(np.asarray(std, np.float64), 1e-12)
    a = (lo - mean) / std
    b = (hi - mean) / std
    cdf_a = _cdf(a) if math.isfinite(lo) else 0.0
    cdf_b = _cdf(b) if math.isfinite(hi) else 1.0
    pdf_a = _phi(a) if math.isfinite(lo) else 0.0
    pdf_b = _phi(b) if math.isfinite(hi) else 0.0
    out = mean * (cdf_b - cdf_a) + std * (pdf_a - pdf_b)
    if math.isfinite(lo):
        out = out + lo * cdf_a
    if math.isfinite(hi):
        out = out + hi * (1.0 - cdf_b)
    return out


def input_means_from_batchnorm(graph: FloatGraph, node: FloatNode) -> np.ndarray | None:
    """Per input channel ``E[x]`` of ``node`` from the BatchNorm of the layer that feeds it, or
    ``None`` when that layer had none (or something between changes the mean)."""
    tensor = node.inputs[0]
    producer = graph.producer(tensor)
    while producer is not None and producer.op in _MEAN_PRESERVING:
        producer = graph.producer(producer.inputs[0])
    if producer is None or "bn_stats" not in producer.attrs:
        return None
    mean, std = producer.attrs["bn_stats"]
    lo, hi = producer.act if producer.act is not None else (-math.inf, math.inf)
    return clipped_normal_mean(mean, std, lo, hi)


def _tap_coverage(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, dilation: int) -> np.ndarray:
    """Per kernel tap along one axis: the fraction of output positions whose input there is real
    (not padding), so that the expected error counts the padded border's zeros."""
    n_out = conv_output_size(size, kernel, stride, pad_before, pad_after, dilation)
    pos = np.arange(n_out)[:, None] * stride - pad_before + np.arange(kernel)[None, :] * dilation
    return ((pos >= 0) & (pos < size)).mean(axis=0)


def _expected_error(node: FloatNode, in_shape, delta_w: np.ndarray, input_mean: np.ndarray) -> np.ndarray | None:
    """``sum_{c,k} dW[n, c, k] E[x_c] P(tap k is inside)`` per output channel (None when the channels
    do not line up)."""
    n = delta_w.shape[0]
    if node.op == "conv":
        a, g = node.attrs, node.attrs["groups"]
        t, left, b, r = a["padding"]
        cover = np.outer(_tap_coverage(in_shape[1], delta_w.shape[2], a["stride"][0], t, b, a["dilation"][0]),
                         _tap_coverage(in_shape[2], delta_w.shape[3], a["stride"][1], left, r, a["dilation"][1]))
        view = (delta_w * cover[None, None]).reshape(g, n // g, delta_w.shape[1], -1)
    else:
        if delta_w.shape[1] % input_mean.size:
            return None
        view = delta_w.reshape(1, n, input_mean.size, -1)
    if view.shape[0] * view.shape[2] != input_mean.size:
        return None
    return np.einsum("gnck,gc->gn", view, input_mean.reshape(view.shape[0], view.shape[2])).ravel()


def analytic_bias_correction(graph: FloatGraph, weights: dict[str, WeightQuant]) -> list[str]:
    """Correct the float biases of every conv/linear node whose input comes from a BatchNorm'd layer
    (in place, before emission); returns the corrected nodes' names."""
    done = []
    for node in graph.nodes:
        if node.op not in ("conv", "linear") or node.name not in weights:
            continue
        input_mean = input_means_from_batchnorm(graph, node)
        if input_mean is None:
            continue
        error = _expected_error(node, graph.shapes[node.inputs[0]],
                                weights[node.name].dequantize() - node.params["weight"], input_mean)
        if error is None:
            continue
        node.params["bias"] = node.params["bias"] - error
        done.append(node.name)
    return done


def _channel_mean(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float64).mean(axis=(0,) + tuple(range(2, values.ndim)))


def empirical_bias_correction(model: Model, graph: FloatGraph, weights: dict[str, WeightQuant], calib_x: np.ndarray,
                              *, skip: tuple[str, ...] | list[str] = (), progress: bool = False) -> dict[str, float]:
    """Correct the integer biases of ``model`` layer by layer (in place).

    Parameters
    ----------
    model : accel.ir.Model
        Emitted from ``graph`` and ``weights``; only its ``bias`` arrays change.
    graph : FloatGraph
    weights : dict
        The :class:`~accel.frontend.weights.WeightQuant` per node that ``model`` was emitted from.
    calib_x : numpy.ndarray
        Calibration images (float, normalized as the model expects).
    skip : sequence of str
        Layers to leave alone (those corrected analytically).
    progress : bool

    Returns
    -------
    dict
        Layer name -> the largest mean error it removed, in real units.
    """
    floats = float_tensors(graph, calib_x)
    x_int = quantize_network_input(model, calib_x)
    layers = [m for m in mac_layers(model, graph, weights) if m.layer.name not in skip]
    if progress:
        from tqdm import tqdm

        layers = tqdm(layers, desc="bias correction", unit="layer", leave=False)
    removed = {}
    cfg = model.config
    for mac in layers:
        layer, node = mac.layer, mac.node
        x_q = engine_tensor(model, x_int, layer.inputs[0]).astype(np.float32)
        # the layer's own weights: a multipoint layer's points shifted onto their channels included
        w_int = effective_weights(layer.arrays["codes"], layer.arrays["lut"], layer.points).astype(np.float64)
        if layer.attrs.get("pad_value", 0):  # the contract pads with pad_value, run_node with zero
            continue
        acc_mean = _channel_mean(pre_activation(node, x_q, weight=w_int, bias=np.zeros(w_int.shape[0])))
        bias = np.asarray(layer.arrays["bias"], np.int64)
        target = _channel_mean(pre_activation(node, floats[node.inputs[0]])) * mac.acc_scale
        correction = np.round(acc_mean + bias - target).astype(np.int64)
        layer.arrays["bias"] = np.clip(bias - correction, cfg.acc_min, cfg.acc_max).astype(bias.dtype)
        removed[layer.name] = float(np.max(np.abs(correction / mac.acc_scale))) if correction.size else 0.0
    return removed
