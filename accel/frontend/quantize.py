"""Lowering a calibrated float graph to the integer model (:class:`accel.ir.Model`).

The real-valued reading of the integer model (DESIGN.md) is ``x_real = q * 2^-e_x``
per tensor and ``w_real[n] = T[c] * 2^-e_w[n]`` per output channel, so a MAC
layer's accumulator has exponent ``e_x + e_w[n]`` and its requantization
shift is ``s[n] = e_x + e_w[n] - e_y``. This module chooses the exponents so
that every shift is a legal integer, then emits the layers:

* tensors that only move data (max pool, flatten, reshape, concat) share one
  exponent and one signedness with their inputs (a union of tensors, whose
  exponent is the coarsest calibrated one);
* a MAC layer whose output exponent would need a negative shift gets a coarser
  output exponent; a residual add's output is never finer than its finer input
  (its inputs are aligned with left shifts, then one rounding right shift);
* biases go to the accumulator scale ``round(b * 2^(e_x + e_w[n]))``;
* ReLU/ReLU6/Clip become the clamp bounds ``lo``/``hi``;
* average pools are a window sum times a 16-bit multiplier and a shift;
* the layers that produce graph outputs emit raw int32 accumulators
  (``raw=True``); their real scale per channel is in
  ``model.metadata["output_scales"]``.

With ``requant = multiply_shift`` (the baseline) weights get free float
per-channel scales and every MAC layer a ``mult``/``shift`` pair.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig, Requant
from ..datapath import ADD_INPUT_SHIFT_MAX, POOL_MULT_BITS, POOL_SHIFT_MAX
from ..errors import ConfigError, ModelImportError
from ..ir import Model, ModelBuilder
from .calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS, Calibration, calibrate
from .graph import FloatGraph, FloatNode
from .weights import DEFAULT_FAMILY, quantize_weights

__all__ = ["DEFAULT_LUT", "DEFAULT_GRANULARITY", "DEFAULT_LUT_SCOPE", "GRANULARITIES", "QuantizeOptions",
           "default_config", "lower",
           "quantize_graph", "quantize_onnx", "dequantize_output", "weight_tensor"]

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
        LUT family (``accel.frontend.weights.FAMILIES``).
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
                            name=node_name)


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


def _range(config: AcceleratorConfig, signed: bool) -> tuple[int, int]:
    return config.act_range(signed)


def _clamp_bounds(node: FloatNode, e: int, lo: int, hi: int) -> tuple[int, int]:
    if node.act is None:
        return lo, hi
    a_lo, a_hi = node.act
    scale = math.ldexp(1.0, e)
    if math.isfinite(a_lo):
        lo = min(max(lo, int(round(a_lo * scale))), hi)
    if math.isfinite(a_hi):
        hi = max(min(hi, int(round(a_hi * scale))), lo)
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


def lower(graph: FloatGraph, calib: Calibration, config: AcceleratorConfig,
          options: QuantizeOptions = QuantizeOptions(), *, progress: bool = False) -> Model:
    """Emit the integer model of a calibrated float graph.

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

    Returns
    -------
    accel.ir.Model
        Validated integer model.

    Raises
    ------
    ModelImportError
        A shift that no choice of exponents makes legal (names the layer).
    """
    power_of_two = config.requant is Requant.SHIFT
    mac_nodes = [n for n in graph.nodes if n.op in ("conv", "linear", "affine")]
    if progress:
        from tqdm import tqdm

        mac_nodes = tqdm(mac_nodes, desc="quantize weights", unit="layer", leave=False)
    wq = {n.name: _quantize_weights(weight_tensor(n, graph.shapes[n.inputs[0]]), n.name, config, options,
                                    power_of_two) for n in mac_nodes}

    # Exponent groups: data movement keeps the exponent (and the signedness).
    groups = _Groups()
    for node in graph.nodes:
        if node.op in ("max_pool", "flatten", "reshape", "concat"):
            for t in node.inputs:
                groups.union(node.output, t)
    tensors = [graph.input] + [n.output for n in graph.nodes]
    exp: dict[str, int] = {}
    signed: dict[str, bool] = {}
    for t in tensors:
        r = groups.find(t)
        exp[r] = min(exp.get(r, calib.exponents[t]), calib.exponents[t])
        signed[r] = signed.get(r, False) or calib.signed[t] or t == graph.input
    raw_outputs = {n.output for n in graph.nodes if n.op in ("conv", "linear", "affine")
                   and n.output in graph.outputs and not graph.consumers(n.output)}

    # Output exponents never finer than what a legal (non-negative) shift can reach.
    changed = True
    while changed:
        changed = False
        for node in graph.nodes:
            out = groups.find(node.output)
            if node.op in ("conv", "linear", "affine") and node.output not in raw_outputs and power_of_two:
                q = wq[node.name]
                live = np.any(q.dequantize().reshape(q.codes.shape[0], -1) != 0, axis=1)
                if live.any():
                    limit = exp[groups.find(node.inputs[0])] + int(np.min(q.exponent[live]))
                    if exp[out] > limit:
                        exp[out], changed = limit, True
            elif node.op == "add":
                limit = max(exp[groups.find(t)] for t in node.inputs)
                if exp[out] > limit:
                    exp[out], changed = limit, True

    def e_of(t):
        return exp[groups.find(t)]

    def dtype_of(t):
        return "int8" if signed[groups.find(t)] else "uint8"

    b = ModelBuilder(config, metadata={
        "name": graph.name, "source": str(Path(graph.source).resolve()) if graph.source else "",
        "frontend": {**asdict(options), "calibration_images": calib.images},
    })
    b.input(graph.input, graph.input_shape, "int8", exponent=e_of(graph.input))
    output_scales: dict[str, list[float]] = {}
    for node in graph.nodes:
        ins = node.inputs
        out = node.output
        if node.op in ("conv", "linear", "affine"):
            q = wq[node.name]
            e_x = e_of(ins[0])
            n_out = q.codes.shape[0]
            bias_real = np.broadcast_to(_bias(node), (n_out,)).astype(np.float64)
            raw = out in raw_outputs
            e_y = None if raw else e_of(out)
            live = np.any(q.dequantize().reshape(n_out, -1) != 0, axis=1)
            lo, hi = _clamp_bounds(node, e_y, *_range(config, signed[groups.find(out)])) if not raw else (0, 0)
            mult = None
            if power_of_two:
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
                scales = 1.0 / acc_scale
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
                scales = 1.0 / acc_scale
            bias = np.clip(np.round(bias_real * acc_scale), config.acc_min, config.acc_max).astype(np.int64)
            lut = np.asarray(q.lut, np.int8)
            kwargs = dict(codes=np.asarray(q.codes, np.uint8), lut=lut, bias=bias, shift=shift, mult=mult,
                          lo=lo, hi=hi, raw=raw, exponent=e_y, weight_exponent=e_w,
                          dtype=None if raw else dtype_of(out))
            x_shape = graph.shapes[ins[0]]
            if node.op == "conv" or (node.op == "affine" and len(x_shape) == 3):
                a = node.attrs
                conv = dict(stride=a["stride"], padding=a["padding"], dilation=a["dilation"],
                            groups=a["groups"]) if node.op == "conv" else dict(groups=x_shape[0])
                _add_mac(b, out, "conv2d", node.name, ins[0], conv, kwargs)
            else:
                _add_mac(b, out, "linear", node.name, ins[0], {}, kwargs)
            if raw:
                output_scales[out] = [float(v) for v in scales]
        elif node.op == "add":
            e_a, e_b = e_of(ins[0]), e_of(ins[1])
            e_t, e_y = max(e_a, e_b), e_of(out)
            if e_t - min(e_a, e_b) > ADD_INPUT_SHIFT_MAX:
                raise ModelImportError(f"layer {node.name!r}: input exponents {e_a} and {e_b} are more than "
                                       f"{ADD_INPUT_SHIFT_MAX} apart; the add's left shifts allow "
                                       f"0..{ADD_INPUT_SHIFT_MAX}")
            lo, hi = _clamp_bounds(node, e_y, *_range(config, signed[groups.find(out)]))
            b.add_layer(node.name, "add", ins, {"shift_a": e_t - e_a, "shift_b": e_t - e_b, "shift": e_t - e_y,
                                                "lo": lo, "hi": hi},
                        dtype=dtype_of(out), exponent=e_y, output=out)
        elif node.op in ("avg_pool", "global_avg_pool"):
            e_x, e_y = e_of(ins[0]), e_of(out)
            window = (math.prod(node.attrs["kernel"]) if node.op == "avg_pool"
                      else math.prod(graph.shapes[ins[0]][1:]))
            mult, shift = _mult_shift(math.ldexp(1.0, e_y - e_x) / window, POOL_MULT_BITS, POOL_SHIFT_MAX,
                                      f"layer {node.name!r}")
            lo, hi = _range(config, signed[groups.find(out)])
            attrs = {"mult": mult, "shift": shift, "lo": lo, "hi": hi}
            if node.op == "avg_pool":
                attrs.update(kernel=list(node.attrs["kernel"]), stride=list(node.attrs["stride"]),
                             padding=list(node.attrs["padding"]), pad_value=0)
            b.add_layer(node.name, node.op, ins, attrs, dtype=dtype_of(out), exponent=e_y, output=out)
        elif node.op == "max_pool":
            attrs = {"kernel": list(node.attrs["kernel"]), "stride": list(node.attrs["stride"]),
                     "padding": list(node.attrs["padding"])}
            b.add_layer(node.name, "max_pool", ins, attrs, dtype=dtype_of(out), exponent=e_of(out), output=out)
        elif node.op in ("flatten", "reshape", "concat"):
            attrs = ({"shape": list(node.attrs["shape"])} if node.op == "reshape"
                     else {"axis": node.attrs["axis"]} if node.op == "concat" else {})
            b.add_layer(node.name, node.op, ins, attrs, dtype=dtype_of(out), exponent=e_of(out), output=out)
        else:  # pragma: no cover
            raise ModelImportError(f"layer {node.name!r}: op {node.op!r} cannot be lowered")
    b.model.metadata["output_scales"] = output_scales
    return b.build(graph.outputs)


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
                "pad_value": 0}
    full.update(lo=int(kw["lo"]), hi=int(kw["hi"]), raw=bool(kw["raw"]))
    dtype = "int32" if kw["raw"] else kw["dtype"]
    return builder.add_layer(name, op, [x], full, arrays, dtype=dtype, exponent=kw["exponent"], output=output)


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
    calib = calibrate(graph, calib_x, method=options.calib_method, act_bits=config.act_bits,
                      size=options.calib_size, seed=options.seed, progress=progress)
    return lower(graph, calib, config, options, progress=progress)


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
    return values * math.ldexp(1.0, -info.exponent)
