"""Run a whole integer model with the numpy contract functions of :mod:`accel.datapath`.

Slow and obviously correct: the oracle that the engine's backends are tested
against on whole models, and the baseline of the engine benchmark.
"""

from __future__ import annotations

import numpy as np

from .. import datapath as dp
from ..config import Requant
from ..ir import Layer, Model

__all__ = ["run_layer_contract", "run_model_contract"]


def run_layer_contract(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    """One layer through the contract; returns int64."""
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    x = inputs[0]
    if layer.op in ("conv2d", "linear"):
        mult = arr["mult"] if cfg.requant is Requant.MULTIPLY_SHIFT else 1
        common = (arr["codes"], arr["lut"], arr["bias"], arr["shift"], mult, a["lo"], a["hi"], cfg)
        if layer.op == "linear":
            return dp.linear(x, *common, raw=a["raw"])
        return dp.conv2d(x, *common, stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                         groups=a["groups"], pad_value=a["pad_value"], raw=a["raw"])
    if layer.op == "add":
        return dp.add(x, inputs[1], a["shift_a"], a["shift_b"], a["shift"], a["lo"], a["hi"], cfg.rounding)
    if layer.op == "max_pool":
        return dp.max_pool(x, a["kernel"], a["stride"], a["padding"])
    if layer.op == "avg_pool":
        return dp.avg_pool(x, a["kernel"], a["stride"], a["padding"], a["pad_value"], a["mult"], a["shift"],
                           a["lo"], a["hi"], cfg.rounding)
    if layer.op == "global_avg_pool":
        return dp.global_avg_pool(x, a["mult"], a["shift"], a["lo"], a["hi"], cfg.rounding)
    if layer.op == "flatten":
        return np.asarray(x).reshape(len(x), -1)
    if layer.op == "reshape":
        return np.asarray(x).reshape((len(x),) + tuple(a["shape"]))
    if layer.op == "concat":
        return dp.concat(inputs, a["axis"])
    raise ValueError(f"unknown op {layer.op!r}")


def run_model_contract(model: Model, inputs, return_all: bool = False) -> dict[str, np.ndarray]:
    """Whole model through the contract (int64 results)."""
    if not isinstance(inputs, dict):
        inputs = {model.inputs[0]: inputs}
    values = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    for layer in model.layers:
        values[layer.output] = run_layer_contract(model, layer, [values[t] for t in layer.inputs])
    return values if return_all else {k: values[k] for k in model.outputs}
