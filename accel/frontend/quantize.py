"""From a calibrated float graph to the integer model (:class:`accel.ir.Model`).

The real-valued reading of the integer model (DESIGN.md) is ``x_real = q * 2^-e_x``
per tensor and ``w_real[n] = T[c] * 2^-e_w[n]`` per output channel, so a MAC
layer's accumulator has exponent ``e_x + e_w[n]`` and its requantization
shift is ``s[n] = e_x + e_w[n] - e_y``. :func:`emit_integer_model` quantizes
the weights (:func:`quantize_layer_weights`), chooses the exponents so that
every shift is a legal integer (:func:`assign_exponents`), then emits one
layer per float node through a table of emitters, one per float op:

* tensors that only move data (max pool, flatten, reshape, concat) share one
  exponent and one signedness with their inputs (a union of tensors, whose
  exponent is the coarsest calibrated one);
* a MAC layer whose output exponent would need a negative shift gets a coarser
  output exponent; a residual add's output is never finer than its finer input
  (its inputs are aligned with left shifts, then one rounding right shift);
* biases go to the accumulator scale ``round(b * 2^(e_x + e_w[n]))``;
* an activation offset ``o`` (``x_real = (q + o) * 2^-e``, learned by quantization-aware
  training) folds exactly into the biases of the layers around its tensor and into the
  consumers' ``pad_value`` (:func:`offset_groups`), so the hardware stays symmetric;
* ReLU/ReLU6/Clip become the clamp bounds ``lo``/``hi``;
* average pools are a window sum times a 16-bit multiplier and a shift;
* the layers that produce graph outputs emit raw int32 accumulators
  (``raw=True``); their real scale per channel is in
  ``model.metadata["output_scales"]``.

With ``requant = multiply_shift`` (the baseline) weights get free float
per-channel scales and every MAC layer a ``mult``/``shift`` pair.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig, Requant
from ..datapath import ADD_INPUT_SHIFT_MAX, POOL_MULT_BITS, POOL_SHIFT_MAX
from ..errors import ConfigError, ModelImportError
from ..ir import Model, ModelBuilder
from .calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS, Calibration, calibrate
from .graph import MAC_NODE_OPS, FloatGraph, FloatNode
from .lut import DEFAULT_FAMILY
from .weights import WeightQuant, quantize_weights

__all__ = ["DEFAULT_LUT", "DEFAULT_GRANULARITY", "DEFAULT_LUT_SCOPE", "GRANULARITIES", "QuantizeOptions",
           "TensorExponents", "assign_exponents", "default_config", "dequantize_output", "emit_integer_model",
           "offset_bias", "offset_groups", "quantize_graph", "quantize_layer_weights", "quantize_onnx",
           "source_sha256", "tensor_groups", "weight_tensor"]

#: Default LUT family of ``accel quantize`` (the best general-purpose choice at W4A8, docs/RESULTS.md).
DEFAULT_LUT = DEFAULT_FAMILY
#: Default granularity of the power-of-two weight exponents.
DEFAULT_GRANULARITY = "channel"
#: LUT scope of the front end's default configuration: one LUT per output channel (each array
#: column has its own decoder, so this costs only loading; at W4A8 it is the difference between
#: 1.1 and -0.2 points on the MobileNet-style model, docs/RESULTS.md).
DEFAULT_LUT_SCOPE = AcceleratorConfig().lut_scope.value  # the one default lives in AcceleratorConfig
GRANULARITIES = ("layer", "channel")


@dataclass(frozen=True)
class QuantizeOptions:
    """How the front end quantizes (everything but the hardware, which is the config).

    Parameters
    ----------
    lut : str
        LUT family (``accel.frontend.lut.FAMILIES``).
    granularity : str
        ``channel`` (one power-of-two weight exponent per output channel) or ``layer``.
    levels : int or None
        Use fewer distinct LUT levels than ``2 ** weight_bits``.
    calib_method : str
        ``minmax``, ``percentile`` or ``mse``.
    calib_size, seed : int
        Number of calibration images and the sampling seed.
    user_lut : tuple of int or None
        The levels of the ``user`` LUT family (signed int8 values).
    """

    lut: str = DEFAULT_LUT
    granularity: str = DEFAULT_GRANULARITY
    levels: int | None = None
    calib_method: str = DEFAULT_METHOD
    calib_size: int = DEFAULT_CALIB_SIZE
    seed: int = 0
    user_lut: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise ConfigError(f"granularity {self.granularity!r} is not one of {', '.join(GRANULARITIES)}")
        if self.calib_method not in METHODS:
            raise ConfigError(f"calibration method {self.calib_method!r} is not one of {', '.join(METHODS)}")
        if self.calib_size < 1:
            raise ConfigError(f"calib_size {self.calib_size}: expected a positive number of images")


def source_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of the network file a model is quantized from: ``accel eval`` checks it before
    it trusts that file's float results (``""`` when the file cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return ""


def default_config(**changes) -> AcceleratorConfig:
    """The front end's default accelerator: ``AcceleratorConfig()`` (one LUT per output channel),
    with ``changes`` applied.

    >>> default_config(weight_bits=3).lut_scope.value, default_config().weight_bits
    ('channel', 4)
    """
    return AcceleratorConfig(**changes)


def weight_tensor(node: FloatNode, shape: tuple[int, ...]) -> np.ndarray:
    """The weight tensor (output channel first) that a MAC node puts on the array.

    ``affine`` nodes become a depthwise 1x1 conv (C, 1, 1, 1) on (C, H, W)
    tensors, or a diagonal linear (C, C) on flat ones.
    """
    if node.op in ("conv", "linear"):
        return node.params["weight"]
    scale = node.params["scale"]
    if len(shape) == 3:
        return scale.reshape(-1, 1, 1, 1)
    return np.diag(scale)


def _bias(node: FloatNode) -> np.ndarray:
    return node.params["bias"] if node.op in ("conv", "linear") else node.params["shift"]


def _quantize_weights(weights, node_name, config, options, power_of_two):
    user_lut = None if options.user_lut is None else np.asarray(options.user_lut, np.int8)
    return quantize_weights(weights, family=options.lut, weight_bits=config.weight_bits,
                            granularity=options.granularity, lut_scope=config.lut_scope.value,
                            levels=options.levels, user_lut=user_lut, power_of_two=power_of_two,
                            name=node_name, pe_kind=config.pe_kind.value)


class _Groups:
    """Union-find over tensor names (tensors that must share an exponent)."""

    def __init__(self):
        self.parent: dict[str, str] = {}

    def find(self, t: str) -> str:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra


def _range(config: AcceleratorConfig, exponents: TensorExponents, tensor: str) -> tuple[int, int]:
    """The stored range of ``tensor``: ``act_bits`` wide, or its own narrower width (mixed precision)."""
    return config.replace(act_bits=exponents.bits(tensor, config.act_bits)).act_range(exponents.signed(tensor))


def _clamp_bounds(node: FloatNode, e: int, lo: int, hi: int, offset: int = 0) -> tuple[int, int]:
    """The stored range ``[lo, hi]`` narrowed by the node's fused activation (codes are ``round(x * 2^e) - offset``)."""
    if node.act is None:
        return lo, hi
    a_lo, a_hi = node.act
    scale = math.ldexp(1.0, e)
    if math.isfinite(a_lo):
        lo = min(max(lo, int(round(a_lo * scale)) - offset), hi)
    if math.isfinite(a_hi):
        hi = max(min(hi, int(round(a_hi * scale)) - offset), lo)
    return lo, hi


def _mult_shift(ratio: float, mult_bits: int, max_shift: int, where: str) -> tuple[int, int]:
    """``M, s`` with ``M / 2^s ~= ratio``, ``M < 2^mult_bits`` and ``0 <= s <= max_shift``."""
    m_max = (1 << mult_bits) - 1
    if ratio <= 0:
        return 0, 0
    s = int(min(max(math.floor(math.log2(m_max / ratio)), 0), max_shift))
    m = int(round(ratio * 2.0 ** s))
    if m > m_max:
        raise ModelImportError(f"{where}: rescale factor {ratio:.3g} needs a multiplier above {m_max}")
    return m, s


class TensorExponents:
    """The exponent and signedness of every tensor, as :func:`assign_exponents` chose them.

    Tensors that only move data (max pool, flatten, reshape, concat) are one
    group with their inputs: one exponent, one signedness.

    Members
    -------
    raw_outputs : set of str
        Tensors that a MAC layer emits as raw int32 accumulators (graph outputs
        that nothing else reads); they have no exponent of their own.
    """

    def __init__(self, groups: _Groups, exponents: dict[str, int], signed: dict[str, bool], raw_outputs: set[str],
                 offsets: dict[str, int] | None = None, bits: dict[str, int] | None = None):
        self._groups = groups
        self._exponents = exponents
        self._signed = signed
        self._offsets = offsets or {}
        self._bits = bits or {}
        self.raw_outputs = raw_outputs

    def exponent(self, tensor: str) -> int:
        """``e`` with ``x_real = q * 2^-e``."""
        return self._exponents[self._groups.find(tensor)]

    def signed(self, tensor: str) -> bool:
        return self._signed[self._groups.find(tensor)]

    def bits(self, tensor: str, default: int) -> int:
        """The tensor's activation width: its own (mixed precision) or ``default``."""
        return self._bits.get(self._groups.find(tensor), default)

    def offset(self, tensor: str) -> int:
        """The integer activation offset ``o``: ``x_real = (q + o) * 2^-e`` (0 for most tensors)."""
        return self._offsets.get(self._groups.find(tensor), 0)

    def dtype(self, tensor: str) -> str:
        return "int8" if self.signed(tensor) else "uint8"


def quantize_layer_weights(graph: FloatGraph, config: AcceleratorConfig, options: QuantizeOptions = QuantizeOptions(),
                           *, progress: bool = False) -> dict[str, WeightQuant]:
    """LUT codes, LUTs and steps of every MAC node's weights (:func:`~accel.frontend.weights.quantize_weights`).

    Returns
    -------
    dict
        Node name -> :class:`~accel.frontend.weights.WeightQuant`; power-of-two
        steps unless ``config.requant`` is ``multiply_shift``.
    """
    power_of_two = config.requant is Requant.SHIFT
    mac_nodes = [n for n in graph.nodes if n.op in MAC_NODE_OPS]
    if progress:
        from tqdm import tqdm

        mac_nodes = tqdm(mac_nodes, desc="quantize weights", unit="layer", leave=False)
    return {n.name: _quantize_weights(weight_tensor(n, graph.shapes[n.inputs[0]]), n.name, config, options,
                                      power_of_two) for n in mac_nodes}


def _live_channels(q: WeightQuant) -> np.ndarray:
    """Output channels with at least one nonzero weight."""
    return np.any(q.dequantize().reshape(q.codes.shape[0], -1) != 0, axis=1)


def _data_movement_groups(graph: FloatGraph) -> _Groups:
    """Tensors that share one exponent: data-movement outputs with their inputs."""
    groups = _Groups()
    for node in graph.nodes:
        if node.op in ("max_pool", "flatten", "reshape", "concat"):
            for t in node.inputs:
                groups.union(node.output, t)
    return groups


def tensor_groups(graph: FloatGraph) -> dict[str, list[str]]:
    """Every group of tensors that share one exponent (a data-movement output with its inputs):
    group root -> member tensors, in graph order."""
    groups = _data_movement_groups(graph)
    members: dict[str, list[str]] = {}
    for t in [graph.input] + [n.output for n in graph.nodes]:
        members.setdefault(groups.find(t), []).append(t)
    return members


def offset_groups(graph: FloatGraph) -> dict[str, list[str]]:
    """The groups of tensors (sharing one exponent) whose activation offset folds exactly.

    An offset ``o`` on a tensor (``x_real = (q + o) * 2^-e``) folds into its producers' biases as
    ``-o * 2^s[n]`` (``rshift_round(acc - o * 2^s, s) = rshift_round(acc, s) - o`` exactly) and into
    its consumers' biases as ``+o * sum_k T[c[n, k]]`` with ``pad_value = -o`` (a padded position then
    adds nothing, as the real zero it stands for). So a group qualifies when every member is made
    by a MAC layer that requantizes or by data movement within the group, and read only by MAC layers
    or data movement: adds and pools have no bias to fold into, the input is quantized outside the
    model, and raw outputs have no exponent.

    Returns
    -------
    dict
        Group root tensor -> its member tensors.
    """
    producer = {n.output: n for n in graph.nodes}
    members = tensor_groups(graph)
    movement = ("max_pool", "flatten", "reshape", "concat")
    out = {}
    for root, tensors in members.items():
        ok = graph.input not in tensors and not any(t in graph.outputs for t in tensors)
        for t in tensors:
            node = producer.get(t)
            ok = ok and node is not None and (node.op in MAC_NODE_OPS or node.op in movement)
            ok = ok and all(c.op in MAC_NODE_OPS or c.op in movement for c in graph.consumers(t))
        if ok and any(producer[t].op in MAC_NODE_OPS for t in tensors):
            out[root] = tensors
    return out


def _checked_offsets(graph: FloatGraph, groups: _Groups, offsets: dict[str, int],
                     signed: dict[str, bool]) -> dict[str, int]:
    """Calibration offsets per group root; refused where they would not fold exactly."""
    foldable = offset_groups(graph)
    out: dict[str, int] = {}
    for t, o in (offsets or {}).items():
        if not o:
            continue
        r = groups.find(t)
        if not any(t in members for members in foldable.values()):
            raise ModelImportError(f"tensor {t!r}: an activation offset folds only into tensors made and read by "
                                   f"conv/linear layers (and data movement)")
        if not signed[r]:
            raise ModelImportError(f"tensor {t!r}: activation offsets are for signed tensors; an unsigned one "
                                   f"already covers [0, max]")
        if out.get(r, o) != o:
            raise ModelImportError(f"tensor {t!r}: its group has two activation offsets, {out[r]} and {o}")
        out[r] = int(o)
    return out


def assign_exponents(graph: FloatGraph, calib: Calibration, weights: dict[str, WeightQuant],
                     power_of_two: bool = True) -> TensorExponents:
    """Choose every tensor's exponent so that each shift is a legal (non-negative) integer.

    Starts from the calibrated exponents; a data-movement group takes the
    coarsest of its members; a MAC layer's output is made coarser while its
    shift ``e_x + e_w[n] - e_y`` would be negative for a live channel (with
    power-of-two weights); a residual add's output is never finer than its
    finer input. Repeats until nothing changes.

    Parameters
    ----------
    graph : FloatGraph
    calib : Calibration
        Per-tensor exponents and signedness.
    weights : dict
        :func:`quantize_layer_weights` of ``graph``.
    power_of_two : bool
        The weights have power-of-two steps (``requant = shift``).

    Returns
    -------
    TensorExponents
    """
    groups = _data_movement_groups(graph)
    tensors = [graph.input] + [n.output for n in graph.nodes]
    exp: dict[str, int] = {}
    signed: dict[str, bool] = {}
    for t in tensors:
        r = groups.find(t)
        exp[r] = min(exp.get(r, calib.exponents[t]), calib.exponents[t])
        signed[r] = signed.get(r, False) or calib.signed[t] or t == graph.input
    raw_outputs = {n.output for n in graph.nodes if n.op in MAC_NODE_OPS
                   and n.output in graph.outputs and not graph.consumers(n.output)}
    offsets = _checked_offsets(graph, groups, calib.offsets, signed)
    bits = {groups.find(t): int(b) for t, b in calib.bits.items()}

    # Output exponents never finer than what a legal (non-negative) shift can reach.
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            out = groups.find(node.output)
            if node.op in MAC_NODE_OPS and node.output not in raw_outputs and power_of_two:
                q = weights[node.name]
                live = _live_channels(q)
                if live.any():
                    limit = exp[groups.find(node.inputs[0])] + int(np.min(q.exponent[live]))
                    if exp[out] > limit:
                        exp[out], changed = limit, True
            elif node.op == "add":
                limit = max(exp[groups.find(t)] for t in node.inputs)
                if exp[out] > limit:
                    exp[out], changed = limit, True
    return TensorExponents(groups, exp, signed, raw_outputs, offsets, bits)


def emit_integer_model(graph: FloatGraph, calib: Calibration, config: AcceleratorConfig,
                       options: QuantizeOptions = QuantizeOptions(), *, progress: bool = False,
                       weights: dict[str, WeightQuant] | None = None) -> Model:
    """Emit the integer model of a calibrated float graph: weights, exponents, then one layer per node.

    Parameters
    ----------
    graph : FloatGraph
        Imported network (BatchNorm folded, activations fused).
    calib : Calibration
        Per-tensor exponents and signedness from :func:`~accel.frontend.calibrate.calibrate`.
    config : AcceleratorConfig
        The accelerator (weight bits, LUT scope, activation bits, requantization).
    options : QuantizeOptions
        LUT family, granularity, levels.
    progress : bool
        Show a progress bar over the layers' weight quantization.
    weights : dict, optional
        Node name -> :class:`~accel.frontend.weights.WeightQuant` of every MAC node, already
        quantized, when the caller has them: the post-training methods of :mod:`accel.frontend.ptq`
        correct biases against them first, quantization-aware training brings its learned codes,
        LUTs and exponents; default: :func:`quantize_layer_weights`.

    Returns
    -------
    accel.ir.Model
        Validated integer model.

    Raises
    ------
    ModelImportError
        A shift that no choice of exponents makes legal (names the layer).
    """
    if weights is None:
        weights = quantize_layer_weights(graph, config, options, progress=progress)
    pad_lo, pad_hi = config.act_range(True)
    for tensor, offset in calib.offsets.items():
        if not pad_lo <= -offset <= pad_hi:
            raise ModelImportError(f"tensor {tensor!r}: activation offset {offset} needs pad value {-offset}, "
                                   f"outside the array's {config.act_bits}-bit activations ({pad_lo}..{pad_hi})")
    for tensor, bits in calib.bits.items():
        if not 2 <= bits <= config.act_bits:
            raise ModelImportError(f"tensor {tensor!r}: activation width {bits} is outside 2..{config.act_bits} "
                                   f"(the hardware's act_bits)")
    exponents = assign_exponents(graph, calib, weights, config.requant is Requant.SHIFT)
    builder = ModelBuilder(config, metadata={
        "name": graph.name, "source": str(Path(graph.source).resolve()) if graph.source else "",
        "source_sha256": source_sha256(graph.source) if graph.source else "",
        "frontend": {**asdict(options), "calibration_images": calib.images,
                     "calibration_input": calib.input_statistics},
    })
    builder.input(graph.input, graph.input_shape, "int8", exponent=exponents.exponent(graph.input))
    emission = _Emission(graph, config, weights, exponents, builder)
    for node in graph.nodes:
        _EMITTERS[node.op](emission, node)
    builder.model.metadata["output_scales"] = emission.output_scales
    offsets = {t: emission.exponents.offset(t) for t in [graph.input] + [n.output for n in graph.nodes]}
    if any(offsets.values()):  # the real reading of these tensors is (q + o) * 2^-e
        builder.model.metadata["activation_offsets"] = {t: o for t, o in offsets.items() if o}
    return builder.build(graph.outputs)


@dataclass
class _Emission:
    """What every layer emitter reads, and the output scales of raw layers that they collect."""

    graph: FloatGraph
    config: AcceleratorConfig
    weights: dict[str, WeightQuant]
    exponents: TensorExponents
    builder: ModelBuilder
    output_scales: dict[str, list[float]] = field(default_factory=dict)


def _emit_mac(em: _Emission, node: FloatNode) -> None:
    """A conv, linear or affine node as a ``conv2d`` or ``linear`` layer (raw when it ends the network)."""
    config, ins, out = em.config, node.inputs, node.output
    q = em.weights[node.name]
    e_x = em.exponents.exponent(ins[0])
    n_out = q.codes.shape[0]
    bias_real = np.broadcast_to(_bias(node), (n_out,)).astype(np.float64)
    raw = out in em.exponents.raw_outputs
    e_y = None if raw else em.exponents.exponent(out)
    live = _live_channels(q)
    o_x, o_y = em.exponents.offset(ins[0]), 0 if raw else em.exponents.offset(out)
    lo, hi = _clamp_bounds(node, e_y, *_range(config, em.exponents, out), o_y) if not raw else (0, 0)
    mult = None
    if config.requant is Requant.SHIFT:
        e_w = q.exponent.astype(np.int64).copy()
        if not raw:
            e_w[~live] = e_y - e_x  # dead channels: output the bias, shift 0
        acc_scale = np.ldexp(1.0, (e_x + e_w).astype(int))
        shift = np.zeros(n_out, np.int64) if raw else e_x + e_w - e_y
        if not raw and (shift.min() < 0 or shift.max() > config.max_shift):
            n = int(np.argmax((shift < 0) | (shift > config.max_shift)))
            raise ModelImportError(
                f"layer {node.name!r}: channel {n} needs shift {int(shift[n])}, outside 0.."
                f"{config.max_shift} (input exponent {e_x}, weight exponent {int(e_w[n])}, output "
                f"exponent {e_y})")
    else:
        step = np.asarray(q.step, np.float64)
        acc_scale = np.ldexp(1.0, e_x) / step
        e_w = None
        shift = np.zeros(n_out, np.int64)
        mult = np.ones(n_out, np.int64)
        if not raw:
            for n in range(n_out):
                mult[n], shift[n] = _mult_shift(step[n] * math.ldexp(1.0, e_y - e_x), config.mult_bits,
                                                config.max_shift, f"layer {node.name!r} channel {n}")
    bias = np.round(bias_real * acc_scale)
    lut = np.asarray(q.lut, np.int8)
    if o_x or o_y:
        if mult is not None:
            raise ModelImportError(f"layer {node.name!r}: activation offsets fold only with requant 'shift'")
        bias = bias + offset_bias(q.codes, lut, shift, o_x, o_y)
    bias = np.clip(bias, config.acc_min, config.acc_max).astype(np.int64)
    kwargs = dict(codes=np.asarray(q.codes, np.uint8), lut=lut, bias=bias, shift=shift, mult=mult,
                  lo=lo, hi=hi, raw=raw, exponent=e_y, weight_exponent=e_w,
                  dtype=None if raw else em.exponents.dtype(out), pad_value=-o_x)
    x_shape = em.graph.shapes[ins[0]]
    if node.op == "conv" or (node.op == "affine" and len(x_shape) == 3):
        a = node.attrs
        conv = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                    groups=a["groups"]) if node.op == "conv" else dict(groups=x_shape[0])
        _add_mac(em.builder, out, "conv2d", node.name, ins[0], conv, kwargs)
    else:
        _add_mac(em.builder, out, "linear", node.name, ins[0], {}, kwargs)
    if raw:
        em.output_scales[out] = [float(v) for v in 1.0 / acc_scale]


def offset_bias(codes: np.ndarray, lut: np.ndarray, shift: np.ndarray, input_offset: int,
                output_offset: int) -> np.ndarray:
    """What activation offsets add to a MAC layer's integer biases (:func:`offset_groups`):
    ``input_offset * sum_k T[c[n, k]] - output_offset * 2^shift[n]``, exact integers."""
    n_out = codes.shape[0]
    lut = np.asarray(lut, np.int64).reshape(-1, lut.shape[-1])
    rows = np.broadcast_to(lut, (n_out, lut.shape[1]))
    flat = np.asarray(codes, np.int64).reshape(n_out, -1)
    weight_sums = np.take_along_axis(rows, flat, axis=1).sum(axis=1)
    return input_offset * weight_sums - output_offset * np.left_shift(1, np.asarray(shift, np.int64))


def _emit_add(em: _Emission, node: FloatNode) -> None:
    """A residual add: inputs aligned to the finer exponent by left shifts, one rounding right shift."""
    ins, out = node.inputs, node.output
    e_a, e_b = em.exponents.exponent(ins[0]), em.exponents.exponent(ins[1])
    e_t, e_y = max(e_a, e_b), em.exponents.exponent(out)
    if e_t - min(e_a, e_b) > ADD_INPUT_SHIFT_MAX:
        raise ModelImportError(f"layer {node.name!r}: input exponents {e_a} and {e_b} are more than "
                               f"{ADD_INPUT_SHIFT_MAX} apart; the add's left shifts allow 0..{ADD_INPUT_SHIFT_MAX}")
    lo, hi = _clamp_bounds(node, e_y, *_range(em.config, em.exponents, out))
    em.builder.add_layer(node.name, "add", ins, {"shift_a": e_t - e_a, "shift_b": e_t - e_b, "shift": e_t - e_y,
                                                 "lo": lo, "hi": hi},
                         dtype=em.exponents.dtype(out), exponent=e_y, output=out)


def _emit_average_pool(em: _Emission, node: FloatNode) -> None:
    """An average or global average pool: a window sum times a 16-bit multiplier and a shift."""
    ins, out = node.inputs, node.output
    e_x, e_y = em.exponents.exponent(ins[0]), em.exponents.exponent(out)
    window = (math.prod(node.attrs["kernel"]) if node.op == "avg_pool"
              else math.prod(em.graph.shapes[ins[0]][1:]))
    mult, shift = _mult_shift(math.ldexp(1.0, e_y - e_x) / window, POOL_MULT_BITS, POOL_SHIFT_MAX,
                              f"layer {node.name!r}")
    lo, hi = _range(em.config, em.exponents, out)
    attrs = {"mult": mult, "shift": shift, "lo": lo, "hi": hi}
    arrays = {}
    if node.op == "avg_pool":
        attrs.update(kernel=list(node.attrs["kernel"]), stride=list(node.attrs["stride"]),
                     padding=list(node.attrs["padding"]), pad_value=0)
        if not node.attrs.get("count_include_pad", True):  # a multiplier and a shift per window size
            pairs = [_mult_shift(math.ldexp(1.0, e_y - e_x) / count, POOL_MULT_BITS, POOL_SHIFT_MAX,
                                 f"layer {node.name!r}") for count in range(1, window + 1)]
            arrays = {"count_mult": np.array([m for m, _ in pairs], np.int64),
                      "count_shift": np.array([s for _, s in pairs], np.int64)}
    em.builder.add_layer(node.name, node.op, ins, attrs, arrays or None, dtype=em.exponents.dtype(out), exponent=e_y,
                         output=out)


def _emit_data_movement(em: _Emission, node: FloatNode) -> None:
    """Max pool, flatten, reshape, concat: the output shares its inputs' exponent."""
    if node.op == "max_pool":
        attrs = {"kernel": list(node.attrs["kernel"]), "stride": list(node.attrs["stride"]),
                 "padding": list(node.attrs["padding"])}
    elif node.op == "reshape":
        attrs = {"shape": list(node.attrs["shape"])}
    elif node.op == "concat":
        attrs = {"axis": node.attrs["axis"]}
    else:
        attrs = {}
    em.builder.add_layer(node.name, node.op, node.inputs, attrs, dtype=em.exponents.dtype(node.output),
                         exponent=em.exponents.exponent(node.output), output=node.output)


#: Float-graph op -> the function that emits its integer layer (every op of ``graph.FLOAT_OPS``).
_EMITTERS = {"conv": _emit_mac, "linear": _emit_mac, "affine": _emit_mac, "add": _emit_add,
             "avg_pool": _emit_average_pool, "global_avg_pool": _emit_average_pool,
             "max_pool": _emit_data_movement, "flatten": _emit_data_movement, "reshape": _emit_data_movement,
             "concat": _emit_data_movement}


def _add_mac(builder: ModelBuilder, output: str, op: str, name: str, x: str, attrs: dict, kw: dict) -> str:
    """A MAC layer named ``name`` writing tensor ``output`` (the builder's helpers name both alike)."""
    arrays = {"codes": kw["codes"], "lut": np.atleast_2d(kw["lut"]), "bias": kw["bias"], "shift": kw["shift"]}
    if kw["mult"] is not None:
        arrays["mult"] = kw["mult"]
    if kw["weight_exponent"] is not None:
        arrays["weight_exponent"] = kw["weight_exponent"]
    full = {}
    if op == "conv2d":
        full = {"stride": list(attrs.get("stride", (1, 1))), "padding": list(attrs.get("padding", (0, 0, 0, 0))),
                "dilation": list(attrs.get("dilation", (1, 1))), "groups": int(attrs.get("groups", 1)),
                "pad_value": int(kw["pad_value"])}
    full.update(lo=int(kw["lo"]), hi=int(kw["hi"]), raw=bool(kw["raw"]))
    dtype = "int32" if kw["raw"] else kw["dtype"]
    return builder.add_layer(name, op, [x], full, arrays, dtype=dtype, exponent=kw["exponent"], output=output)


def _check_pe_kind(config: AcceleratorConfig, options: QuantizeOptions) -> None:
    """The LUT family (and a user LUT) must be one that the config's PEs decode."""
    from .weights import check_pe_family

    user = None if options.user_lut is None else np.round(np.asarray(options.user_lut, np.float64)).astype(np.int64)
    check_pe_family(options.lut, config.pe_kind.value, user)


def quantize_graph(graph: FloatGraph, calib_x: np.ndarray, config: AcceleratorConfig | None = None,
                   options: QuantizeOptions = QuantizeOptions(), *, progress: bool = False) -> Model:
    """Calibrate ``graph`` on ``calib_x`` and lower it to an integer model.

    Parameters
    ----------
    graph : FloatGraph
    calib_x : numpy.ndarray
        Calibration images (N, ...) normalized as the model expects.
    config : AcceleratorConfig, optional
        The accelerator (default: :func:`default_config`: W4 with a LUT per output channel, A8,
        shift requantization).
    options : QuantizeOptions
    progress : bool

    Returns
    -------
    accel.ir.Model
    """
    config = config or default_config()
    _check_pe_kind(config, options)
    calib = calibrate(graph, calib_x, method=options.calib_method, act_bits=config.act_bits,
                      size=options.calib_size, seed=options.seed, progress=progress)
    return emit_integer_model(graph, calib, config, options, progress=progress)


def quantize_onnx(path: str | os.PathLike, calib: str | os.PathLike | np.ndarray,
                  config: AcceleratorConfig | None = None, options: QuantizeOptions = QuantizeOptions(), *,
                  progress: bool = False) -> Model:
    """Import an ONNX file, calibrate it and emit the integer model.

    Parameters
    ----------
    path : path
        The ``.onnx`` file.
    calib : str, path or numpy.ndarray
        Calibration data: ``mnist5k``/``digits`` (their training split), an
        ``.npz`` with ``x`` and ``y``, or an array of images.
    config : AcceleratorConfig, optional
    options : QuantizeOptions
    progress : bool

    Returns
    -------
    accel.ir.Model

    Examples
    --------
    >>> from accel.frontend import quantize_onnx
    >>> from accel.frontend.workflow import MODELS_DIR
    >>> model = quantize_onnx(MODELS_DIR / "cnn_digits.onnx", "digits")
    >>> [layer.op for layer in model.layers][:3]
    ['conv2d', 'max_pool', 'conv2d']
    """
    from ..data import load_dataset
    from .onnx_import import import_onnx

    _check_pe_kind(config or default_config(), options)  # before the import and calibration work
    graph = import_onnx(path)
    x = calib if isinstance(calib, np.ndarray) else load_dataset(calib, "calib").x
    return quantize_graph(graph, x, config, options, progress=progress)


def dequantize_output(model: Model, name: str, values: np.ndarray) -> np.ndarray:
    """Real values of an integer output tensor: raw accumulators times their per-channel scale,
    requantized tensors times ``2^-exponent``.

    Parameters
    ----------
    model : accel.ir.Model
    name : str
        Tensor name.
    values : numpy.ndarray
        Integer values (N, ...) as the engine returns them.
    """
    values = np.asarray(values, np.float64)
    scales = model.metadata.get("output_scales", {}).get(name)
    if scales is not None:
        shape = (1, -1) + (1,) * (values.ndim - 2)
        return values * np.asarray(scales, np.float64).reshape(shape)
    info = model.tensors[name]
    if info.exponent is None:
        producer = model.producer(name)
        if producer is not None and "weight_exponent" in producer.arrays:
            e_in = model.tensors[producer.inputs[0]].exponent
            e = np.asarray(producer.arrays["weight_exponent"], np.float64) + e_in
            shape = (1, -1) + (1,) * (values.ndim - 2)
            return values * np.exp2(-e).reshape(shape)
        raise ModelImportError(f"tensor {name!r} has no exponent or output scale; cannot read it as real values")
    offset = model.metadata.get("activation_offsets", {}).get(name, 0)
    return (values + offset) * math.ldexp(1.0, -info.exponent)
