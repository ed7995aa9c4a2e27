"""Lowering of integer layers to an exact floating-point ONNX graph for onnxruntime.

Why this is exact: every tensor holds integers. A sum of integers computed in
float32 is exact whatever the summation order as long as every partial sum
stays within 2^24 in magnitude (every integer up to 2^24 is a float32; 2^24 + 1
is the first one that is not), and in float64 within 2^53. So the limit of a
float32 MAC is 2^24, not 2^23. :func:`mac_path` bounds each channel's partial
sums by ``sum_k |w[n,k]| * max|x| + |bias[n]|`` and picks one path per layer:

``f32``
    Conv/Gemm in float32 (bound below 2^24).
``f32-split``
    a convolution whose bound reaches 2^24: the reduction is cut into chunks of
    input channels, each below 2^24 (one float32 Conv per chunk, onnxruntime's
    fast kernels), and the chunks are summed in float64 (exact below 2^53).
``f64``
    a linear layer as a float64 Gemm (exact below 2^53).
``int8``
    an integer GEMM (``MatMulInteger``, int32 sums) when that kernel passed its
    exactness self-test in this process (:mod:`accel.engine.capability`) and the
    bound of its sums is below 2^31: a linear layer whose bound reaches 2^24, and
    any linear layer or convolution without groups with a reduction of at least
    :data:`INT8_CONV_MIN_K` and :data:`INT8_CONV_MIN_N` output channels, whatever
    its bound (where the kernel is exact it ran 2-4x faster than onnxruntime's
    float32 Conv on such shapes, see ``docs/BENCHMARKS.md``). A convolution becomes a GEMM on
    its NHWC im2col matrix, built in the graph by ``Pad`` + ``Gather`` from a
    precomputed index (a 1x1 convolution needs none); its output stays NHWC for
    the next integer convolution, and a ``Transpose`` to NCHW is emitted only
    where another op reads it. The epilogue is fused into the GEMM
    (``MatMulIntegerToFloat``: ``acc * 2^-s + (bias + 2^(s-1)) 2^-s`` in one
    op, then ``Clip`` and ``Floor``) where that kernel passed its own self-test
    and every value stays below 2^24; otherwise, for a clamp within uint8, the
    int32 epilogue (``Add``, ``Div`` by 2^s, ``Clip``, ``Cast``; self-tested,
    :func:`_int32_epilogue`) whose result stays NHWC uint8, else the float64
    epilogue below. A raw linear layer reading a uint8 tensor adds its bias in
    int32.
``qconv``
    a convolution with a clamp within [0, 255] (ReLU) or [-128, 127] as ONE onnxruntime ``QLinearConv`` (MLAS u8 x
    s8 kernels with their requantization fused) where that kernel passed its self-test
    (:func:`accel.engine.capability.qconv_exact`): uint8 input (int8 shifted by +128, zero point 128), the layer's
    effective int8 weights, int32 bias, x_scale = y_scale = 1, zero points 0 and per-channel
    ``w_scale = 2^-s (1 + 2^-23)`` in float32 (exactly 1 at s = 0), then a ``Clip`` on the uint8 result where
    ``lo > 0`` or ``hi < 255`` (an int8 clamp is computed as ``y + 128`` with ``128 x 2^s`` added to the bias). The
    output stays uint8 for the next ``qconv`` (or 8-bit GEMM) layer, through ``MaxPool`` and ``Flatten``; a ``Cast``
    to float, made once per tensor, feeds the layers that read floats. :func:`_lower_qconv` has the proof. The
    graph emits onnxruntime's NHWC form of the op (``channels_last=1``) and keeps a chain of ``qconv`` layers in
    NHWC uint8 with no transposes (:meth:`_Graph.nhwc_uint8`); a residual ``add`` that reads one runs as one
    ``QLinearAdd`` whose configuration passed a check on every uint8 pair (:func:`~accel.engine.capability.qadd_plan`)
    or else a 1x1 ``QLinearConv`` over both inputs side by side (:func:`add_fits_qconv`), and global average pooling
    is one ``QLinearGlobalAveragePool`` whose scale passed a check on every sum of the window
    (:func:`gap_fits_qconv`), or else sums the NHWC form. An int8 graph input that these kernels read arrives as
    uint8 ``x + 128`` too (:func:`shifted_input`).
``qgemm``
    a linear layer with the same requantization and bound as ``qconv``, as one onnxruntime ``QGemm``
    (:data:`~accel.engine.capability.QGEMM_KERNEL`, its own self-test; the proof is ``qconv``'s).
``numba``
    only where exactness needs integer semantics: a saturating accumulator that
    can overflow (then the order of the additions matters), bounds beyond 2^53.

A ``wrap`` accumulator that can overflow takes the float64 epilogue, where the
wrap is ``t - 2^b floor((t + 2^(b-1)) / 2^b)``: powers of two and ``Floor`` only.
Requantization uses only exact float operations: scaling by powers of two,
``Floor`` and ``Clip``. The half-up rounding shift uses the identity

    (t + 2^(s-1)) >> s  ==  floor((floor(t * 2^(1-s)) + 1) / 2)

which needs no addition of a large constant; at s = 0 the inner value is 2t + 1,
so a float32 epilogue needs |t| < 2^23 (otherwise it runs in float64).

A float32 convolution folds the scale and the rounding offset into its weights
and bias, so one ``Clip`` and one ``Floor`` finish it. ``Floor`` is no op of
onnxruntime's blocked (NCHWc) layout and forces reorders to NCHW and back
around it, so where the output channels fill whole blocks of 16 and the sums
stay below 2^23, the bias also subtracts 1/2 - 2^-(s+1) (the value then rounds
to nearest exactly as it floors, never halfway) and the rounding is done by two
depthwise 1x1 convolutions with weight 1 and bias +-1.5 x 2^23: each computes
one addition, the first rounds to an integer (float32's spacing is 1 between
2^23 and 2^24), the second is exact. A tensor that an ``add`` layer reads keeps
``Floor``: onnxruntime fuses an Add into the convolution before it, summed in
an order of its choosing. A folded float32 layer whose uint8 result only uint8
readers take (``qconv``, ``qgemm``, ``int8``, through max pooling and flatten)
carries neither clamp nor rounding (:func:`_floors_by_cast`): with that same
half-integer offset its readers' ``QuantizeLinear`` rounds it to nearest (never
halfway) and saturates, then a uint8 ``Clip`` narrows (self-tested; where the
offset does not fit, the layer ends in its ``Clip`` and the readers' ``Cast``
floors). A rounding by convolutions clamps after them: no ``Clip`` fuses into
the main convolution, which onnxruntime's blocked kernel runs 2.3x slower.
``multiply_shift`` and pooling multipliers run in float64 (exact below 2^52).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..config import Overflow, Requant, Rounding
from ..datapath import DTYPE_RANGES, conv_output_size, effective_weights, window_counts
from ..ir import MAC_OPS, Layer, Model
from .capability import (
    QCONV_BOUND,
    QCONV_DOMAIN,
    QCONV_KERNEL,
    QCONV_SATURATING_BOUND,
    QGEMM_KERNEL,
    gap_scale,
    qadd_plan,
    qconv_saturates,
    qconv_scale,
)

__all__ = ["EXACT_IN_FLOAT", "F32_EXACT_BOUND", "F64_EXACT_BOUND", "FLOAT_LOWERINGS", "MAC_PATHS",
           "exact_in_float", "layer_path", "lower_layers", "mac_path", "ONNX_OPSET", "product_bounds",
           "segment_inputs", "session_config", "shifted_input"]

ONNX_OPSET = 17
#: Integers up to this magnitude are exact in float32 (24-bit significand), and so is any sum of
#: them whose partial sums all stay below it, in any order.
F32_EXACT_BOUND = 1 << 24
#: The same for float64 (53-bit significand).
F64_EXACT_BOUND = 1 << 53
_INT32_BOUND = 1 << 31
_F32_SAFE = F32_EXACT_BOUND >> 1  # |t| below this keeps 2t + 1 exact in float32 (the s = 0 case of the identity)
_F64_SAFE = 1 << 51
#: Largest magnitude of an 8-bit tensor (int8 or uint8): the bound on a residual add's inputs.
_BYTE_MAX = max(abs(v) for dtype in ("int8", "uint8") for v in DTYPE_RANGES[dtype])
_ONNX_TYPE = {"int8": TensorProto.INT8, "uint8": TensorProto.UINT8, "int32": TensorProto.INT32}
_U8_LO, _U8_HI = DTYPE_RANGES["uint8"]
_INT8_TO_UINT8 = _U8_LO - DTYPE_RANGES["int8"][0]  # 128: int8 values run shifted into uint8
_SHIFTED = "shifted"  # the form of a uint8 value holding int8 values + 128 (_Graph.ints)
_TO_NHWC, _TO_NCHW = [0, 2, 3, 1], [0, 3, 1, 2]
#: Every path a conv2d/linear layer can take (see the module docstring).
MAC_PATHS = ("f32", "f32-split", "f64", "int8", "qconv", "qgemm", "numba")
#: Whether the ``qconv`` path is taken where it applies (off: today's float and 8-bit GEMM paths only).
QCONV_ENABLED = True
#: Whether the ``qgemm`` path is taken where it applies.
QGEMM_ENABLED = True
#: Whether a float32 layer read only as uint8 leaves its clamp and rounding to its readers' saturating
#: ``QuantizeLinear`` (else its own ``Clip``, floored by their ``Cast``), and a rounding by convolutions clamps after
#: them (else before): either way no ``Clip`` fuses into the main convolution (see :func:`_lower_mac`).
CLAMP_LATER = True
#: Whether a global average pool of a uint8-held tensor runs as QLinearGlobalAveragePool (gap_fits_qconv).
GAP_QLINEAR = True
#: What :func:`lower_layers` asks of the session that runs its graph (:func:`session_config`): QDQ propagation
#: off where a graph quantizes a float value for its uint8 readers (:meth:`_Graph.quantized`).
_SESSION_CONFIG_PROP = "accel.session_config"


def _input_bound(model: Model, layer: Layer) -> int:
    lo, hi = model.tensors[layer.inputs[0]].range
    # Padded positions hold pad_value (conv2d, avg_pool): it bounds the products too.
    return max(abs(lo), abs(hi), abs(int(layer.attrs.get("pad_value", 0))))


def _abs_weights(layer: Layer) -> np.ndarray:
    """``|T[c]|``, plus for a multipoint layer every extra row's ``|T[c_p]| << s_p`` on its channel: bounds
    each lane's partial sums, each step of their combination and the equivalent layer's sums at once."""
    lut = np.abs(np.asarray(layer.arrays["lut"], dtype=np.int64))
    return effective_weights(layer.arrays["codes"], lut, layer.points)


#: Chunk sizes of a split convolution are multiples of this where the channels allow: onnxruntime runs
#: a convolution in its blocked (NCHWc) layout only when the channel counts are multiples of the block.
_CHANNEL_BLOCK = 16


def _split_chunks(model: Model, layer: Layer) -> list[tuple[int, int]] | None:
    """Input-channel ranges (within a group) whose partial sums stay below 2^24, cut at multiples of
    :data:`_CHANNEL_BLOCK` channels where possible, or None where one input channel alone reaches 2^24."""
    w = _abs_weights(layer)
    per_c = w.reshape(w.shape[0], w.shape[1], -1).sum(axis=2) * _input_bound(model, layer)  # (N, C/groups)
    cg = per_c.shape[1]
    for step in (_CHANNEL_BLOCK, 8, 1):
        if cg % step:
            continue
        blocks = per_c.reshape(per_c.shape[0], cg // step, step).sum(axis=2)  # (N, blocks)
        if int(blocks.max(initial=0)) >= F32_EXACT_BOUND:
            continue  # a block alone is too large: try smaller blocks
        chunks, start, run = [], 0, np.zeros(w.shape[0], np.int64)
        for i in range(blocks.shape[1]):
            if int((run + blocks[:, i]).max()) >= F32_EXACT_BOUND:
                chunks.append((start * step, i * step))
                start, run = i, np.zeros_like(run)
            run = run + blocks[:, i]
        chunks.append((start * step, cg))
        return chunks
    return None


def mac_path(model: Model, layer: Layer, int_kernel: bool | None = None) -> str:
    """The exact path of a conv2d/linear layer, one of :data:`MAC_PATHS`.

    ``int_kernel``: whether an exact integer GEMM is available for the layer's input type; None asks
    :mod:`accel.engine.capability` (whose self-test runs once per process).
    """
    cfg = model.config
    sums = product_bounds(model, layer)
    worst = _worst_acc(model, layer)
    can_overflow = worst > cfg.acc_max
    if (can_overflow and cfg.overflow is Overflow.SATURATE) or worst >= F64_EXACT_BOUND:
        return "numba"
    if cfg.requant is Requant.MULTIPLY_SHIFT and not layer.attrs["raw"]:
        acc_max = min(worst, cfg.acc_max + 1)  # a wrapped accumulator stays within its type
        if acc_max * int(layer.arrays["mult"].max(initial=0)) >= _F64_SAFE:
            return "numba"
    # the 8-bit GEMM sums uint8 values (int8 ones shifted by +128): |w| x 255 bounds every partial sum
    fits_int32 = int(_abs_weights(layer).reshape(len(sums), -1).sum(axis=1).max(initial=0)) * _BYTE_MAX < _INT32_BOUND
    fits_int32 = fits_int32 and layer.points is None  # a multipoint layer's equivalent weights leave int8
    if fits_int32 and _qconv_fits(model, layer) and _qconv_verdict(int_kernel):
        return "qconv"
    if fits_int32 and _qgemm_fits(model, layer) and _qconv_verdict(int_kernel, QGEMM_KERNEL):
        return "qgemm"
    if _int8_gemm_pays(model, layer) and fits_int32 and _int_verdict(model, layer, int_kernel):
        return "int8"
    if worst < F32_EXACT_BOUND and not can_overflow:
        return "f32"
    if layer.op == "conv2d":
        return "f32-split" if _split_chunks(model, layer) is not None else "numba"
    if fits_int32 and _int_verdict(model, layer, int_kernel):
        return "int8"
    return "f64"


#: A ``qconv`` layer other than a depthwise one reads at least this many input channels per group: MLAS's
#: QLinearConv ran a 1- or 2-channel 3x3 convolution at 28x28 (the bundled models' first layers) 4-6x slower than
#: onnxruntime's float32 Conv (1 channel, 16 out, batch 256, 2 threads: 7.3 ms against 1.2 ms; whole models at
#: batch 256 with it: cnn_mnist 94k against 196k images/s, cnn_digits 446k against 1,235k), and the 3-channel
#: 224x224 stems of ResNet-18 and MobileNetV2 faster than float32 (batch 16: 394 against 356 and 1,018 against
#: 775 images/s), 2026-12-01.
QCONV_MIN_GROUP_CHANNELS = 3
#: A ``qconv`` layer has at least this many output positions per image: on tiny maps MLAS's QLinearConv pays per
#: image what onnxruntime's blocked float32 Conv spreads over the batch (cnn_digits' 3x3 convolution on 4x4, 16 ->
#: 32 channels: the whole model 0.63x at batch 256 and 1.7x at batch 1 with it, 2026-11-30; sweeps run large batches).
QCONV_MIN_POSITIONS = 25


def _qconv_offset(layer: Layer) -> int:
    """What a ``qconv`` layer adds to its results to store them as uint8: 0 for a clamp within [0, 255], 128 for an
    int8 clamp (lo < 0; the tensor is then held as ``y + 128``, the form :meth:`_Graph.as_uint8` gives int8 values)."""
    return 0 if layer.attrs["lo"] >= _U8_LO else _INT8_TO_UINT8


def _clamp_fits_uint8(layer: Layer) -> bool:
    """Whether the layer's clamp, moved by :func:`_qconv_offset`, lies within uint8."""
    offset = _qconv_offset(layer)
    return _U8_LO <= layer.attrs["lo"] + offset <= layer.attrs["hi"] + offset <= _U8_HI


def _qconv_bias(model: Model, layer: Layer) -> np.ndarray:
    """The int64 bias of a ``qconv`` layer: the layer's, plus ``offset x 2^s`` (:func:`_qconv_offset`: the result
    moves by exactly the offset, a multiple of 2^s changes no rounding), less 2^(s-1) under ``floor`` rounding
    (then half up gives ``floor((v - 2^(s-1)) / 2^s + 1/2) = floor(v / 2^s)``)."""
    shift = layer.arrays["shift"].astype(np.int64)
    bias = layer.arrays["bias"].astype(np.int64) + (np.int64(_qconv_offset(layer)) << shift)
    if model.config.rounding is Rounding.HALF_UP:
        return bias
    return bias - np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)


def _requant_fits_uint8(model: Model, layer: Layer) -> bool:
    """What ``qconv`` and ``qgemm`` share: a plain shift requantization into a clamp within ``[0, 255]`` or
    ``[-128, 127]``, no multipoint rows, an 8-bit input, no accumulator that can overflow, and per channel
    ``max |acc + bias| < 2^22`` with the bias of :func:`_qconv_bias`, or, where the rounding of 2^22 - 1 already
    reaches the clamp's top (:func:`~accel.engine.capability.qconv_saturates`, shifts up to 14), below 2^30 with
    MLAS's int32 sums (``sum |w| x (255 + 128) + |bias|``) below 2^31 (proof in :func:`_lower_qconv`)."""
    a = layer.attrs
    if not QCONV_ENABLED or a["raw"] or model.config.requant is not Requant.SHIFT or layer.points is not None:
        return False
    if not _clamp_fits_uint8(layer) or model.tensors[layer.inputs[0]].dtype not in ("int8", "uint8"):
        return False
    offset = _qconv_offset(layer)
    bias = np.abs(_qconv_bias(model, layer))
    bound = product_bounds(model, layer) + bias
    gemm_sums = _abs_weights(layer).reshape(len(bias), -1).sum(axis=1) * (_BYTE_MAX + _INT8_TO_UINT8) + bias
    large = ((bound < QCONV_SATURATING_BOUND) & (gemm_sums < _INT32_BOUND)
             & qconv_saturates(layer.arrays["shift"], a["hi"] + offset))
    return bool(np.all((bound < QCONV_BOUND) | large)) and int(bound.max(initial=0)) <= model.config.acc_max


def _qgemm_fits(model: Model, layer: Layer) -> bool:
    """Whether a linear layer meets the ``qgemm`` proof (:func:`_lower_qgemm`)."""
    return QGEMM_ENABLED and layer.op == "linear" and _requant_fits_uint8(model, layer)


def _qconv_fits(model: Model, layer: Layer) -> bool:
    """Whether a layer meets the ``qconv`` proof (:func:`_lower_qconv`): a convolution with a plain shift
    requantization into a clamp within ``[0, 255]`` or ``[-128, 127]``, no multipoint rows, padding with the input's
    zero (its zero point), and ``max |acc + bias| < 2^22`` with the bias of :func:`_qconv_bias` (so no accumulator
    can overflow either); a depthwise convolution or one with :data:`QCONV_MIN_GROUP_CHANNELS` input channels per
    group, and :data:`QCONV_MIN_POSITIONS` output positions per image."""
    a = layer.attrs
    if layer.op != "conv2d" or (any(a["padding"]) and a["pad_value"]):
        return False
    in_channels, groups = model.tensors[layer.inputs[0]].shape[0], int(a["groups"])
    depthwise = 1 < groups == in_channels
    if not depthwise and in_channels // groups < QCONV_MIN_GROUP_CHANNELS:
        return False
    if int(np.prod(model.tensors[layer.output].shape[1:])) < QCONV_MIN_POSITIONS:
        return False
    return _requant_fits_uint8(model, layer)


def _qconv_verdict(int_kernel: bool | None, kernel: str = QCONV_KERNEL) -> bool:
    if int_kernel is not None:
        return int_kernel
    from .capability import kernel_verdict

    return kernel_verdict(kernel)


def _int_verdict(model: Model, layer: Layer, int_kernel: bool | None) -> bool:
    if int_kernel is not None:
        return int_kernel
    from .capability import kernel_verdict

    return kernel_verdict(int_kernel_name(model, layer))


#: A layer whose sums fit float32 runs as an 8-bit GEMM only from this reduction length (C * KH * KW) and this many
#: output channels: below, the im2col, the epilogue in NHWC and the layout changes cost more than the faster GEMM
#: saves (MNIST-sized convolutions measured slower, ResNet-18's 3x3 layers 2-4x faster; docs/BENCHMARKS.md).
INT8_CONV_MIN_K = 256
INT8_CONV_MIN_N = 64


def _int8_gemm_pays(model: Model, layer: Layer) -> bool:
    """Whether a layer whose sums fit float32 runs as an 8-bit GEMM anyway: large enough to gain and, for a
    convolution, no groups (a depthwise convolution is no GEMM) and a padding value of the input's type (the
    im2col matrix holds it)."""
    n = layer.arrays["codes"].shape[0]
    large = layer.arrays["codes"][0].size >= INT8_CONV_MIN_K and n >= INT8_CONV_MIN_N
    if layer.op != "conv2d":
        # a linear layer emitting raw sums from a uint8 tensor: int32 sums plus an int32 bias, no float at all
        return large or (layer.attrs["raw"] and _holds_uint8(model, layer.inputs[0]))
    lo, hi = DTYPE_RANGES[model.tensors[layer.inputs[0]].dtype]
    return large and int(layer.attrs["groups"]) == 1 and lo <= int(layer.attrs["pad_value"]) <= hi


def int_kernel_name(model: Model, layer: Layer) -> str:
    """The :data:`accel.engine.capability.INT_KERNELS` entry that an ``int8`` layer uses (int8 activations too:
    they run shifted into uint8)."""
    return "onnxruntime MatMulInteger u8xs8"


def fused_kernel_name(model: Model, layer: Layer) -> str:
    """The :data:`accel.engine.capability.FUSED_KERNELS` entry of an ``int8`` layer's fused epilogue."""
    return "onnxruntime MatMulIntegerToFloat u8xs8"


def _add_exact(model: Model, layer: Layer) -> bool:
    a = layer.attrs
    return _BYTE_MAX * ((1 << a["shift_a"]) + (1 << a["shift_b"])) < _F32_SAFE


def _pool_exact(model: Model, layer: Layer) -> bool:
    a = layer.attrs
    shape = model.tensors[layer.inputs[0]].shape
    window = a["kernel"][0] * a["kernel"][1] if layer.op == "avg_pool" else shape[1] * shape[2]
    xmax = _input_bound(model, layer)
    mult = int(np.max(layer.arrays["count_mult"])) if "count_mult" in layer.arrays else a["mult"]
    return window * xmax < F32_EXACT_BOUND and window * xmax * mult < _F64_SAFE


def _no_arithmetic(model: Model, layer: Layer) -> bool:
    return True


def _mac_exact(model: Model, layer: Layer) -> bool:
    return mac_path(model, layer) != "numba"


#: Per op of :data:`accel.ir.OPS`: whether the float lowering of a layer is provably bit-exact.
EXACT_IN_FLOAT = {
    "conv2d": _mac_exact, "linear": _mac_exact, "add": _add_exact, "avg_pool": _pool_exact,
    "global_avg_pool": _pool_exact, "max_pool": _no_arithmetic, "flatten": _no_arithmetic,
    "reshape": _no_arithmetic, "concat": _no_arithmetic,
}


def exact_in_float(model: Model, layer: Layer) -> bool:
    """Whether the float lowering of ``layer`` is provably bit-exact (an op without a check is not)."""
    check = EXACT_IN_FLOAT.get(layer.op)
    return check is not None and check(model, layer)


def layer_path(model: Model, layer: Layer, int_kernels: bool = True) -> str:
    """How the fast backend runs ``layer``: a :data:`MAC_PATHS` entry for conv2d/linear, else "f32"
    (its onnxruntime lowering) or "numba". ``int_kernels=False`` leaves the integer kernels out."""
    if layer.op in MAC_OPS:
        return mac_path(model, layer, None if int_kernels else False)
    if int_kernels and (add_fits_qconv(model, layer) or gap_fits_qconv(model, layer)):
        return "qconv"
    return "f32" if exact_in_float(model, layer) else "numba"


def _fold_fits(w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int, half_up: bool,
               limit: int = F32_EXACT_BOUND) -> bool:
    """Whether acc + bias + 2^(s-1) stays below ``limit`` for every channel (folded requantization)."""
    n = w.shape[0]
    bound = np.abs(w).reshape(n, -1).sum(axis=1) * xmax + np.abs(bias)
    if half_up:
        bound = bound + np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0)
    return bool(np.all(bound < limit))


#: Adding this to a float32 value of magnitude below 2^22 rounds it to the nearest integer (ties to even): the sum
#: lies in [2^23, 2^24), where float32's spacing is exactly 1.
_ROUNDER = 3.0 * (1 << 22)


def _rounds_to_nearest(w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int) -> bool:
    """Whether a folded layer can carry the half-integer offset that makes rounding to nearest floor it (every
    partial sum, in units of 2^-(s+1), the bias's resolution, below 2^23)."""
    return _fold_fits(w, np.abs(bias) + np.ldexp(1.0, shift - 1), shift, xmax, False, _F32_SAFE)


def _rounder_holds(w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int) -> bool:
    """Whether every unclamped folded value stays below 2^22 in magnitude, where adding :data:`_ROUNDER` rounds it
    (values in units of 1: sums over 2^s)."""
    n = w.shape[0]
    bound = (np.abs(w).reshape(n, -1).sum(axis=1) * xmax + np.abs(bias) + np.ldexp(1.0, shift)) * np.ldexp(1.0, -shift)
    return bool(np.all(bound < _ROUNDER / 3))


def _saturation_verdict() -> bool:
    from .capability import QUANTIZE_ROUNDS, kernel_verdict

    return kernel_verdict(QUANTIZE_ROUNDS)


def _rounds_in_blocks(layer: Layer, w: np.ndarray, bias: np.ndarray, shift: np.ndarray, xmax: int) -> bool:
    """Whether a folded convolution can end with a rounding by :data:`_ROUNDER` (two depthwise 1x1 convolutions
    that onnxruntime keeps in its blocked layout) instead of ``Floor`` (which forces reorders to NCHW and back):
    whole channel blocks, and every partial sum (counted in units of 2^-(s+1), the bias's resolution) below 2^24."""
    return layer.op == "conv2d" and w.shape[0] % _CHANNEL_BLOCK == 0 and _rounds_to_nearest(w, bias, shift, xmax)


class _Graph:
    def __init__(self, int_kernels: bool = True):
        self.int_kernels = int_kernels
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.double: set[str] = set()  # names of float64 values (raw accumulators beyond float32)
        self.nhwc: dict[str, str] = {}  # NCHW value -> the same values in NHWC (outputs of integer convolutions)
        self.u8_nhwc: dict[tuple[str, int | str], str] = {}  # (float value, form) -> its uint8 values in NHWC
        self.layers: list[Layer] = []  # the segment's layers
        self.outputs: set[str] = set()  # the segment's output tensors
        self.ints: dict[tuple[str, int | str], str] = {}  # (float value, ONNX integer type) -> the value in it
        self.roundings: dict[str, list[onnx.NodeProto]] = {}  # output -> the nodes that round their input
        self.readers: dict[str, set[str]] = {}  # tensor of the model -> the ops of the layers that read it
        self.saturating: dict[str, tuple[int, int]] = {}  # float value -> clamp its uint8 readers apply (quantized)
        self.session_config: dict[str, str] = {}  # onnxruntime session config entries the graph needs
        self._n = 0

    def as_int(self, x: str, to: int, hint: str) -> str:
        """``x`` (exact integers in a float tensor, or an integer graph input) in ONNX integer type ``to``, cast
        once however many layers read it."""
        if (x, to) not in self.ints:
            self.ints[x, to] = (self.quantized(x, self.saturating[x], hint) if x in self.saturating
                                else self.op("Cast", [x], hint, to=to))
        return self.ints[x, to]

    def quantized(self, x: str, clamp: tuple[int, int], hint: str) -> str:
        """A :attr:`saturating` value (or its transpose) ``x`` as uint8, clamped to ``clamp``: ``QuantizeLinear``
        (scale 1) rounds it to nearest (it holds no ties) and saturates to [0, 255], then a uint8 ``Clip`` where the
        clamp is narrower.

        The session runs with onnxruntime's QDQ transformers off: their propagation moves such a
        ``QuantizeLinear`` up through ``Transpose`` and ``MaxPool``, and a uint8 NCHW ``MaxPool`` took 4.4 ms where
        the blocked float one takes 0.2 (cnn_mnist, batch 256). A per-channel scale, which stops the propagation,
        made MLAS quantize element by element in NHWC (14.5 ms against 0.46 on 256 x 16 x 14 x 14)."""
        lo, hi = clamp
        self.session_config["session.disable_quant_qdq"] = "1"
        q = self.op("QuantizeLinear", [x, self.const(1.0, hint + "_one"), self.const(0, hint + "_zp", np.uint8)], hint)
        if lo > _U8_LO or hi < _U8_HI:
            q = self.op("Clip", [q, self.const(lo, hint + "_lo", np.uint8), self.const(hi, hint + "_hi", np.uint8)],
                        hint)
        return q

    def from_int(self, q: str, form: int | str, hint: str) -> str:
        """The float twin of integer value ``q`` for the layers that read floats, registered so that integer readers
        take ``q`` itself (:meth:`as_int`, :meth:`as_uint8`); pruned where no one reads it. ``form``: an ONNX
        integer type, or :data:`_SHIFTED` (uint8 holding int8 values + 128)."""
        if form == _SHIFTED:  # q - 128, exactly, in one op
            out = self.op("DequantizeLinear", [q, self.const(1.0, hint + "_one"),
                                               self.const(_INT8_TO_UINT8, hint + "_zp", np.uint8)], hint)
        else:
            out = self.op("Cast", [q], hint, to=TensorProto.FLOAT)
        self.ints[out, form] = q
        return out

    def as_uint8(self, x: str, signed: bool, hint: str) -> str:
        """``x`` as uint8 for an 8-bit GEMM: int8 values shifted by +128 (see :func:`_lower_int8`)."""
        if not signed:
            return self.as_int(x, TensorProto.UINT8, hint)
        if (x, _SHIFTED) not in self.ints:
            self.ints[x, _SHIFTED] = self.shifted_uint8(x, hint)
        return self.ints[x, _SHIFTED]

    def shifted_uint8(self, x: str, hint: str) -> str:
        """Integer-valued floats ``x`` in [-128, 127] as uint8 ``x + 128`` in one op: ``QuantizeLinear`` with scale
        1 and zero point 128 (x / 1 is x, no rounding happens, nothing saturates)."""
        return self.op("QuantizeLinear", [x, self.const(1.0, hint + "_one"),
                                          self.const(_INT8_TO_UINT8, hint + "_zp", np.uint8)], hint)

    def nhwc_uint8(self, x: str, signed: bool, hint: str) -> str:
        """``x`` as uint8 (int8 values + 128 where ``signed``) in NHWC for a ``qconv`` layer, made once: a value
        with a uint8 twin transposes the twin (onnxruntime cancels that against the transpose behind the NHWC
        kernel that made it), any other the float value before its cast (onnxruntime's blocked float layout writes
        NHWC directly, ``ReorderOutput(channels_last=1)``)."""
        form = _SHIFTED if signed else TensorProto.UINT8
        if (x, form) not in self.u8_nhwc:
            if x in self.nhwc and (x, form) not in self.ints:  # an int8 layer's float epilogue: NHWC already
                self.u8_nhwc[x, form] = self.as_uint8(self.nhwc[x], signed, hint)
            elif (x, form) in self.ints:
                self.u8_nhwc[x, form] = self.op("Transpose", [self.ints[x, form]], hint, perm=_TO_NHWC)
            elif (x, TensorProto.INT8) in self.ints:  # an int8 graph input: transposed in bytes, not floats
                t = self.op("Transpose", [self.ints[x, TensorProto.INT8]], hint, perm=_TO_NHWC)
                t = self.shifted_uint8(self.op("Cast", [t], hint, to=TensorProto.FLOAT), hint)
                self.u8_nhwc[x, form] = t
            elif x in self.saturating:  # (only unsigned values are) transposed first: onnxruntime folds that into
                t = self.op("Transpose", [x], hint, perm=_TO_NHWC)  # the blocked layout's reorder
                self.u8_nhwc[x, form] = self.quantized(t, self.saturating[x], hint)
            else:
                t = self.op("Transpose", [x], hint, perm=_TO_NHWC)
                self.u8_nhwc[x, form] = (self.shifted_uint8(t, hint) if signed
                                         else self.op("Cast", [t], hint, to=TensorProto.UINT8))
        return self.u8_nhwc[x, form]

    def name(self, hint: str) -> str:
        self._n += 1
        return f"{hint}__{self._n}"

    def const(self, value, hint: str, dtype=np.float32) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str, **attrs) -> str:
        out = self.name(hint)
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out


def _channel_shape(rank: int, n: int) -> tuple[int, ...]:
    return (1, n) + (1,) * (rank - 2)


def _round_shift(g: _Graph, t: str, shift, rank: int, half_up: bool, dtype, hint: str) -> str:
    """Exact ``rshift_round(t, shift)`` for an integer-valued float tensor ``t``."""
    shift = np.asarray(shift, dtype=np.int64)
    n = shift.size
    # a scalar, one shift per channel, or (avg pool excluding padding) a full-rank map per position
    shape = shift.shape if shift.ndim == rank else _channel_shape(rank, n) if shift.ndim else ()
    if not half_up:
        scale = g.const(np.ldexp(1.0, -shift).reshape(shape), hint + "_scale", dtype)
        return g.op("Floor", [g.op("Mul", [t, scale], hint)], hint)
    scale = g.const(np.ldexp(1.0, 1 - shift).reshape(shape), hint + "_scale", dtype)
    u = g.op("Floor", [g.op("Mul", [t, scale], hint)], hint)
    u = g.op("Add", [u, g.const(1.0, hint + "_one", dtype)], hint)
    return g.op("Floor", [g.op("Mul", [u, g.const(0.5, hint + "_half", dtype)], hint)], hint)


def _clip(g: _Graph, t: str, lo: int, hi: int, dtype, hint: str) -> str:
    return g.op("Clip", [t, g.const(lo, hint + "_lo", dtype), g.const(hi, hint + "_hi", dtype)], hint)


def _requant(g: _Graph, acc: str, layer: Layer, model: Model, rank: int, shift, mult, hint: str,
             wide: bool = False) -> str:
    """acc (exact, float32 or float64) -> float32 requantized values; the arithmetic runs in float64 where
    ``wide``, a multiplier or a float64 ``acc`` asks for it."""
    cfg = model.config
    half_up = cfg.rounding is Rounding.HALF_UP
    a = layer.attrs
    if mult is None and not wide and acc not in g.double:
        t = _round_shift(g, acc, shift, rank, half_up, np.float32, hint)
        return _clip(g, t, a["lo"], a["hi"], np.float32, hint)
    t = acc if acc in g.double else g.op("Cast", [acc], hint, to=TensorProto.DOUBLE)
    if mult is not None and np.ndim(mult) == 0 and np.ndim(shift) == 0:
        # One scalar multiplier (global average pooling): acc x mult < 2^51 (mac_path, _pool_exact), so
        # acc x (mult 2^-s) is exact, and so is adding 1/2 (s fraction bits, below 2^52 in units of 2^-s).
        t = g.op("Mul", [t, g.const(np.ldexp(float(mult), -int(shift)), hint + "_mscale", np.float64)], hint)
        if half_up:
            t = g.op("Add", [t, g.const(0.5, hint + "_half", np.float64)], hint)
        t = _clip(g, g.op("Floor", [t], hint), a["lo"], a["hi"], np.float64, hint)
        return g.op("Cast", [t], hint, to=TensorProto.FLOAT)
    if mult is not None:
        mult = np.asarray(mult, dtype=np.float64)
        # a scalar, one multiplier per channel, or (avg pool excluding padding) a full-rank map per position
        m_shape = mult.shape if mult.ndim == rank else _channel_shape(rank, mult.size) if mult.ndim else ()
        m = g.const(mult.reshape(m_shape), hint + "_mult", np.float64)
        t = g.op("Mul", [t, m], hint)
    t = _round_shift(g, t, shift, rank, half_up, np.float64, hint)
    t = _clip(g, t, a["lo"], a["hi"], np.float64, hint)
    return g.op("Cast", [t], hint, to=TensorProto.FLOAT)


def _wrap(g: _Graph, t: str, acc_bits: int, hint: str) -> str:
    """Two's complement wrap of the exact float64 integers ``t``: t - 2^b floor((t + 2^(b-1)) / 2^b)."""
    half = g.const(float(1 << (acc_bits - 1)), hint + "_wraphalf", np.float64)
    inv = g.const(np.ldexp(1.0, -acc_bits), hint + "_wrapinv", np.float64)
    full = g.const(float(1 << acc_bits), hint + "_wrapfull", np.float64)
    turns = g.op("Floor", [g.op("Mul", [g.op("Add", [t, half], hint), inv], hint)], hint)
    return g.op("Sub", [t, g.op("Mul", [turns, full], hint)], hint)


def _pad_node(g: _Graph, x: str, padding, pad_value: int, hint: str) -> str:
    """Explicit constant padding with ``pad_value`` (ONNX pads of Conv and AveragePool pad with 0)."""
    pt, pl, pb, pr = padding
    return g.op("Pad", [x, g.const(np.array([0, 0, pt, pl, 0, 0, pb, pr]), hint + "_pads", np.int64),
                        g.const(pad_value, hint + "_padv")], hint, mode="constant")


def _conv(g: _Graph, layer: Layer, x: str, w: np.ndarray, bias: np.ndarray | None, hint: str) -> str:
    """A float32 ONNX Conv with the layer's geometry (``x`` already padded with a non-zero pad_value)."""
    a = layer.attrs
    pads = [0, 0, 0, 0] if a["pad_value"] != 0 else list(a["padding"])
    inputs = [x, g.const(w.astype(np.float32), hint + "_w")]
    if bias is not None:
        inputs.append(g.const(bias.astype(np.float32), hint + "_bias"))
    return g.op("Conv", inputs, hint, pads=pads, strides=list(a["stride"]), dilations=list(a["dilation"]),
                group=int(a["groups"]), kernel_shape=list(w.shape[2:]))


def _split_conv_f64(g: _Graph, layer: Layer, model: Model, x: str, w: np.ndarray, hint: str) -> str:
    """Sum over input-channel chunks, each an exact float32 Conv, added in float64 (path ``f32-split``)."""
    groups = int(layer.attrs["groups"])
    cg = w.shape[1]
    parts = []
    for c0, c1 in _split_chunks(model, layer):
        if (c0, c1) == (0, cg):
            xc = x
        elif groups == 1:
            xc = g.op("Slice", [x, g.const([c0], hint + "_s0", np.int64), g.const([c1], hint + "_s1", np.int64),
                                g.const([1], hint + "_ax", np.int64)], hint)
        else:  # the chunk's channels of every group, in group order
            idx = [gi * cg + c for gi in range(groups) for c in range(c0, c1)]
            xc = g.op("Gather", [x, g.const(idx, hint + "_idx", np.int64)], hint, axis=1)
        part = _conv(g, layer, xc, w[:, c0:c1], None, hint)
        parts.append(g.op("Cast", [part], hint, to=TensorProto.DOUBLE))
    return parts[0] if len(parts) == 1 else g.op("Sum", parts, hint)


def _wide_acc(g: _Graph, layer: Layer, model: Model, path: str, x: str, w: np.ndarray, hint: str) -> str:
    """The exact accumulator bias + sum as float64 (paths ``f32-split`` and ``f64``)."""
    bias = layer.arrays["bias"].astype(np.float64)
    if path == "f32-split":
        acc = _split_conv_f64(g, layer, model, x, w, hint)
        bias = bias.reshape(_channel_shape(4, bias.size))
    else:
        xd = g.op("Cast", [x], hint, to=TensorProto.DOUBLE)
        return g.op("Gemm", [xd, g.const(w, hint + "_w", np.float64), g.const(bias, hint + "_bias", np.float64)],
                    hint, transB=1)
    return g.op("Add", [acc, g.const(bias, hint + "_bias", np.float64)], hint)


def _lower_mac(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    path = mac_path(model, layer, None if g.int_kernels else False)
    x = names[layer.inputs[0]]
    # A multipoint layer runs as its one equivalent layer (datapath.effective_weights): exact under wrap,
    # and under saturate only when nothing can overflow (mac_path sends the rest to numba).
    w = effective_weights(arr["codes"], arr["lut"], layer.points).astype(np.float64)
    bias = arr["bias"].astype(np.float64)
    shift = arr["shift"].astype(np.int64)
    half_up = cfg.rounding is Rounding.HALF_UP
    mult = arr["mult"] if cfg.requant is Requant.MULTIPLY_SHIFT else None
    rank = 4 if layer.op == "conv2d" else 2
    if path == "int8":
        return _lower_int8(g, layer, model, x, w, hint)
    if path == "qconv":
        return _lower_qconv(g, layer, model, x, w, hint)
    if path == "qgemm":
        return _lower_qgemm(g, layer, model, x, w, hint)
    if layer.op == "conv2d" and a["pad_value"] != 0 and any(a["padding"]):
        x = _pad_node(g, x, a["padding"], a["pad_value"], hint)
    if path != "f32":
        acc = _wide_acc(g, layer, model, path, x, w, hint)
        if _worst_acc(model, layer) > cfg.acc_max:  # a wrap accumulator that can overflow
            acc = _wrap(g, acc, cfg.acc_bits, hint)
        g.double.add(acc)
        if a["raw"]:
            return acc
        return _requant(g, acc, layer, model, rank, shift, mult, hint)
    xmax = _input_bound(model, layer)
    folded = not a["raw"] and mult is None and _fold_fits(w, bias, shift, xmax, half_up)
    # onnxruntime fuses an Add into the convolution before it (as its "Sum" input, summed in an order of its
    # choosing), which would add to the rounder's large intermediate: a tensor that an add layer reads is floored.
    lazy = folded and not a["raw"] and _floors_by_cast(g, model, layer)
    rounded = (folded and not lazy and "add" not in g.readers.get(layer.output, ())
               and _rounds_in_blocks(layer, w, bias, shift, xmax))
    # Clamping later, not in the convolution: onnxruntime's blocked convolution runs 2.3x slower with a fused Clip
    # than with none (cnn_digits' two convolutions at batch 256, 0.069 and 0.251 ms against 0.030 and 0.110).
    saturating = (CLAMP_LATER and lazy and _rounds_to_nearest(w, bias, shift, xmax)
                  and _saturation_verdict())
    clamp_after = CLAMP_LATER and rounded and _rounder_holds(w, bias, shift, xmax)
    if folded:
        # Fold the rounding offset and the power-of-two scale into the weights and bias:
        # conv(x, W 2^-s) + (b + 2^(s-1)) 2^-s is exactly (acc + 2^(s-1)) / 2^s, so one
        # Clip and one Floor finish the requantization (clip and floor commute on integers).
        scale = np.ldexp(1.0, -shift)
        offset = np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0) if half_up else 0.0
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        bias = (bias + offset) * scale
        if rounded or saturating:
            # v = (acc + b + 2^(s-1)) / 2^s has s fraction bits, so v - 1/2 + 2^-(s+1) is never halfway between
            # integers and rounds to nearest exactly as v floors; clipping to [lo, hi] before or after changes
            # nothing (integer bounds).
            bias = bias - 0.5 + scale / 2
    if layer.op == "conv2d":
        acc = _conv(g, layer, x, w, bias, hint)
    else:
        acc = g.op("Gemm", [x, g.const(w.astype(np.float32), hint + "_w"),
                            g.const(bias.astype(np.float32), hint + "_bias")], hint, transB=1)
    if a["raw"]:
        return acc
    if saturating:  # the uint8 readers' QuantizeLinear rounds, saturates and clips (_Graph.quantized)
        g.saturating[acc] = (a["lo"], a["hi"])
        return acc
    if lazy:  # the uint8 readers' Cast floors the clipped value (_floors_by_cast)
        return _clip(g, acc, a["lo"], a["hi"], np.float32, hint)
    if rounded:
        t = acc if clamp_after else _clip(g, acc, a["lo"], a["hi"], np.float32, hint)
        ones = np.ones((w.shape[0], 1, 1, 1))
        for offset in (_ROUNDER, -_ROUNDER):  # one addition each: the first rounds, the second is exact
            t = g.op("Conv", [t, g.const(ones, hint + "_one"), g.const(np.full(w.shape[0], offset), hint + "_rnd")],
                     hint, group=w.shape[0], kernel_shape=[1, 1])
        if clamp_after:  # onnxruntime fuses it into the second rounding convolution
            t = _clip(g, t, a["lo"], a["hi"], np.float32, hint)
        g.roundings[t] = g.nodes[-3 if clamp_after else -2:]
        return t
    if folded:
        return g.op("Floor", [_clip(g, acc, a["lo"], a["hi"], np.float32, hint)], hint)
    # The float32 epilogue doubles values (the s = 0 case of the half-up identity): below 2^23 only.
    wide = mult is not None or _worst_acc(model, layer) >= _F32_SAFE
    return _requant(g, acc, layer, model, rank, shift, mult, hint, wide)


#: Readers that take a value as uint8 (its Cast floors), by op and path; max pooling and flatten pass it on.
_UINT8_READERS = {("conv2d", "qconv"), ("conv2d", "int8"), ("linear", "qgemm"), ("linear", "int8"), ("add", "qconv")}


def _floors_by_cast(g: _Graph, model: Model, layer: Layer) -> bool:
    """Whether a folded float32 layer can leave out its rounding: its output is uint8 (a clamp within [0, 255]; an
    int8 one, even when non-negative, is read through ``QuantizeLinear``, which rounds), and every reader, through
    max pooling and flatten (monotone, so they commute with the floor), takes it as uint8 (:data:`_UINT8_READERS`),
    whose ``Cast`` floors the clipped value (:data:`~accel.engine.capability.CAST_FLOORS`, self-tested); the value
    is no output of the segment. Saves the ``Floor`` or the two rounding convolutions."""
    if model.tensors[layer.output].dtype != "uint8" or not g.int_kernels:  # an int8 tensor is read shifted instead
        return False
    pending = [layer.output]
    while pending:
        tensor = pending.pop()
        readers = [r for r in g.layers if tensor in r.inputs]
        if tensor in g.outputs or not readers:
            return False
        for reader in readers:
            if reader.op in _TWIN_KEEPERS:
                pending.append(reader.output)
            elif (reader.op, layer_path(model, reader)) not in _UINT8_READERS:
                return False
    from .capability import CAST_FLOORS, kernel_verdict

    return kernel_verdict(CAST_FLOORS)


def _im2col_nhwc(g: _Graph, layer: Layer, model: Model, x: str, hint: str) -> tuple[str, int, int]:
    """The 8-bit NHWC im2col matrix (B*OH*OW, KH*KW*C) of a convolution's input, columns in (kernel row, kernel
    column, channel) order, and OH, OW. Padding holds ``pad_value``; strides and dilation live in the index."""
    a = layer.attrs
    info = model.tensors[layer.inputs[0]]
    c, h, wd = info.shape
    signed = info.dtype == "int8"
    if (x, _SHIFTED if signed else TensorProto.UINT8) in g.u8_nhwc:
        xi = g.nhwc_uint8(x, signed, hint)
    elif x in g.nhwc:
        xi = g.as_uint8(g.nhwc[x], signed, hint)
    else:
        xi = g.op("Transpose", [g.as_uint8(x, signed, hint)], hint, perm=_TO_NHWC)
    (kh, kw), (sh, sw), (dh, dw) = layer.arrays["codes"].shape[2:], a["stride"], a["dilation"]
    pt, pl, pb, pr = a["padding"]
    oh, ow = conv_output_size(h, kh, sh, pt, pb, dh), conv_output_size(wd, kw, sw, pl, pr, dw)
    if (kh, kw, sh, sw) == (1, 1, 1, 1) and not any(a["padding"]):
        return g.op("Reshape", [xi, g.const([-1, c], hint + "_cols", np.int64)], hint), oh, ow
    if any(a["padding"]):
        pads = g.const([0, pt, pl, 0, 0, pb, pr, 0], hint + "_pads", np.int64)
        xi = g.op("Pad", [xi, pads, g.const(a["pad_value"] + 128 * signed, hint + "_padv", np.uint8)], hint)
    hp, wp = h + pt + pb, wd + pl + pr
    rows = (np.arange(oh)[:, None] * sh * wp + np.arange(ow)[None, :] * sw).reshape(-1, 1)
    taps = (np.arange(kh)[:, None] * dh * wp + np.arange(kw)[None, :] * dw).reshape(1, -1)
    flat = g.op("Reshape", [xi, g.const([-1, hp * wp, c], hint + "_flat", np.int64)], hint)
    cols = g.op("Gather", [flat, g.const(rows + taps, hint + "_taps", np.int64)], hint, axis=1)
    return g.op("Reshape", [cols, g.const([-1, kh * kw * c], hint + "_cols", np.int64)], hint), oh, ow


def _lower_int8(g: _Graph, layer: Layer, model: Model, x: str, w: np.ndarray, hint: str) -> str:
    """Path ``int8``: an 8-bit GEMM (a linear layer's input, or a convolution's NHWC im2col) with int32 sums, then
    the fused float32 epilogue where its kernel is exact and every value stays below 2^24, else float64."""
    cfg = model.config
    a, arr = layer.attrs, layer.arrays
    n = w.shape[0]
    signed = model.tensors[layer.inputs[0]].dtype == "int8"
    if layer.op == "conv2d":
        cols, oh, ow = _im2col_nhwc(g, layer, model, x, hint)
        wmat = w.transpose(2, 3, 1, 0).reshape(-1, n)  # rows in the im2col's (row, column, channel) order
    else:
        cols = g.as_uint8(x, signed, hint)
        wmat = w.T
    wt = g.const(np.ascontiguousarray(wmat), hint + "_wt", np.int8)
    # int8 activations run shifted into uint8 (onnxruntime's s8 x s8 GEMM has no fast kernel here: 100x slower):
    # sum_k w (x + 128) = sum_k w x + 128 sum_k w, so the bias takes the constant off, exactly (integers).
    bias = arr["bias"].astype(np.float64) - (128.0 * w.reshape(n, -1).sum(axis=1) if signed else 0.0)
    shift = arr["shift"].astype(np.int64)
    half_up = cfg.rounding is Rounding.HALF_UP
    plain = not a["raw"] and cfg.requant is Requant.SHIFT and _worst_acc(model, layer) <= cfg.acc_max
    scale = np.ldexp(1.0, -shift)
    offset = np.where(shift > 0, np.ldexp(1.0, shift - 1), 0.0) if half_up else 0.0
    # the uint8 GEMM's sums stay within sum|w| x 255, the shifted bias within the bound too: all below 2^24
    if plain and _fold_fits(w, bias, shift, _BYTE_MAX, half_up) and _fused_verdict(g, model, layer):
        # acc * 2^-s + (bias + 2^(s-1)) 2^-s == (acc + bias + 2^(s-1)) / 2^s exactly (below 2^24 units of 2^-s):
        # then Clip and Floor finish the requantization, as in the folded float32 path.
        y = g.op("MatMulIntegerToFloat", [cols, wt, g.const(1.0, hint + "_one"), g.const(scale, hint + "_scale"),
                                          "", "", g.const((bias + offset) * scale, hint + "_bias")], hint,
                 domain="com.microsoft")
        y = g.op("Floor", [_clip(g, y, a["lo"], a["hi"], np.float32, hint)], hint)
    elif plain and _int32_epilogue_fits(model, layer, w) and _epilogue_verdict(g):
        return _int32_epilogue(g, layer, model, g.op("MatMulInteger", [cols, wt], hint), w, hint,
                               (oh, ow) if layer.op == "conv2d" else None)
    elif plain:
        # The same folded requantization in float64 (int32 sums and the bias are far below 2^53): four passes
        # instead of the general epilogue's eight.
        acc = g.op("Cast", [g.op("MatMulInteger", [cols, wt], hint)], hint, to=TensorProto.DOUBLE)
        t = g.op("Mul", [acc, g.const(scale.reshape(1, n), hint + "_scale", np.float64)], hint)
        t = g.op("Add", [t, g.const(((bias + offset) * scale).reshape(1, n), hint + "_bias", np.float64)], hint)
        t = _clip(g, g.op("Floor", [t], hint), a["lo"], a["hi"], np.float64, hint)
        y = g.op("Cast", [t], hint, to=TensorProto.FLOAT)
    elif a["raw"] and layer.op == "linear" and _worst_acc(model, layer) <= cfg.acc_max and _gemm_fits_int32(w, bias):
        # raw sums in int32: the GEMM's and the (shifted) bias's, each and together within int32
        acc = g.op("Add", [g.op("MatMulInteger", [cols, wt], hint),
                           g.const(bias.astype(np.int64).reshape(1, n), hint + "_bias", np.int32)], hint)
        return g.from_int(acc, TensorProto.INT32, hint)
    else:
        acc = g.op("Cast", [g.op("MatMulInteger", [cols, wt], hint)], hint, to=TensorProto.DOUBLE)
        acc = g.op("Add", [acc, g.const(bias, hint + "_bias", np.float64)], hint)
        if _worst_acc(model, layer) > cfg.acc_max:  # a wrap accumulator that can overflow
            acc = _wrap(g, acc, cfg.acc_bits, hint)
        g.double.add(acc)
        mult = arr["mult"] if cfg.requant is Requant.MULTIPLY_SHIFT else None
        y = acc if a["raw"] else _requant(g, acc, layer, model, 2, shift, mult, hint)
    if layer.op != "conv2d":
        return y
    nhwc = _keep_width(g, y, g.op("Reshape", [y, g.const([-1, oh, ow, n], hint + "_nhwc", np.int64)], hint))
    out = _keep_width(g, y, g.op("Transpose", [nhwc], hint, perm=[0, 3, 1, 2]))
    g.nhwc[out] = nhwc
    return out


def _gemm_fits_int32(w: np.ndarray, bias: np.ndarray) -> bool:
    """Whether the uint8 GEMM's sums (``sum |w| x 255``) plus ``|bias|`` stay within int32 on every channel."""
    sums = np.abs(w).reshape(w.shape[0], -1).sum(axis=1) * _BYTE_MAX
    return bool(np.all(sums + np.abs(bias) < _INT32_BOUND))


def _int32_bias(model: Model, layer: Layer, w: np.ndarray) -> np.ndarray:
    """The int64 bias of the integer epilogue: the layer's, less ``128 sum_k w`` for an int8 input (the GEMM reads
    it as uint8 ``x + 128``), plus ``2^(s-1)`` under half-up rounding and the output offset ``offset x 2^s``
    (:func:`_qconv_offset`)."""
    n = w.shape[0]
    shift = layer.arrays["shift"].astype(np.int64)
    bias = layer.arrays["bias"].astype(np.int64) + (np.int64(_qconv_offset(layer)) << shift)
    if model.tensors[layer.inputs[0]].dtype == "int8":
        bias = bias - _INT8_TO_UINT8 * w.reshape(n, -1).sum(axis=1).astype(np.int64)
    if model.config.rounding is Rounding.HALF_UP:
        bias = bias + np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    return bias


def _int32_epilogue_fits(model: Model, layer: Layer, w: np.ndarray) -> bool:
    """Whether the integer epilogue (:func:`_int32_epilogue`) applies: a clamp within uint8 (held shifted where it is
    int8), and every GEMM sum plus the bias of :func:`_int32_bias` within int32."""
    return _clamp_fits_uint8(layer) and _gemm_fits_int32(w, _int32_bias(model, layer, w))


def _epilogue_verdict(g: _Graph) -> bool:
    from .capability import INT32_EPILOGUE, kernel_verdict

    return g.int_kernels and kernel_verdict(INT32_EPILOGUE)


def _int32_epilogue(g: _Graph, layer: Layer, model: Model, acc: str, w: np.ndarray, hint: str,
                    spatial: tuple[int, int] | None) -> str:
    """``y = clamp(rshift_round(acc + bias, s), lo, hi)`` in int32 on the GEMM's sums ``acc`` (M, N): ``Add`` the bias
    of :func:`_int32_bias`, ``Div`` by 2^s, ``Clip`` to ``[lo, hi] + offset``, ``Cast`` to uint8 (4 passes over
    int32 where the float64 epilogue makes 6 over float64; 2026-12-01: 5.2 against 14.4 ms on a 100352 x 64
    ResNet-18 layer beside its 9.4 ms GEMM). Why this is exact: with ``u = acc + bias``, the contract's result plus
    the offset is ``floor(u / 2^s)`` (half up: the bias holds ``2^(s-1)``; an int8 clamp: ``128 x 2^s``). ``Div``
    truncates toward zero (checked by :func:`accel.engine.capability.int32_epilogue_exact`), which is the floor for
    ``u >= 0``; for ``u < 0`` the floor is negative and clamps to ``lo + offset >= 0``, and so does the truncation
    (at most 0). A convolution's result stays NHWC uint8 (rows of the im2col) for the next integer layer."""
    a = layer.attrs
    n = w.shape[0]
    shift = layer.arrays["shift"].astype(np.int64)
    offset = _qconv_offset(layer)
    t = g.op("Add", [acc, g.const(_int32_bias(model, layer, w).reshape(1, n), hint + "_bias", np.int32)], hint)
    t = g.op("Div", [t, g.const((np.int64(1) << shift).reshape(1, n), hint + "_div", np.int32)], hint)
    t = g.op("Clip", [t, g.const(a["lo"] + offset, hint + "_lo", np.int32),
                      g.const(a["hi"] + offset, hint + "_hi", np.int32)], hint)
    q = g.op("Cast", [t], hint, to=TensorProto.UINT8)
    form = TensorProto.UINT8 if offset == 0 else _SHIFTED
    if spatial is None:
        return g.from_int(q, form, hint)
    q = g.op("Reshape", [q, g.const([-1, *spatial, n], hint + "_nhwc", np.int64)], hint)
    out = g.from_int(g.op("Transpose", [q], hint, perm=_TO_NCHW), form, hint)
    g.u8_nhwc[out, form] = q
    return out


def _lower_qconv(g: _Graph, layer: Layer, model: Model, x: str, w: np.ndarray, hint: str) -> str:
    """Path ``qconv``: ``y = clamp(rshift_round(acc + b, s), lo, hi)`` as one ``QLinearConv``.

    Why this is exact. MLAS requantizes an int32 sum ``v = acc + b`` as ``round_half_even(fl(float(v) * m))`` with
    ``m = x_scale * w_scale / y_scale = w_scale`` here, then saturates to uint8. Take ``|v| < 2^22`` and
    ``m = 2^-s (1 + 2^-23)`` (s > 0); ``float(v)`` is exact and ``t = v 2^-s`` has s fraction bits.

    * Not a tie: t is at least ``2^-s`` away from the nearest half-integer. The product differs from t by
      ``|t| 2^-23 < 2^-(s+1)`` before rounding and by at most half an ulp after, where ulp <= ``2^-(s+2)``
      (``|t| < 2^(22-s)``): in all less than ``2^-s``, so it rounds to the same integer as t, which is
      ``floor(t + 1/2)``.
    * A positive tie ``t = k + 1/2``: the exact product is ``t + t 2^-23 >= t + ulp(t)``, and rounding to the
      nearest float keeps it at or above the float ``t + ulp(t) > t``: it rounds up to ``k + 1``, half up.
    * A negative tie would round away from zero (down) instead, but with ``lo >= 0`` every ``v < 0`` has
      ``rshift_round(v, s) <= 0`` and clamps to ``lo``, and so does MLAS's result (<= 0, saturated to 0, clipped).
    * s = 0: ``m = 1`` exactly, no rounding at all.
    * An int8 clamp (``lo < 0``) runs on ``v' = v + 128 x 2^s`` (in the bias): ``rshift_round(v', s) =
      rshift_round(v, s) + 128`` exactly, so the uint8 result is ``y + 128``; a negative ``v'`` means
      ``rshift_round(v, s) < -128``, clamped to -128 = 0 - 128 as above. The bound applies to ``v'``.

    Saturation to [0, 255] then the ``Clip`` to ``[lo, hi]`` (shifted) is the contract's clamp.

    Larger sums, ``2^22 <= |v| < 2^30``, where ``T = rshift_round(2^22 - 1, s)`` reaches the clamp's top ``hi``
    (``s <= 14`` for 255). Every step of MLAS's requantization is monotone non-decreasing in v (the conversion to
    float32, the product with a positive scale and its rounding, the rounding to an integer, the saturation; below
    2^30 the product stays far inside int32, so no conversion overflows). For ``v >= 2^22`` the contract gives hi
    (its rounding is at least T >= hi), and MLAS at least its result at ``2^22 - 1``, which the proof above makes
    ``min(T, 255) >= hi``: clamped, hi. For ``v <= -2^22`` the contract gives lo (its rounding is negative, lo >= 0),
    and MLAS at most its result at ``-(2^22 - 1)``, which is 0: clamped, lo. MLAS's int32 sums stay exact where
    ``sum |w| x (255 + 128) + |bias| < 2^31`` (uint8 products, the zero point's correction, the bias).

    The int32 sums are exact where the kernel passed its self-test (255 x -128 pairs, sums up to 2^30), the padding
    holds the zero point (the real 0), and an int8 input runs as uint8 ``x + 128`` with zero point 128. ``floor``
    rounding folds ``-2^(s-1)`` into the bias.
    """
    a = layer.attrs
    n = w.shape[0]
    signed = model.tensors[layer.inputs[0]].dtype == "int8"
    bias = _qconv_bias(model, layer)
    one = g.const(1.0, hint + "_one")
    inputs = [g.nhwc_uint8(x, signed, hint), one, g.const(_INT8_TO_UINT8 * signed, hint + "_xzp", np.uint8),
              g.const(w, hint + "_w", np.int8), g.const(qconv_scale(layer.arrays["shift"]), hint + "_wscale"),
              g.const(np.zeros(n), hint + "_wzp", np.int8), one, g.const(0, hint + "_yzp", np.uint8),
              g.const(bias, hint + "_bias", np.int32)]
    q = g.op("QLinearConv", inputs, hint, domain=QCONV_DOMAIN, channels_last=1, pads=list(a["padding"]),
             strides=list(a["stride"]), dilations=list(a["dilation"]), group=int(a["groups"]),
             kernel_shape=list(w.shape[2:]))
    return _qconv_result(g, q, layer, hint)


def _lower_qgemm(g: _Graph, layer: Layer, model: Model, x: str, w: np.ndarray, hint: str) -> str:
    """Path ``qgemm``: a linear layer as one ``QGemm`` (:data:`QCONV_DOMAIN`) with the ``qconv`` arguments (uint8
    input, int8 ``x + 128`` with zero point 128; the (K, N) int8 weights; int32 bias of :func:`_qconv_bias`;
    per-column scale ``2^-s (1 + 2^-23)``): MLAS requantizes its int32 sums as it does a ``QLinearConv``'s, so the
    proof of :func:`_lower_qconv` holds word for word, and :data:`QGEMM_KERNEL` has its own self-test."""
    n = w.shape[0]
    signed = model.tensors[layer.inputs[0]].dtype == "int8"
    one = g.const(1.0, hint + "_one")
    inputs = [g.as_uint8(x, signed, hint), one, g.const(_INT8_TO_UINT8 * signed, hint + "_xzp", np.uint8),
              g.const(np.ascontiguousarray(w.T), hint + "_w", np.int8),
              g.const(qconv_scale(layer.arrays["shift"]), hint + "_wscale"),
              g.const(np.zeros(n), hint + "_wzp", np.int8),
              g.const(_qconv_bias(model, layer), hint + "_bias", np.int32),
              one, g.const(0, hint + "_yzp", np.uint8)]
    q, form = _clamp_uint8(g, g.op("QGemm", inputs, hint, domain=QCONV_DOMAIN), layer, hint)
    return g.from_int(q, form, hint)


def _clamp_uint8(g: _Graph, q: str, layer: Layer, hint: str) -> tuple[str, int | str]:
    """A ``qconv``/``qgemm`` result (uint8, saturated) clamped to the layer's range where that is narrower, and its
    form: uint8 values, or int8 values + 128 (:data:`_SHIFTED`)."""
    a = layer.attrs
    offset = _qconv_offset(layer)
    lo, hi = a["lo"] + offset, a["hi"] + offset
    if lo > _U8_LO or hi < _U8_HI:
        q = g.op("Clip", [q, g.const(lo, hint + "_lo", np.uint8), g.const(hi, hint + "_hi", np.uint8)], hint)
    return q, TensorProto.UINT8 if offset == 0 else _SHIFTED


def _qconv_result(g: _Graph, q: str, layer: Layer, hint: str) -> str:
    """The float value of a ``qconv`` layer whose NHWC uint8 result is ``q`` (before the clamp): the clamp's
    ``Clip`` where it is narrower than uint8, then the NHWC twin for ``qconv`` readers, an NCHW twin for integer
    readers and data movement, and the float twin for the rest (each pruned where no one reads it)."""
    q, form = _clamp_uint8(g, q, layer, hint)
    out = g.from_int(g.op("Transpose", [q], hint, perm=_TO_NCHW), form, hint)
    g.u8_nhwc[out, form] = q
    return out


def _fused_verdict(g: _Graph, model: Model, layer: Layer) -> bool:
    from .capability import kernel_verdict

    return g.int_kernels and kernel_verdict(fused_kernel_name(model, layer))


def product_bounds(model: Model, layer: Layer) -> np.ndarray:
    """Per output channel of a conv2d/linear layer: ``sum_k |w[n,k]| * max|x|`` (int64), the bound of every
    partial sum of its products (padding included)."""
    w = _abs_weights(layer)
    return w.reshape(w.shape[0], -1).sum(axis=1) * _input_bound(model, layer)


def _worst_acc(model: Model, layer: Layer) -> int:
    sums = product_bounds(model, layer)
    return int((sums + np.abs(layer.arrays["bias"].astype(np.int64))).max(initial=0))


#: An ``add`` layer runs as a 1x1 ``QLinearConv`` only where its scales ``2^shift_a`` and ``2^shift_b`` are int8
#: weights.
_QADD_MAX_SHIFT = 6
#: The ops whose output keeps the uint8 form of a ``qconv`` input (:func:`_on_uint8_twin`).
_TWIN_KEEPERS = ("max_pool", "flatten")


def _holds_uint8(model: Model, tensor: str) -> bool:
    """Whether the fast graph holds ``tensor`` in uint8 (a ``qconv`` layer's output, or one that max pooling or a
    flatten passed on), so that a ``qconv`` reader takes it without casts."""
    layer = model.producer(tensor)
    while layer is not None and layer.op in _TWIN_KEEPERS:
        layer = model.producer(layer.inputs[0])
    return layer is not None and layer_path(model, layer) in ("qconv", "qgemm", "int8") and not layer.attrs.get("raw")


def _qadd_bias(model: Model, layer: Layer) -> int:
    """The int32 bias of a ``qconv`` add: the -128 x 2^shift of each int8 input (read as uint8 ``x + 128``), the
    output offset ``offset x 2^s`` and, under ``floor`` rounding, -2^(s-1) (as :func:`_qconv_bias`)."""
    a = layer.attrs
    bias = -sum(_INT8_TO_UINT8 << a[key] for t, key in zip(layer.inputs, ("shift_a", "shift_b"))
                if model.tensors[t].dtype == "int8")
    bias += _qconv_offset(layer) << a["shift"]
    if model.config.rounding is not Rounding.HALF_UP and a["shift"] > 0:
        bias -= 1 << (a["shift"] - 1)
    return bias


def add_fits_qconv(model: Model, layer: Layer) -> bool:
    """Whether a residual add runs as a ``qconv``: ``(a << sa) + (b << sb)`` is a 1x1 convolution of the two inputs
    side by side with weights ``2^sa`` and ``2^sb`` (int8 while both shifts are at most :data:`_QADD_MAX_SHIFT`),
    rounded and clamped by ``QLinearConv``'s requantization exactly as a ``qconv`` layer's (the same proof: its
    ``|v| < 2^22``); taken where an input is already held in uint8 (else the float add costs less)."""
    a = layer.attrs
    if not QCONV_ENABLED or layer.op != "add" or max(a["shift_a"], a["shift_b"]) > _QADD_MAX_SHIFT:
        return False
    if any(model.tensors[t].dtype not in ("int8", "uint8") for t in layer.inputs) or not _clamp_fits_uint8(layer):
        return False
    bound = _BYTE_MAX * ((1 << a["shift_a"]) + (1 << a["shift_b"])) + abs(_qadd_bias(model, layer))
    return (bound < QCONV_BOUND and any(_holds_uint8(model, t) for t in layer.inputs)
            and _qconv_verdict(None))


def _lower_qadd(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    """Path ``qconv`` of an add layer (:func:`add_fits_qconv`). Where :func:`~accel.engine.capability.qadd_plan`
    finds a ``QLinearAdd`` checked on every pair of uint8 inputs for this layer's shifts and bias, that one
    elementwise op. Otherwise one ``QLinearConv`` with a (C, 2C) 1x1 weight ``[2^sa I | 2^sb I]`` over the channel
    concatenation of the two uint8 inputs (int8 ones held as ``x + 128``, the bias takes the 128s off), zero points 0
    and ``w_scale = qconv_scale(s)``: the proof of :func:`_lower_qconv` with ``v = (a << sa) + (b << sb) + bias``."""
    a = layer.attrs
    c = model.tensors[layer.output].shape[0]
    parts = [g.nhwc_uint8(names[t], model.tensors[t].dtype == "int8", hint) for t in layer.inputs]
    plan = qadd_plan(a["shift_a"], a["shift_b"], a["shift"], _qadd_bias(model, layer))
    if plan is not None:
        # against the 1x1 QLinearConv, 2026-12-01: adds of shift 0, batch 16, ResNet-18 384 -> 418 images/s; then
        # the shifted ones too, batch 32 (7 interleaved rounds): ResNet-18 433 -> 441, MobileNetV2 925 -> 955
        q = g.op("QLinearAdd", [parts[0], g.const(plan.scale_a, hint + "_sa"),
                                g.const(plan.zero_a, hint + "_za", np.uint8),
                                parts[1], g.const(plan.scale_b, hint + "_sb"),
                                g.const(plan.zero_b, hint + "_zb", np.uint8),
                                g.const(1.0, hint + "_one"), g.const(plan.zero_y, hint + "_zy", np.uint8)],
                 hint, domain=QCONV_DOMAIN)
        return _qconv_result(g, q, layer, hint)
    x = g.op("Concat", parts, hint, axis=3)
    eye = np.eye(c, dtype=np.int64)
    w = np.concatenate([eye << a["shift_a"], eye << a["shift_b"]], axis=1).reshape(c, 2 * c, 1, 1)
    zero = g.const(0, hint + "_zp", np.uint8)
    one = g.const(1.0, hint + "_one")
    inputs = [x, one, zero, g.const(w, hint + "_w", np.int8), g.const(qconv_scale(np.full(c, a["shift"])),
              hint + "_wscale"), g.const(np.zeros(c), hint + "_wzp", np.int8), one, zero,
              g.const(np.full(c, _qadd_bias(model, layer)), hint + "_bias", np.int32)]
    q = g.op("QLinearConv", inputs, hint, domain=QCONV_DOMAIN, channels_last=1, kernel_shape=[1, 1])
    return _qconv_result(g, q, layer, hint)


def _lower_add(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    if g.int_kernels and add_fits_qconv(model, layer):
        return _lower_qadd(g, layer, model, names, hint)
    x, b = names[layer.inputs[0]], names[layer.inputs[1]]
    ta = g.op("Mul", [x, g.const(float(1 << a["shift_a"]), hint + "_sa")], hint) if a["shift_a"] else x
    tb = g.op("Mul", [b, g.const(float(1 << a["shift_b"]), hint + "_sb")], hint) if a["shift_b"] else b
    t = g.op("Add", [ta, tb], hint)
    t = _round_shift(g, t, a["shift"], 4, model.config.rounding is Rounding.HALF_UP, np.float32, hint)
    return _clip(g, t, a["lo"], a["hi"], np.float32, hint)


def _on_uint8_twin(g: _Graph, x: str, hint: str, op_type: str, **attrs) -> str | None:
    """Data movement or max pooling (monotone: it commutes with the +128 shift) of a value that has a uint8 twin (a
    ``qconv`` output) runs on the twin, so that the next ``qconv`` layer reads uint8 without casts; None where ``x``
    has none."""
    for form in (TensorProto.UINT8, _SHIFTED):
        if (x, form) in g.ints:
            return g.from_int(g.op(op_type, [g.ints[x, form]], hint, **attrs), form, hint)
    return None


def _lower_max_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    attrs = dict(kernel_shape=list(a["kernel"]), strides=list(a["stride"]), pads=list(a["padding"]))
    x = names[layer.inputs[0]]
    return _on_uint8_twin(g, x, hint, "MaxPool", **attrs) or _keep_clamp(g, x, g.op("MaxPool", [x], hint, **attrs))


def _lower_avg_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    a = layer.attrs
    x = names[layer.inputs[0]]
    c, h, w = model.tensors[layer.inputs[0]].shape
    exclude = "count_mult" in layer.arrays  # padding excluded: zeros in the sum, a divisor per position
    if any(a["padding"]):
        x = _pad_node(g, x, a["padding"], 0 if exclude else a["pad_value"], hint)
    ones = g.const(np.ones((c, 1) + tuple(a["kernel"])), hint + "_ones")
    total = g.op("Conv", [x, ones], hint, strides=list(a["stride"]), group=c, kernel_shape=list(a["kernel"]))
    if exclude:
        counts = window_counts((h, w), a["kernel"], a["stride"], a["padding"]) - 1
        shape = (1, 1) + counts.shape
        return _requant(g, total, layer, model, 4, np.asarray(layer.arrays["count_shift"])[counts].reshape(shape),
                        np.asarray(layer.arrays["count_mult"])[counts].reshape(shape), hint)
    return _requant(g, total, layer, model, 4, a["shift"], a["mult"], hint)


def gap_fits_qconv(model: Model, layer: Layer) -> bool:
    """Whether a global average pool runs as one ``QLinearGlobalAveragePool`` (path ``qconv``, :func:`_gap_qscale`)."""
    return _gap_qscale(model, layer) is not None


def _gap_qscale(model: Model, layer: Layer) -> float | None:
    """The ``QLinearGlobalAveragePool`` input scale of a global average pool with a uint8 input held in uint8
    (:func:`_holds_uint8`) and a clamp within uint8, as :func:`~accel.engine.capability.gap_scale` checked it on
    every possible sum; None where any of that fails."""
    a = layer.attrs
    info = model.tensors[layer.inputs[0]]
    if not (QCONV_ENABLED and GAP_QLINEAR) or layer.op != "global_avg_pool" or info.dtype != "uint8":
        return None
    if not _clamp_fits_uint8(layer) or _qconv_offset(layer) or not _holds_uint8(model, layer.inputs[0]):
        return None
    c, h, w = info.shape
    return gap_scale(h * w, a["mult"], a["shift"], model.config.rounding, c)


def _lower_global_avg_pool(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    """Sum over the map, then the requantization. The input of a ``qconv`` layer is summed in its NHWC uint8 form
    (the map's axes are 1 and 2 there, and no transpose back to NCHW is needed); a held ``y + 128`` gives
    ``128 x H x W`` more per channel, taken off exactly (integers far below 2^24). Where :func:`gap_fits_qconv`,
    one ``QLinearGlobalAveragePool`` on that form does it all (batch 256 on mobilenet_mnist: 0.03 against 0.12 ms
    for the cast, the sum and the float64 epilogue; A/B at batch 256: resnet_mnist +9%, mobilenet_mnist +5%)."""
    a = layer.attrs
    x = names[layer.inputs[0]]
    c, h, w = model.tensors[layer.inputs[0]].shape
    scale = _gap_qscale(model, layer) if g.int_kernels else None
    if scale is not None:
        zero = g.const(0, hint + "_zp", np.uint8)
        q = g.op("QLinearGlobalAveragePool", [g.nhwc_uint8(x, False, hint), g.const(scale, hint + "_xscale"), zero,
                                              g.const(1.0, hint + "_one"), zero], hint, domain=QCONV_DOMAIN,
                 channels_last=1)
        q, form = _clamp_uint8(g, g.op("Reshape", [q, g.const([-1, c, 1, 1], hint + "_nchw", np.int64)], hint),
                               layer, hint)
        return g.from_int(q, form, hint)
    twin = next((form for form in (TensorProto.UINT8, _SHIFTED) if (x, form) in g.u8_nhwc), None)
    if twin is None:
        total = g.op("ReduceSum", [x, g.const(np.array([2, 3]), hint + "_axes", np.int64)], hint, keepdims=0)
    else:
        u = g.op("Cast", [g.u8_nhwc[x, twin]], hint, to=TensorProto.FLOAT)
        total = g.op("ReduceSum", [u, g.const(np.array([1, 2]), hint + "_axes", np.int64)], hint, keepdims=0)
        if twin == _SHIFTED:
            total = g.op("Add", [total, g.const(-float(_INT8_TO_UINT8 * h * w), hint + "_s8")], hint)
    y = _requant(g, total, layer, model, 2, a["shift"], a["mult"], hint)
    return g.op("Reshape", [y, g.const([-1, c, 1, 1], hint + "_nchw", np.int64)], hint)


def _keep_width(g: _Graph, source: str, out: str) -> str:
    """Data movement keeps a float64 value float64 (a raw accumulator may exceed float32)."""
    if source in g.double:
        g.double.add(out)
    return out


def _keep_clamp(g: _Graph, source: str, out: str) -> str:
    """Max pooling and flatten pass on the clamp and rounding a :attr:`_Graph.saturating` value leaves to its
    readers (monotone: they commute with both)."""
    if source in g.saturating:
        g.saturating[out] = g.saturating[source]
    return out


def _lower_flatten(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    x = names[layer.inputs[0]]
    return _on_uint8_twin(g, x, hint, "Flatten", axis=1) or _keep_clamp(g, x, _keep_width(g, x, g.op(
        "Flatten", [x], hint, axis=1)))


def _lower_reshape(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    shape = g.const(np.array([0] + list(layer.attrs["shape"])), hint + "_shape", np.int64)
    x = names[layer.inputs[0]]
    return _keep_width(g, x, g.op("Reshape", [x, shape], hint))


def _lower_concat(g: _Graph, layer: Layer, model: Model, names: dict[str, str], hint: str) -> str:
    parts = [names[t] for t in layer.inputs]
    if not any(p in g.double for p in parts):
        return g.op("Concat", parts, hint, axis=int(layer.attrs["axis"]))
    parts = [p if p in g.double else g.op("Cast", [p], hint, to=TensorProto.DOUBLE) for p in parts]
    out = g.op("Concat", parts, hint, axis=int(layer.attrs["axis"]))
    g.double.add(out)
    return out


#: Per op of :data:`accel.ir.OPS`: (graph, layer, model, tensor names, name hint) -> the output's name.
FLOAT_LOWERINGS = {
    "conv2d": _lower_mac, "linear": _lower_mac, "add": _lower_add, "max_pool": _lower_max_pool,
    "avg_pool": _lower_avg_pool, "global_avg_pool": _lower_global_avg_pool, "flatten": _lower_flatten,
    "reshape": _lower_reshape, "concat": _lower_concat,
}


def _lower_layer(g: _Graph, layer: Layer, model: Model, names: dict[str, str]) -> str:
    lower = FLOAT_LOWERINGS.get(layer.op)
    if lower is None:
        raise ValueError(f"layer {layer.name!r}: op {layer.op!r} has no float lowering")
    return lower(g, layer, model, names, layer.name.replace("/", "_"))


def _sink_roundings(g: _Graph, keep: set[str]) -> None:
    """Move each rounding to integers (a ``Floor``, or the pair of :data:`_ROUNDER` convolutions) that feeds only a
    ``MaxPool`` behind it: max(round(a)) == round(max(a)) since rounding never decreases, so the result is the
    same, while Conv -> Clip -> MaxPool stays one fused chain in onnxruntime's blocked (NCHWc) layout and the
    rounding runs on the pooled, smaller tensor. ``keep``: names that must stay as they are (segment outputs)."""
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in g.nodes:
        for name in node.input:
            users.setdefault(name, []).append(node)
    chains = {node.output[0]: [node] for node in g.nodes if node.op_type == "Floor"}
    chains.update(g.roundings)
    for end, chain in chains.items():
        after = users.get(end, [])
        if end in keep or len(after) != 1 or after[0].op_type != "MaxPool":
            continue
        pool, pooled = after[0], after[0].output[0]
        pool.input[0] = chain[0].input[0]
        pool.output[0] = end + "_pooled"
        chain[0].input[0] = pool.output[0]
        chain[-1].output[0] = pooled
        # keep the list in topological order: the pool now runs first
        g.nodes.remove(pool)
        g.nodes.insert(g.nodes.index(chain[0]), pool)


def _prune(g: _Graph, outputs: list[str]) -> None:
    """Drop the nodes and constants that no output needs (an NCHW copy that only NHWC readers skipped)."""
    needed = set(outputs)
    kept = []
    for node in reversed(g.nodes):
        if any(out in needed for out in node.output):
            kept.append(node)
            needed.update(node.input)
    g.nodes[:] = kept[::-1]
    g.inits[:] = [t for t in g.inits if t.name in needed]


def shifted_input(tensor: str) -> str:
    """The graph input that carries int8 tensor ``tensor`` as uint8 ``x + 128`` for the 8-bit kernels: the caller
    makes it by flipping the sign bit (:func:`accel.engine.runner.segment_feed`), one numpy pass, where
    onnxruntime's ``Cast`` + ``QuantizeLinear`` took 7x longer (106 against 686 us on a 32 x 3 x 224 x 224 batch,
    3.1 against 26 us on 256 x 784, 2026-12-01)."""
    return tensor + "__u8"


def segment_inputs(proto: onnx.ModelProto) -> list[tuple[str, str, bool]]:
    """Per graph input of a :func:`lower_layers` graph: its name, the model tensor it carries, and whether as
    :func:`shifted_input` (only the inputs some node reads are kept)."""
    suffix = shifted_input("")
    specs = []
    for value in proto.graph.input:
        shifted = value.type.tensor_type.elem_type == TensorProto.UINT8 and value.name.endswith(suffix)
        specs.append((value.name, value.name.removesuffix(suffix) if shifted else value.name, shifted))
    return specs


def lower_layers(model: Model, layers: list[Layer], inputs: list[str], outputs: list[str],
                 int_kernels: bool = True) -> onnx.ModelProto:
    """An ONNX graph computing ``layers`` from integer tensors ``inputs`` to integer tensors ``outputs``
    (``int_kernels=False``: no integer GEMM even where its self-test passed). Feed it with
    :func:`accel.engine.runner.segment_feed`:
    an int8 input that 8-bit kernels read arrives as :func:`shifted_input` too."""
    g = _Graph(int_kernels)
    g.layers, g.outputs = list(layers), set(outputs)
    names: dict[str, str] = {}
    graph_inputs = []
    for t in inputs:
        info = model.tensors[t]
        graph_inputs.append(helper.make_tensor_value_info(t, _ONNX_TYPE[info.dtype], [None, *info.shape]))
        names[t] = g.op("Cast", [t], "in", to=TensorProto.FLOAT)
        g.ints[names[t], _ONNX_TYPE[info.dtype]] = t  # an integer GEMM reads the input itself
        if info.dtype == "int8":  # and an 8-bit kernel its uint8 form, made by the caller (segment_feed)
            graph_inputs.append(helper.make_tensor_value_info(shifted_input(t), TensorProto.UINT8,
                                                              [None, *info.shape]))
            g.ints[names[t], _SHIFTED] = shifted_input(t)
    for layer in layers:
        for t in layer.inputs:
            g.readers.setdefault(t, set()).add(layer.op)
    for layer in layers:
        names[layer.output] = _lower_layer(g, layer, model, names)
    _sink_roundings(g, {names[t] for t in outputs})
    graph_outputs = []
    renamed: dict[str, str] = {}
    producers = {out for node in g.nodes for out in node.output}
    for t in outputs:
        info = model.tensors[t]
        twin = g.ints.get((names[t], _ONNX_TYPE[info.dtype]))  # an integer twin needs no float round trip
        if twin in producers and twin not in renamed:
            renamed[twin] = t  # and no copy either: its node writes the output (1 node less, 1-2 us at batch 1)
        else:
            g.nodes.append(helper.make_node("Cast", [twin or names[t]], [t], to=_ONNX_TYPE[info.dtype]))
        graph_outputs.append(helper.make_tensor_value_info(t, _ONNX_TYPE[info.dtype], [None, *info.shape]))
    for node in g.nodes:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        node.output[:] = [renamed.get(name, name) for name in node.output]
    _prune(g, outputs)
    read = {name for node in g.nodes for name in node.input}
    graph_inputs = [value for value in graph_inputs if value.name in read]
    graph = helper.make_graph(g.nodes, "accel_segment", graph_inputs, graph_outputs, initializer=g.inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET),
                                                     helper.make_opsetid(QCONV_DOMAIN, 1)], producer_name="accel")
    proto.ir_version = 8  # readable by every onnxruntime we support
    if g.session_config:
        helper.set_model_props(proto, {_SESSION_CONFIG_PROP: json.dumps(g.session_config)})
    return proto


def session_config(proto: onnx.ModelProto) -> dict[str, str]:
    """The onnxruntime session config entries a :func:`lower_layers` graph needs (``add_session_config_entry``)."""
    props = {prop.key: prop.value for prop in proto.metadata_props}
    return json.loads(props.get(_SESSION_CONFIG_PROP, "{}"))
