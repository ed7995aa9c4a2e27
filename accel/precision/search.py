"""Mixed-precision search: per-layer weight bits chosen to meet a storage budget (FxP-QNet style).

Each conv/linear layer may use 2, 3, 4 (or, on 8-bit hardware, 8) bits per weight: ``2^b``
distinct LUT levels, so its codes fit ``b`` bits and its tables ``2^b`` entries. A layer's cost is
what :func:`accel.perf.footprint.weight_storage` counts for it at ``b`` bits (codes, LUT tables,
shifts, biases); the budget is bits per weight over the whole network (LUT tables included) or
bytes of weight memory.

The search is sensitivity-driven and greedy: every layer alone is lowered to each smaller width
(the others at the widest) and the increase of the prediction error against the float network
(mean KL divergence of the softmax outputs, through the engine, on calibration images) is its
sensitivity; then, from all layers at the widest, the step with the least sensitivity per bit
saved is taken until the budget is met. Activation widths stay the configuration's (one
``act_bits`` for the network); an energy budget is not searched yet (docs/QAT.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np

from ..config import AcceleratorConfig
from ..datapath import quantize_input
from ..errors import ConfigError
from ..frontend.calibrate import Calibration
from ..frontend.graph import MAC_NODE_OPS, FloatGraph, run_float
from ..frontend.quantize import QuantizeOptions, dequantize_output, emit_integer_model, weight_tensor
from ..frontend.weights import WeightQuant, quantize_weights
from ..ir import MAC_OPS, Layer, Model
from ..perf.footprint import weight_storage

__all__ = ["WEIGHT_BITS", "Budget", "layer_cost_bits", "model_weight_bits", "network_cost", "search_precision",
           "PrecisionResult"]

#: Weight widths the search chooses from (those up to the hardware's ``weight_bits``).
WEIGHT_BITS = (2, 3, 4, 8)
_UNITS = {"": "bpw", "bpw": "bpw", "b": "bytes", "kb": "bytes", "kib": "bytes"}
_FACTORS = {"": 1, "bpw": 1, "b": 1, "kb": 1000, "kib": 1024}


@dataclass(frozen=True)
class Budget:
    """A weight-storage budget: ``value`` bits per weight (``unit="bpw"``) or bytes (``unit="bytes"``)."""

    value: float
    unit: str

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"2.5"`` or ``"2.5bpw"`` (bits per weight), ``"12000B"``, ``"12kB"``, ``"12KiB"`` (bytes).

        >>> Budget.parse("2.5bpw"), Budget.parse("3kB")
        (Budget(value=2.5, unit='bpw'), Budget(value=3000.0, unit='bytes'))
        """
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
            raise ConfigError(f"budget {text!r}: expected a positive number of bits per weight (2.5 or 2.5bpw) "
                              f"or of bytes (12000B, 12kB, 12KiB)")
        return cls(float(m.group(1)) * _FACTORS[unit], _UNITS[unit])

    def __str__(self) -> str:
        return f"{self.value:g} bits per weight" if self.unit == "bpw" else f"{self.value:g} bytes"


def layer_cost_bits(layer: Layer, config: AcceleratorConfig, bits: int) -> tuple[int, int]:
    """(storage bits, weights) of a MAC layer whose codes take ``bits`` bits and tables ``2^bits`` entries."""
    rows = np.asarray(layer.arrays["lut"]).shape[0]
    trimmed = replace(layer, arrays={**layer.arrays, "lut": np.zeros((rows, 1 << bits), np.int8)})
    storage = weight_storage(trimmed, config.replace(weight_bits=bits))
    return storage.total_bits, storage.weights


def model_weight_bits(model: Model) -> dict[str, int]:
    """Per MAC layer, the bits its codes need: ``ceil(log2)`` of the most distinct levels in one table."""
    out = {}
    for layer in model.layers:
        if layer.op in MAC_OPS:
            lut = np.asarray(layer.arrays["lut"])
            distinct = max(len(np.unique(row)) for row in lut)
            out[layer.name] = max(1, math.ceil(math.log2(max(distinct, 2))))
    return out


def network_cost(model: Model, bits: dict[str, int], unit: str) -> float:
    """The network's weight storage with ``bits`` per layer: bits per weight or bytes."""
    total_bits = total_weights = 0
    for layer in model.layers:
        if layer.op in MAC_OPS:
            b, n = layer_cost_bits(layer, model.config, bits[layer.name])
            total_bits, total_weights = total_bits + b, total_weights + n
    return total_bits / total_weights if unit == "bpw" else total_bits / 8


@dataclass
class PrecisionResult:
    """What :func:`search_precision` found.

    Members
    -------
    model : accel.ir.Model
        The integer model at the chosen widths.
    bits : dict
        Layer -> weight bits.
    sensitivity : dict
        Layer -> {bits: increase of the prediction error when only that layer is at those bits}.
    cost : float
        The model's cost in the budget's unit.
    """

    model: Model
    bits: dict[str, int]
    sensitivity: dict[str, dict[int, float]]
    cost: float
    weights: dict[str, WeightQuant]


def _prediction_error(model: Model, x: np.ndarray, reference: np.ndarray) -> float:
    """Mean KL divergence of the model's softmax outputs from the float network's (``reference``)."""
    from ..engine import run_model

    info = model.tensors[model.inputs[0]]
    lo, hi = info.range
    ints = run_model(model, quantize_input(x, info.exponent, lo, hi).astype(info.dtype))[model.outputs[0]]
    logits = dequantize_output(model, model.outputs[0], ints)

    def log_softmax(v):
        v = v - v.max(axis=1, keepdims=True)
        return v - np.log(np.exp(v).sum(axis=1, keepdims=True))

    p_log = log_softmax(np.asarray(reference, np.float64))
    return float(np.mean(np.sum(np.exp(p_log) * (p_log - log_softmax(logits)), axis=1)))


def search_precision(graph: FloatGraph, calib: Calibration, x: np.ndarray, config: AcceleratorConfig,
                     budget: Budget, options: QuantizeOptions | None = None, *,
                     progress: bool = False) -> PrecisionResult:
    """Per-layer weight bits that meet ``budget`` with the least loss of prediction quality.

    Parameters
    ----------
    graph : FloatGraph
    calib : Calibration
        Activation exponents (the network's ``act_bits``).
    x : numpy.ndarray
        Images the sensitivities are measured on (a few hundred calibration images).
    config : AcceleratorConfig
        The hardware; its ``weight_bits`` is the widest choice.
    budget : Budget
    options : QuantizeOptions

    Raises
    ------
    ConfigError
        The budget is below what every layer at 2 bits costs.
    """
    options = options or QuantizeOptions()
    choices = [b for b in WEIGHT_BITS if b <= config.weight_bits]
    widest = choices[-1]
    nodes = [n for n in graph.nodes if n.op in MAC_NODE_OPS]
    quant: dict[tuple[str, int], WeightQuant] = {}
    for node in nodes:
        w = weight_tensor(node, graph.shapes[node.inputs[0]])
        for b in choices:
            quant[node.name, b] = quantize_weights(
                w, family=options.lut, weight_bits=config.weight_bits, granularity=options.granularity,
                lut_scope=config.lut_scope.value, levels=None if b == config.weight_bits else 1 << b,
                name=node.name)

    def emit(bits: dict[str, int]) -> Model:
        return emit_integer_model(graph, calib, config, options, weights={n: quant[n, b] for n, b in bits.items()})

    reference = run_float(graph, x)[graph.outputs[0]]
    current = {n.name: widest for n in nodes}
    start = emit(current)
    base = _prediction_error(start, x, reference)
    steps = [(n.name, b) for n in nodes for b in choices[:-1]]
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="sensitivity", unit="layer-width", leave=False)
    sensitivity: dict[str, dict[int, float]] = {n.name: {widest: 0.0} for n in nodes}
    for name, b in steps:
        sensitivity[name][b] = _prediction_error(emit({**current, name: b}), x, reference) - base
    layers = {layer.name: layer for layer in start.layers if layer.op in MAC_OPS}
    cost_of = {(name, b): layer_cost_bits(layers[name], config, b) for name in current for b in choices}
    total_weights = sum(cost_of[name, widest][1] for name in current)

    def cost(bits: dict[str, int]) -> float:
        total = sum(cost_of[name, b][0] for name, b in bits.items())
        return total / total_weights if budget.unit == "bpw" else total / 8

    floor = cost({name: choices[0] for name in current})
    if floor > budget.value:
        raise ConfigError(f"budget {budget}: cannot be met; with every layer at {choices[0]}-bit weights the "
                          f"network needs {floor:.4g} {'bits per weight' if budget.unit == 'bpw' else 'bytes'}")
    while cost(current) > budget.value:
        best = None
        for name, b in current.items():
            lower = [c for c in choices if c < b]
            if not lower:
                continue
            nb = lower[-1]
            saved = cost_of[name, b][0] - cost_of[name, nb][0]
            score = max(sensitivity[name][nb] - sensitivity[name][b], 0.0) / max(saved, 1)
            if best is None or score < best[0]:
                best = (score, name, nb)
        current[best[1]] = best[2]
    model = emit(current)
    model.metadata["precision"] = {"budget": budget.value, "unit": budget.unit, "weight_bits": dict(current),
                                   "cost": cost(current), "prediction_error": _prediction_error(model, x, reference)}
    return PrecisionResult(model, dict(current), sensitivity, cost(current),
                           {name: quant[name, b] for name, b in current.items()})
