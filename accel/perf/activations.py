"""Activation statistics measured through the bit-exact engine: the one module of
:mod:`accel.perf` that runs the engine."""

from __future__ import annotations

import os

import numpy as np

from ..compile import lower_layer
from ..errors import DataError
from ..ir import MAC_OPS, Model
from .coding import coded_bits
from .network import ActivationStats

__all__ = ["measure_activations", "dataset_inputs"]


def dataset_inputs(model: Model, data: str | os.PathLike, images: int) -> np.ndarray:
    """The first ``images`` test images of ``data`` (bundled name or .npz), quantized for the model input."""
    from ..data import load_dataset
    from ..datapath import quantize_input

    info = model.tensors[model.inputs[0]]
    ds = load_dataset(data, "test")
    x = ds.x[:images]
    if tuple(x.shape[1:]) != tuple(info.shape):
        raise DataError(f"{data}: images of shape {tuple(x.shape[1:])} do not fit the model input "
                        f"{info.name!r} of shape {info.shape}")
    lo, hi = info.range
    return quantize_input(x, info.exponent or 0, lo, hi).astype(info.dtype)


def measure_activations(model: Model, inputs: np.ndarray, *, batch_size: int = 32) -> ActivationStats:
    """Sparsity and coded size of every activation map, and the zero activations in each conv/linear
    layer's im2col matrix, per group (per image means over ``inputs``)."""
    from ..engine import run_model

    n = int(inputs.shape[0])
    if n == 0:
        raise DataError("activation statistics need at least one image")
    zeros: dict[str, float] = {}
    coded: dict[str, float] = {}
    im2col_zeros: dict[str, np.ndarray] = {}
    for start in range(0, n, batch_size):
        xb = inputs[start:start + batch_size]
        tensors = run_model(model, xb, return_all=True)
        tensors.update({name: xb for name in model.inputs})
        for name, value in tensors.items():
            if name not in model.tensors:
                continue
            zeros[name] = zeros.get(name, 0.0) + float(np.count_nonzero(value == 0))
            if model.tensors[name].dtype != "int32":
                coded[name] = coded.get(name, 0.0) + float(coded_bits(value).sum()) / 8
        for layer in model.layers:
            if layer.op in MAC_OPS:
                zeros_now = np.array([np.count_nonzero(p.act == 0)
                                      for p in lower_layer(model, layer, tensors[layer.inputs[0]])], dtype=float)
                im2col_zeros[layer.name] = im2col_zeros.get(layer.name, 0.0) + zeros_now
    stats = ActivationStats(images=n)
    for name, z in zeros.items():
        size = int(np.prod(model.tensors[name].shape))
        stats.sparsity[name] = z / (n * size)
        stats.raw_bytes[name] = size * (4 if model.tensors[name].dtype == "int32" else 1)
        if name in coded:
            stats.coded_bytes[name] = coded[name] / n
    stats.im2col_zeros = {k: (v / n).tolist() for k, v in im2col_zeros.items()}
    return stats
