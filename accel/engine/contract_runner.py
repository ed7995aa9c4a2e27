"""Run a whole integer model with the numpy contract functions of :mod:`accel.datapath`.

Slow and obviously correct: the oracle that the engine's backends are tested
against on whole models, and the baseline of the engine benchmark.
"""

from __future__ import annotations

import numpy as np

from .. import datapath as dp
from ..config import Requant
from ..errors import ModelError
from ..ir import Layer, Model

__all__ = ["CONTRACT_HANDLERS", "run_layer_contract", "run_model_contract"]


def _mac(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    mult = arr["mult"] if cfg.requant is Requant.MULTIPLY_SHIFT else 1
    common = (arr["codes"], arr["lut"], arr["bias"], arr["shift"], mult, a["lo"], a["hi"], cfg)
    if layer.op == "linear":
        return dp.linear(inputs[0], *common, raw=a["raw"], points=layer.points)
    return dp.conv2d(inputs[0], *common, stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                     groups=a["groups"], pad_value=a["pad_value"], raw=a["raw"], points=layer.points)


def _add(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a = layer.attrs
    return dp.add(inputs[0], inputs[1], a["shift_a"], a["shift_b"], a["shift"], a["lo"], a["hi"],
                  model.config.rounding)


def _max_pool(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a = layer.attrs
    return dp.max_pool(inputs[0], a["kernel"], a["stride"], a["padding"])


def _avg_pool(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a = layer.attrs
    return dp.avg_pool(inputs[0], a["kernel"], a["stride"], a["padding"], a["pad_value"], a["mult"], a["shift"],
                       a["lo"], a["hi"], model.config.rounding, layer.arrays.get("count_mult"),
                       layer.arrays.get("count_shift"))


def _global_avg_pool(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    a = layer.attrs
    return dp.global_avg_pool(inputs[0], a["mult"], a["shift"], a["lo"], a["hi"], model.config.rounding)


def _flatten(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(inputs[0]).reshape(len(inputs[0]), -1)


def _reshape(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return np.asarray(inputs[0]).reshape((len(inputs[0]),) + tuple(layer.attrs["shape"]))


def _concat(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    return dp.concat(inputs, layer.attrs["axis"])


#: One handler per op of :data:`accel.ir.OPS`: (model, layer, inputs) -> int64 output.
CONTRACT_HANDLERS = {
    "conv2d": _mac, "linear": _mac, "add": _add, "max_pool": _max_pool, "avg_pool": _avg_pool,
    "global_avg_pool": _global_avg_pool, "flatten": _flatten, "reshape": _reshape, "concat": _concat,
}


def run_layer_contract(model: Model, layer: Layer, inputs: list[np.ndarray]) -> np.ndarray:
    """One layer through the contract; returns int64."""
    handler = CONTRACT_HANDLERS.get(layer.op)
    if handler is None:
        raise ModelError(f"layer {layer.name!r}: op {layer.op!r} has no contract handler")
    return handler(model, layer, inputs)


def run_model_contract(model: Model, inputs, return_all: bool = False) -> dict[str, np.ndarray]:
    """Whole model through the contract (int64 results)."""
    if not isinstance(inputs, dict):
        inputs = {model.inputs[0]: inputs}
    values = {k: np.asarray(v, dtype=np.int64) for k, v in inputs.items()}
    for layer in model.layers:
        values[layer.output] = run_layer_contract(model, layer, [values[t] for t in layer.inputs])
    return values if return_all else {k: values[k] for k in model.outputs}
