"""Mixed-precision search: per-layer weight and activation bits chosen to meet a budget (FxP-QNet style).

Each conv/linear layer may use 2, 3, 4 (or, on 8-bit hardware, 8) bits per weight: ``2^b``
distinct LUT levels, so its codes fit ``b`` bits and its tables ``2^b`` entries; and 4 to the
hardware's ``act_bits`` bits for the activation it writes (a narrower clamp range, its exponent
calibrated again for that width). The budget is one of

* bits per weight over the whole network, or bytes of weight memory: what
  :func:`accel.perf.footprint.weight_storage` counts for each layer at its width (codes, LUT
  tables, shifts, biases); activation widths do not change it, so they stay the widest;
* energy per inference (``2.5uJ``): :func:`accel.perf.estimate` with ``packed=True``, which prices
  activation maps and weight-code reads at the width each needs (the array's MACs cost the same).

The search is sensitivity-driven and greedy: every layer alone is lowered to each smaller width
(weights, then activations; the others at the widest) and the increase of the prediction error
against the float network (mean KL divergence of the softmax outputs, through the engine, on
calibration images) is its sensitivity; then, from all layers at the widest, the step (one layer's
weights or activations one width down) with the least sensitivity per unit of cost saved is taken
until the budget is met.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np

from ..config import AcceleratorConfig
from ..datapath import quantize_input
from ..errors import ConfigError
from ..frontend.calibrate import Calibration, choose_exponent
from ..frontend.graph import MAC_NODE_OPS, FloatGraph, run_float
from ..frontend.quantize import QuantizeOptions, dequantize_output, emit_integer_model, tensor_groups, weight_tensor
from ..frontend.weights import WeightQuant, quantize_weights
from ..ir import MAC_OPS, Layer, Model
from ..perf.footprint import weight_storage
from ..perf.network import code_bits, estimate

__all__ = ["WEIGHT_BITS", "ACT_BITS", "Budget", "layer_cost_bits", "model_weight_bits", "network_cost",
           "search_precision", "PrecisionResult"]

#: Weight widths the search chooses from (those up to the hardware's ``weight_bits``).
WEIGHT_BITS = (2, 3, 4, 8)
#: Activation widths the search chooses from (those up to the hardware's ``act_bits``).
ACT_BITS = (4, 5, 6, 7, 8)
_UNITS = {"": "bpw", "bpw": "bpw", "b": "bytes", "kb": "bytes", "kib": "bytes", "pj": "uJ", "nj": "uJ", "uj": "uJ",
          "µj": "uJ", "mj": "uJ"}
_FACTORS = {"": 1, "bpw": 1, "b": 1, "kb": 1000, "kib": 1024, "pj": 1e-6, "nj": 1e-3, "uj": 1, "µj": 1, "mj": 1e3}
_UNIT_NAMES = {"bpw": "bits per weight", "bytes": "bytes", "uJ": "uJ per inference"}


@dataclass(frozen=True)
class Budget:
    """A budget: ``value`` bits per weight (``unit="bpw"``), bytes of weight memory (``"bytes"``) or
    microjoules per inference (``"uJ"``)."""

    value: float
    unit: str

    @classmethod
    def parse(cls, text: str) -> Budget:
        """``"2.5"`` or ``"2.5bpw"`` (bits per weight), ``"12000B"``, ``"12kB"``, ``"12KiB"`` (bytes),
        ``"2.5uJ"``, ``"800nJ"`` (energy per inference).

        >>> Budget.parse("2.5bpw"), Budget.parse("3kB"), Budget.parse("500nJ")
        (Budget(value=2.5, unit='bpw'), Budget(value=3000.0, unit='bytes'), Budget(value=0.5, unit='uJ'))
        """
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-zµ]*)\s*", str(text))
        unit = m.group(2).lower() if m else None
        if m is None or unit not in _UNITS or float(m.group(1)) <= 0:
            raise ConfigError(f"budget {text!r}: expected a positive number of bits per weight (2.5 or 2.5bpw), "
                              f"of bytes (12000B, 12kB, 12KiB) or of energy per inference (2.5uJ, 800nJ)")
        return cls(float(m.group(1)) * _FACTORS[unit], _UNITS[unit])

    @property
    def unit_name(self) -> str:
        return _UNIT_NAMES[self.unit]

    def __str__(self) -> str:
        return f"{self.value:g} {self.unit_name}"


def layer_cost_bits(layer: Layer, config: AcceleratorConfig, bits: int) -> tuple[int, int]:
    """(storage bits, weights) of a MAC layer whose codes take ``bits`` bits and tables ``2^bits`` entries."""
    rows = np.asarray(layer.arrays["lut"]).shape[0]
    trimmed = replace(layer, arrays={**layer.arrays, "lut": np.zeros((rows, 1 << bits), np.int8)})
    storage = weight_storage(trimmed, config.replace(weight_bits=bits))
    return storage.total_bits, storage.weights


def model_weight_bits(model: Model) -> dict[str, int]:
    """Per MAC layer, the bits its codes need: ``ceil(log2)`` of the most distinct levels in one table."""
    return {layer.name: code_bits(layer) for layer in model.layers if layer.op in MAC_OPS}


def network_cost(model: Model, bits: dict[str, int], unit: str) -> float:
    """The network's weight storage with ``bits`` per layer: bits per weight or bytes; for ``uJ``
    the model's energy per inference with packed activations and codes (``bits`` unused: the
    model's own LUTs and clamp ranges say its widths)."""
    if unit == "uJ":
        return estimate(model, packed=True).energy_uj
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
        Layer -> {bits: increase of the prediction error when only that layer's weights are at those bits}.
    cost : float
        The model's cost in the budget's unit.
    weights : dict
        Layer -> the chosen :class:`~accel.frontend.weights.WeightQuant`.
    act_bits : dict
        Layer -> the width of the activation it writes (raw output layers: none).
    act_sensitivity : dict
        Layer -> {bits: increase of the prediction error when only that layer's output is that wide}.
    calibration : Calibration
        The calibration of the chosen widths (exponents of narrowed tensors chosen again, their ``bits``).
    """

    model: Model
    bits: dict[str, int]
    sensitivity: dict[str, dict[int, float]]
    cost: float
    weights: dict[str, WeightQuant]
    act_bits: dict[str, int] = field(default_factory=dict)
    act_sensitivity: dict[str, dict[int, float]] = field(default_factory=dict)
    calibration: Calibration | None = None


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


def _act_ranges(config: AcceleratorConfig, signed: bool, bits: int) -> tuple[int, int]:
    return config.replace(act_bits=bits).act_range(signed)


class _Widths:
    """Calibration and pricing of activation widths: per MAC layer that requantizes, the group of
    tensors its output belongs to, their float values on the sample, the exponent per width."""

    def __init__(self, graph: FloatGraph, calib: Calibration, x: np.ndarray, config: AcceleratorConfig):
        self.calib, self.config = calib, config
        groups = tensor_groups(graph)
        group_of = {t: members for members in groups.values() for t in members}
        raw = {n.output for n in graph.nodes if n.output in graph.outputs and not graph.consumers(n.output)}
        self.members = {n.name: group_of[n.output] for n in graph.nodes
                        if n.op in MAC_NODE_OPS and n.output not in raw}
        self.choices = [b for b in ACT_BITS if b <= config.act_bits] or [config.act_bits]
        values = run_float(graph, x, return_all=True) if len(self.choices) > 1 else {}
        self.exponent: dict[tuple[str, int], int] = {}
        for name, members in self.members.items():
            signed = calib.signed[members[0]]
            for b in self.choices[:-1]:
                v = np.concatenate([values[t].reshape(-1) for t in members])
                self.exponent[name, b] = choose_exponent(v, *_act_ranges(config, signed, b), calib.method)

    def calibration(self, act_bits: dict[str, int]) -> Calibration:
        """The calibration with each layer's output at its width (the widest: as calibrated)."""
        exponents, bits = dict(self.calib.exponents), dict(self.calib.bits)
        for name, b in act_bits.items():
            if b < self.choices[-1]:
                exponents.update({t: self.exponent[name, b] for t in self.members[name]})
                bits.update({t: b for t in self.members[name]})
        return replace(self.calib, exponents=exponents, bits=bits)


def _priced(model: Model, weight_bits: dict[str, int], act_bits: dict[str, int], signed: dict[str, bool]) -> Model:
    """``model`` with the widths of a candidate as the energy model reads them (LUT rows with
    ``2^b`` distinct levels, clamp ranges of ``b`` bits): pricing without emitting."""
    layers = []
    for layer in model.layers:
        if layer.op in MAC_OPS:
            lut = np.asarray(layer.arrays["lut"])
            rows = np.broadcast_to(np.arange(lut.shape[1]) % (1 << weight_bits[layer.name]), lut.shape)
            attrs = dict(layer.attrs)
            if layer.name in act_bits:
                lo, hi = _act_ranges(model.config, signed[layer.output], act_bits[layer.name])
                attrs.update(lo=max(int(attrs["lo"]), lo), hi=min(int(attrs["hi"]), hi))
            layer = replace(layer, attrs=attrs, arrays={**layer.arrays, "lut": rows.astype(np.int8)})
        layers.append(layer)
    return replace(model, layers=layers)


def search_precision(graph: FloatGraph, calib: Calibration, x: np.ndarray, config: AcceleratorConfig,
                     budget: Budget, options: QuantizeOptions | None = None, *,
                     progress: bool = False) -> PrecisionResult:
    """Per-layer weight and activation bits that meet ``budget`` with the least loss of prediction quality.

    Parameters
    ----------
    graph : FloatGraph
    calib : Calibration
        Activation exponents at the configuration's ``act_bits``.
    x : numpy.ndarray
        Images the sensitivities are measured on (a few hundred calibration images).
    config : AcceleratorConfig
        The hardware; its ``weight_bits`` and ``act_bits`` are the widest choices.
    budget : Budget
    options : QuantizeOptions

    Raises
    ------
    ConfigError
        The budget is below what every layer at its narrowest widths costs.
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
    energy = budget.unit == "uJ"
    widths = _Widths(graph, calib, x, config)
    act_choices = widths.choices if energy else widths.choices[-1:]

    def emit(bits: dict[str, int], act_bits: dict[str, int]) -> Model:
        return emit_integer_model(graph, widths.calibration(act_bits), config, options,
                                  weights={n: quant[n, b] for n, b in bits.items()})

    reference = run_float(graph, x)[graph.outputs[0]]
    current = {n.name: widest for n in nodes}
    current_act = dict.fromkeys(widths.members, act_choices[-1])
    start = emit(current, current_act)
    base = _prediction_error(start, x, reference)
    steps = [("w", n.name, b) for n in nodes for b in choices[:-1]]
    steps += [("a", name, b) for name in widths.members for b in act_choices[:-1]]
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc="sensitivity", unit="layer-width", leave=False)
    sensitivity: dict[str, dict[int, float]] = {n.name: {widest: 0.0} for n in nodes}
    act_sensitivity: dict[str, dict[int, float]] = {name: {act_choices[-1]: 0.0} for name in widths.members}
    for kind, name, b in steps:
        if kind == "w":
            sensitivity[name][b] = _prediction_error(emit({**current, name: b}, current_act), x, reference) - base
        else:
            act_sensitivity[name][b] = _prediction_error(emit(current, {**current_act, name: b}), x, reference) - base
    layers = {layer.name: layer for layer in start.layers if layer.op in MAC_OPS}
    cost_of = {(name, b): layer_cost_bits(layers[name], config, b) for name in current for b in choices}
    total_weights = sum(cost_of[name, widest][1] for name in current)
    signed = {t: start.tensors[t].dtype == "int8" for t in start.tensors}

    def cost(bits: dict[str, int], act_bits: dict[str, int]) -> float:
        if energy:
            return estimate(_priced(start, bits, act_bits, signed), packed=True).energy_uj
        total = sum(cost_of[name, b][0] for name, b in bits.items())
        return total / total_weights if budget.unit == "bpw" else total / 8

    floor = cost({name: choices[0] for name in current}, dict.fromkeys(current_act, act_choices[0]))
    if floor > budget.value:
        narrowest = f"{choices[0]}-bit weights" + (f" and {act_choices[0]}-bit activations" if energy else "")
        raise ConfigError(f"budget {budget}: cannot be met; with every layer at {narrowest} the network needs "
                          f"{floor:.4g} {budget.unit_name}")
    now = cost(current, current_act)
    while now > budget.value:
        best = None
        for kind, table, table_sens, options_ in (("w", current, sensitivity, choices),
                                                   ("a", current_act, act_sensitivity, act_choices)):
            for name, b in table.items():
                lower = [c for c in options_ if c < b]
                if not lower:
                    continue
                moved = {**table, name: lower[-1]}
                after = cost(moved, current_act) if kind == "w" else cost(current, moved)
                saved = now - after
                if saved <= 0:
                    continue
                score = max(table_sens[name][lower[-1]] - table_sens[name][b], 0.0) / saved
                if best is None or score < best[0]:
                    best = (score, table, name, lower[-1], after)
        _, table, name, b, now = best
        table[name] = b
    model = emit(current, current_act)
    final = network_cost(model, model_weight_bits(model), budget.unit) if energy else cost(current, current_act)
    model.metadata["precision"] = {"budget": budget.value, "unit": budget.unit, "weight_bits": dict(current),
                                   "act_bits": dict(current_act), "cost": final,
                                   "prediction_error": _prediction_error(model, x, reference)}
    return PrecisionResult(model, dict(current), sensitivity, final,
                           {name: quant[name, b] for name, b in current.items()}, dict(current_act), act_sensitivity,
                           widths.calibration(current_act))
