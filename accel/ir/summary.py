"""A plain summary of an integer model (layers, shapes, MACs), for reports and ``accel inspect``."""

from __future__ import annotations

import math

import numpy as np

from .model import Model

__all__ = ["layer_macs", "summarize"]


def layer_macs(model: Model, layer) -> int:
    """Multiply-accumulates per sample of a conv2d/linear layer (0 for other ops)."""
    if layer.op not in ("conv2d", "linear"):
        return 0
    return math.prod(model.tensors[layer.output].shape) * math.prod(layer.arrays["codes"].shape[1:])


def summarize(model: Model) -> dict:
    layers = []
    for layer in model.layers:
        out = model.tensors[layer.output]
        levels = None
        if "lut" in layer.arrays:
            lut = np.asarray(layer.arrays["lut"])
            used = np.unique(layer.arrays["codes"])
            levels = int(len(np.unique(lut[:, used]))) if lut.shape[0] == 1 else int(len(used))
        layers.append({"name": layer.name, "op": layer.op, "inputs": list(layer.inputs),
                       "shape": list(out.shape), "dtype": out.dtype, "exponent": out.exponent,
                       "macs": layer_macs(model, layer), "lut_levels": levels})
    return {"config": model.config.to_dict(), "inputs": [model.tensors[t].to_dict() for t in model.inputs],
            "outputs": list(model.outputs), "layers": layers,
            "total_macs": sum(l["macs"] for l in layers), "metadata": model.metadata}
