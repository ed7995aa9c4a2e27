"""A plain summary of an integer model (layers, shapes, MACs), for reports and ``accel inspect``."""

from __future__ import annotations

import numpy as np

from .model import Model
from .ops import layer_macs

__all__ = ["layer_macs", "summarize"]


def summarize(model: Model) -> dict:
    """The model as plain data: configuration, inputs, outputs, and per layer its shape, MACs, LUT levels and
    multipoint extra rows (``points``, array columns; 0 for an ordinary layer)."""
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
                       "macs": layer_macs(model, layer), "lut_levels": levels, "points": layer.n_points})
    return {"config": model.config.to_dict(), "inputs": [model.tensors[t].to_dict() for t in model.inputs],
            "outputs": list(model.outputs), "layers": layers,
            "total_macs": sum(l["macs"] for l in layers), "metadata": model.metadata}
