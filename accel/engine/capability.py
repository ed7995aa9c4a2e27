"""What this CPU can do exactly, proved at run time.

Fast int8 kernels are exact only on some CPUs: onnxruntime's ``MatMulInteger``
(u8 x s8) and ``torch._int_mm`` sum exactly in int32 with AVX-512 VNNI, while
the AVX2 u8 x s8 path (``pmaddubsw``) adds pairs of products into *saturating*
int16 (255 x -128 twice is -65,280, clamped to -32,768). The CPU flags say which
instructions exist, not which path a library takes, so nothing here trusts them:
before the engine uses an integer kernel, :func:`kernel_verdict` runs it once per
process on adversarial inputs (every extreme pair, long reductions) against an
int64 reference and caches the verdict. A kernel that fails, or cannot run, is
simply not chosen; the engine falls back to the next exact path.

The same holds for onnxruntime's ``QLinearConv`` (MLAS u8 x s8 convolutions
with a fused requantization): :func:`qconv_exact` runs it on every kernel
variant MLAS picks (pointwise, dense 3x3, depthwise, strided, grouped, odd
channel counts) with ties at every shift, values at 2^22 - 1 and 255 x -128
pairs, against the int64 contract of the formula :func:`qconv_scale` states.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["CAST_FLOORS", "cast_floors_exact", "chosen_kernels", "cpu_flags", "cpu_summary", "EPILOGUE_KERNELS",
           "forced_verdicts", "FUSED_KERNELS", "fused_matmul_exact", "GAP_MAX_WINDOW", "gap_scale",
           "gap_scale_exact", "INT32_EPILOGUE", "int32_epilogue_exact", "INT_KERNELS", "int_matmul_exact",
           "int_mm_weights", "kernel_verdict", "ort_cast_uint8", "ort_int32_requant", "ort_matmul_integer",
           "ort_matmul_integer_to_float", "ort_qgemm", "ort_qlinear_add", "ort_qlinear_conv", "ort_quantize_uint8",
           "qadd_exact", "QADD_KERNEL", "QADD_NUDGES", "qadd_plan", "qadd_plan_exact", "QAddPlan", "QCONV_BOUND",
           "QCONV_DOMAIN", "qconv_exact", "QCONV_KERNEL", "QCONV_KERNELS", "qconv_saturates",
           "QCONV_SATURATING_BOUND", "qconv_scale", "QCONV_SHAPES", "qgap_exact", "QGAP_KERNEL", "QGEMM_KERNEL",
           "QGEMM_SHAPES", "QUANTIZE_ROUNDS", "quantize_rounds_exact", "torch_int_mm", "torch_int_mm_verdict"]

#: Flags that decide which integer kernels a CPU runs natively (shown in reports).
REPORTED_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key = line.split(":", 1)[0].strip().lower()
        if key in ("flags", "features"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_summary() -> dict:
    """CPU model and the flags of :data:`REPORTED_FLAGS` that it has, as measured here."""
    name = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    return {"cpu": name, "flags": [f for f in REPORTED_FLAGS if f in flags]}


def ort_matmul_integer(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through onnxruntime's ``MatMulInteger`` (a: u8 or s8 (M, K); b: s8 (K, N)) -> int32."""
    session = _ort_matmul_session(a.dtype.str, b.dtype.str, b.shape[0])
    return session.run(None, {"a": a, "b": b})[0]


@functools.lru_cache(maxsize=8)
def _ort_matmul_session(a_dtype: str, b_dtype: str, k: int):
    from onnx import TensorProto, helper

    types = {np.dtype(np.uint8).str: TensorProto.UINT8, np.dtype(np.int8).str: TensorProto.INT8}
    graph = helper.make_graph([helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "int_matmul",
                              [helper.make_tensor_value_info("a", types[a_dtype], [None, k]),
                               helper.make_tensor_value_info("b", types[b_dtype], [k, None])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, None)])
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]))


def ort_matmul_integer_to_float(a: np.ndarray, b: np.ndarray, scale: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """``(a @ b) * scale + bias`` through onnxruntime's fused ``MatMulIntegerToFloat`` (com.microsoft): a u8 or
    s8 (M, K), b s8 (K, N), ``scale`` and ``bias`` float32 per column -> float32 (M, N)."""
    session = _ort_fused_session(a.dtype.str, b.shape[0])
    return session.run(None, {"a": a, "b": b, "scale": scale, "bias": bias})[0]


@functools.lru_cache(maxsize=4)
def _ort_fused_session(a_dtype: str, k: int):
    from onnx import TensorProto, helper, numpy_helper

    types = {np.dtype(np.uint8).str: TensorProto.UINT8, np.dtype(np.int8).str: TensorProto.INT8}
    one = numpy_helper.from_array(np.float32(1.0), "one")
    node = helper.make_node("MatMulIntegerToFloat", ["a", "b", "one", "scale", "", "", "bias"], ["y"],
                            domain="com.microsoft")
    graph = helper.make_graph([node], "int_matmul_to_float",
                              [helper.make_tensor_value_info("a", types[a_dtype], [None, k]),
                               helper.make_tensor_value_info("b", TensorProto.INT8, [k, None]),
                               helper.make_tensor_value_info("scale", TensorProto.FLOAT, [None]),
                               helper.make_tensor_value_info("bias", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=[one])
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                            helper.make_opsetid("com.microsoft", 1)]))


def _session(proto):
    import onnxruntime as ort

    proto.ir_version = 8
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def torch_int_mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` through ``torch._int_mm`` (s8 x s8 -> int32; a u8 operand is refused by torch), ``b`` in the
    column-major layout the torch backend gives it (:func:`int_mm_weights`)."""
    import torch

    return torch._int_mm(torch.from_numpy(np.ascontiguousarray(a)), int_mm_weights(b, "cpu")).numpy()


def int_mm_weights(b: np.ndarray, device: str):
    """``b`` (K, N) as the (K, N) transpose of a contiguous (N, K) tensor on ``device``: cuBLASLt's int8 GEMM
    refuses a row-major ``b`` for some shapes (CUBLAS_STATUS_NOT_SUPPORTED for M=784, K=32, N=64 on an H200),
    and takes this layout for every shape; the CPU kernel takes either."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(np.asarray(b).T)).to(device).t()


def _adversarial_cases(a_dtype, rng: np.random.Generator, ks=(64, 1024, 16384)):
    """(a, b) pairs that break a kernel with narrow intermediate sums: extremes everywhere, alternating
    extremes, long reductions (K up to 16,384: 255 x 128 x K stays inside int32) and random values."""
    a_lo, a_hi = (0, 255) if a_dtype == np.uint8 else (-128, 127)
    a_ext = np.array([a_lo, a_hi], dtype=a_dtype)
    b_ext = np.array([-128, 127], dtype=np.int8)
    for k in ks:
        m, n = 32, 16
        yield np.full((m, k), a_hi, a_dtype), np.full((k, n), -128, np.int8)
        yield np.full((m, k), a_lo, a_dtype), np.full((k, n), -128, np.int8)
        yield rng.choice(a_ext, (m, k)), rng.choice(b_ext, (k, n))
        yield (rng.integers(a_lo, a_hi + 1, (m, k)).astype(a_dtype),
               rng.integers(-128, 128, (k, n)).astype(np.int8))


def int_matmul_exact(matmul: Callable[[np.ndarray, np.ndarray], np.ndarray], a_dtype=np.uint8) -> bool:
    """Whether ``matmul(a, b)`` (``a_dtype`` x int8 -> int32) equals the int64 product on adversarial inputs.

    Any exception (an unsupported kernel or shape) counts as "not exact": the caller falls back.
    """
    rng = np.random.default_rng(20261130)
    try:
        for a, b in _adversarial_cases(np.dtype(a_dtype).type, rng):
            got = np.asarray(matmul(a, b))
            want = a.astype(np.int64) @ b.astype(np.int64)
            if got.shape != want.shape or not np.array_equal(got.astype(np.int64), want):
                return False
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return True


def fused_matmul_exact(fused: Callable, a_dtype=np.uint8) -> bool:
    """Whether ``fused(a, b, scale, bias)`` equals ``(a @ b) * scale + bias`` exactly, on the adversarial inputs of
    :func:`int_matmul_exact` with sums and biases small enough (K up to 256: |sum| <= 8.4 M, |bias| < 2^22 units of
    the scale) that every result is a float32 (below 2^24 units of a power-of-two column scale), so an exact kernel
    returns it to the bit."""
    rng = np.random.default_rng(20261201)
    try:
        for a, b in _adversarial_cases(np.dtype(a_dtype).type, rng, ks=(64, 256)):
            n = b.shape[1]
            shift = rng.integers(0, 9, n)
            scale = np.ldexp(1.0, -shift).astype(np.float32)
            bias = (rng.integers(-(1 << 22), 1 << 22, n) * scale).astype(np.float32)
            want = (a.astype(np.int64) @ b.astype(np.int64)) * scale.astype(np.float64) + bias.astype(np.float64)
            got = np.asarray(fused(a, b, scale, bias))
            if got.shape != want.shape or not np.array_equal(got.astype(np.float64), want):
                return False
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return True


#: Integer GEMM kernels the engine may use, in order of preference: name -> (function, activation dtype).
INT_KERNELS: dict[str, tuple[Callable, type]] = {
    "onnxruntime MatMulInteger u8xs8": (ort_matmul_integer, np.uint8),
    "onnxruntime MatMulInteger s8xs8": (ort_matmul_integer, np.int8),
    "torch._int_mm s8xs8": (torch_int_mm, np.int8),
}


def torch_int_mm_verdict(device: str) -> bool:
    """Whether ``torch._int_mm`` is exact on ``device`` ("cpu" is the :data:`INT_KERNELS` entry; a GPU runs the same
    self-test there, once per process and device)."""
    if device == "cpu" or "torch._int_mm s8xs8" in _FORCED:
        return kernel_verdict("torch._int_mm s8xs8")
    return _device_int_mm_verdict(device)


@functools.lru_cache(maxsize=None)
def _device_int_mm_verdict(device: str) -> bool:
    import torch

    def on_device(a, b):
        return torch._int_mm(torch.from_numpy(a).to(device), int_mm_weights(b, device)).cpu().numpy()

    return int_matmul_exact(on_device, np.int8)


#: Integer GEMMs with a fused float epilogue (``(a @ b) * scale + bias``): name -> (function, activation dtype).
FUSED_KERNELS: dict[str, tuple[Callable, type]] = {
    "onnxruntime MatMulIntegerToFloat u8xs8": (ort_matmul_integer_to_float, np.uint8),
    "onnxruntime MatMulIntegerToFloat s8xs8": (ort_matmul_integer_to_float, np.int8),
}

#: The bound below which :func:`qconv_scale`'s rounding is proved (the lowering's ``qconv`` path): |acc + bias| < 2^22.
QCONV_BOUND = 1 << 22
#: Beyond :data:`QCONV_BOUND`, sums up to this magnitude take path ``qconv`` where they saturate (see
#: :func:`qconv_saturates`): far from int32's limit, where a float32 sum could round to 2^31 and convert to INT_MIN.
QCONV_SATURATING_BOUND = 1 << 30
#: The relative perturbation of a QLinearConv output scale that turns MLAS's ties-to-even into half-up on positive
#: values (proof in :mod:`accel.engine.onnx_lowering`, path ``qconv``).
QCONV_TIE_NUDGE = 2.0 ** -23


def qconv_saturates(shift, top) -> np.ndarray:
    """Per channel, whether ``rshift_round(2^22 - 1, s)`` (half up) reaches ``top``: then every sum from 2^22 on
    rounds to ``top`` or more and the clamp gives ``top`` (the ``qconv`` proof's extension to large sums)."""
    shift = np.asarray(shift, dtype=np.int64)
    largest = QCONV_BOUND - 1
    rounded = np.where(shift > 0, (largest + (np.int64(1) << np.maximum(shift - 1, 0))) >> shift, largest)
    return rounded >= top


def qconv_scale(shift) -> np.ndarray:
    """The float32 per-channel ``w_scale`` of a ``QLinearConv`` (x_scale = y_scale = 1) that computes
    ``rshift_round(v, s)`` half up for ``0 <= v < 2^22``: ``2^-s (1 + 2^-23)``, exactly 1 at s = 0 (no rounding)."""
    shift = np.asarray(shift, dtype=np.int64)
    return np.where(shift > 0, np.ldexp(1.0 + QCONV_TIE_NUDGE, -shift), 1.0).astype(np.float32)


def ort_qlinear_conv(x: np.ndarray, x_zero_point: int, w: np.ndarray, bias: np.ndarray, scale: np.ndarray, *,
                     stride: tuple[int, int], padding: tuple[int, int, int, int], groups: int,
                     dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """onnxruntime's ``QLinearConv`` as the engine's graphs use it (NHWC, :data:`QCONV_DOMAIN`, between transposes):
    ``x`` uint8 (B, C, H, W) with its zero point,
    ``w`` int8 (N, C / groups, KH, KW) and ``bias`` int32 as constants (onnxruntime packs constant weights and
    picks its kernel from them), per-channel float32 ``scale``, x_scale = y_scale = 1, y_zero_point 0 -> uint8.
    ``padding`` is (top, left, bottom, right)."""
    from onnx import TensorProto, helper, numpy_helper

    n = w.shape[0]
    consts = {"one": np.float32(1.0), "x_zp": np.uint8(x_zero_point), "w": w.astype(np.int8),
              "w_scale": np.asarray(scale, np.float32), "w_zp": np.zeros(n, np.int8), "y_zp": np.uint8(0),
              "bias": np.asarray(bias, np.int32)}
    pt, pl, pb, pr = padding
    nodes = [helper.make_node("Transpose", ["x"], ["x_nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("QLinearConv", ["x_nhwc", "one", "x_zp", "w", "w_scale", "w_zp", "one", "y_zp", "bias"],
                              ["y_nhwc"], domain=QCONV_DOMAIN, channels_last=1, kernel_shape=list(w.shape[2:]),
                              strides=list(stride), pads=[pt, pl, pb, pr], group=groups, dilations=list(dilation)),
             helper.make_node("Transpose", ["y_nhwc"], ["y"], perm=[0, 3, 1, 2])]
    graph = helper.make_graph(nodes, "qlinear_conv",
                              [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, *x.shape[1:]])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QCONV_DOMAIN, 1)])
    return _session(proto).run(None, {"x": x})[0]


#: (in channels, out channels, kernel, stride, padding, groups, dilation): the convolution kernels MLAS chooses
#: between (pointwise GEMM, dense im2col, depthwise, grouped), strided, dilated or not, channel counts of 16 and
#: more and odd.
QCONV_SHAPES = (
    (16, 32, 1, 1, 0, 1, 1), (64, 24, 1, 1, 0, 1, 1), (3, 5, 1, 1, 0, 1, 1), (16, 16, 3, 1, 1, 1, 1),
    (5, 7, 3, 1, 1, 1, 1), (8, 24, 3, 2, 1, 1, 1), (8, 16, 3, 1, 2, 1, 2), (16, 16, 3, 1, 1, 16, 1),
    (7, 7, 3, 1, 1, 7, 1), (32, 32, 3, 2, 1, 32, 1), (16, 32, 3, 1, 1, 2, 1),
)
_QCONV_SIZE = 16  # 16 x 16 planes: each holds every uint8 value once in the "ties" case
_QCONV_MAX_SHIFT = 12


def _qconv_reference(x, x_zero_point, w, bias, shift, stride, padding, groups, dilation) -> np.ndarray:
    """int64 contract of the path: ``clamp(rshift_round(conv(x - zp, w) + bias, s), 0, 255)``, and the sums."""
    from ..datapath import DTYPE_RANGES, clamp, conv_gemm_groups, im2col, rshift_round

    n, _, kh, kw = w.shape
    cols = im2col(x.astype(np.int64) - x_zero_point, (kh, kw), (stride, stride), (padding,) * 4,
                  (dilation, dilation), 0)
    b, oh, ow = cols.shape[:3]
    acc = np.empty((b * oh * ow, n), np.int64)
    for channels, patch in conv_gemm_groups(cols, n, groups):
        acc[:, channels] = patch @ w[channels].reshape(channels.stop - channels.start, -1).T.astype(np.int64)
    acc = acc.reshape(b, oh, ow, n).transpose(0, 3, 1, 2)
    v = acc + np.broadcast_to(np.asarray(bias, np.int64), (n,)).reshape(1, n, 1, 1)
    return clamp(rshift_round(v, np.asarray(shift).reshape(1, n, 1, 1)), *DTYPE_RANGES["uint8"]), acc


def _qconv_cases(rng: np.random.Generator, c: int, n: int, k: int, groups: int):
    """(x, w, bias, shift) for one shape: ties and near-ties at every shift 1..12 and 15..24 (small, near 2^22 - 1,
    negative), 255 x -128 pairs everywhere (a saturating int16 pair sum breaks them), and random values; a bias of
    None is placed by :func:`_tie_biases`."""
    cg = c // groups
    shift = np.arange(n) % (_QCONV_MAX_SHIFT + 1)
    # every fourth channel holds sums near 2^22 (see _tie_biases): shifts from 15, where they round into 0..255
    shift[1::4] = 15 + np.arange(len(shift[1::4])) % 10
    plane = np.arange(_QCONV_SIZE * _QCONV_SIZE).reshape(_QCONV_SIZE, _QCONV_SIZE)
    x_all = np.stack([rng.permutation(plane.size)[plane] for _ in range(2 * c)]).reshape(2, c, *plane.shape)
    # ties: one weight of +-1 per channel, so the sums sweep every value of a plane around a chosen tie
    probe = np.zeros((n, cg, k, k), np.int8)
    probe[np.arange(n), rng.integers(0, cg, n), rng.integers(0, k, n), rng.integers(0, k, n)] = \
        np.where(np.arange(n) % 2, 1, -1)
    yield x_all.astype(np.uint8), probe, None, shift
    # extremes: 255 everywhere, weights -128 on the first half of each reduction, 127 on the rest
    half = (np.arange(cg * k * k) < max(1, cg * k * k // 2)).reshape(cg, k, k)
    extreme = np.broadcast_to(np.where(half, -128, 127), (n, cg, k, k)).astype(np.int8)
    yield np.full((2, c, _QCONV_SIZE, _QCONV_SIZE), 255, np.uint8), extreme, None, shift
    pairs = rng.choice(np.array([-128, 127], np.int8), (n, cg, k, k))
    yield rng.choice(np.array([0, 255], np.uint8), x_all.shape), pairs, None, shift
    yield (rng.integers(0, 256, x_all.shape).astype(np.uint8), rng.integers(-128, 128, (n, cg, k, k)).astype(np.int8),
           rng.integers(-(1 << 20), 1 << 20, n), rng.permutation(shift))
    # huge sums (bias up to 2^30 in magnitude, either sign) on shifts whose rounding saturates from 2^22 on
    big = rng.integers(QCONV_BOUND, QCONV_SATURATING_BOUND - (1 << 24), n) * rng.choice(np.array([-1, 1]), n)
    yield rng.integers(0, 256, x_all.shape).astype(np.uint8), pairs, big, np.arange(n) % 15  # s <= 14: saturating


def _tie_biases(rng: np.random.Generator, acc: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """Per channel, a bias that puts the median sum on a tie of its shift (small, near 2^22 where the shift is
    large enough for such values to round into 0..255, or negative) or the largest sum at 2^22 - 1: the sums
    around it are near-ties, and for small shifts ties again."""
    n = shift.size
    per_channel = acc.transpose(1, 0, 2, 3).reshape(n, -1)
    bias = np.empty(n, np.int64)
    for ch in range(n):
        s, values = int(shift[ch]), per_channel[ch]
        median = int(np.median(values))
        unit = 1 << max(s - 1, 0)  # 2^(s-1): odd multiples of it are the ties
        spare = QCONV_BOUND - 1 - int(np.abs(values - median).max())
        top = unit * (2 * ((spare // unit - 1) // 2) + 1) if spare >= unit else None
        tie = {0: unit * (2 * int(rng.integers(0, 8)) + 1), 1: top, 2: -unit * (2 * int(rng.integers(0, 64)) + 1)}
        bias[ch] = QCONV_BOUND - 1 - int(values.max()) if tie.get(ch % 4) is None else tie[ch % 4] - median
    return bias


def ort_qgemm(x: np.ndarray, x_zero_point: int, w: np.ndarray, bias: np.ndarray, scale: np.ndarray, *,
              stride: tuple[int, int] = (1, 1), padding: tuple[int, int, int, int] = (0, 0, 0, 0), groups: int = 1,
              dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """onnxruntime's ``QGemm`` (:data:`QCONV_DOMAIN`) as path ``qgemm`` uses it, in :func:`ort_qlinear_conv`'s
    signature for a 1x1 convolution (each position of ``x`` one row of the GEMM): uint8 rows with their zero point,
    ``w`` (N, C, 1, 1) int8 as the constant (C, N) matrix, int32 ``bias``, per-column float32 ``scale``,
    a_scale = y_scale = 1, y_zero_point 0 -> uint8 (B, N, H, W)."""
    from onnx import TensorProto, helper, numpy_helper

    if w.shape[2:] != (1, 1) or tuple(stride) != (1, 1) or any(padding) or groups != 1:
        raise ValueError("QGemm runs 1x1 convolutions only")
    b, c, h, wd = x.shape
    n = w.shape[0]
    consts = {"one": np.float32(1.0), "x_zp": np.uint8(x_zero_point), "w": w.reshape(n, c).T.astype(np.int8),
              "w_scale": np.asarray(scale, np.float32), "w_zp": np.zeros(n, np.int8), "y_zp": np.uint8(0),
              "bias": np.asarray(bias, np.int32)}
    node = helper.make_node("QGemm", ["x", "one", "x_zp", "w", "w_scale", "w_zp", "bias", "one", "y_zp"], ["y"],
                            domain=QCONV_DOMAIN)
    graph = helper.make_graph([node], "qgemm", [helper.make_tensor_value_info("x", TensorProto.UINT8, [None, c])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QCONV_DOMAIN, 1)])
    rows = np.ascontiguousarray(x.transpose(0, 2, 3, 1).reshape(-1, c))
    return _session(proto).run(None, {"x": rows})[0].reshape(b, h, wd, n).transpose(0, 3, 1, 2)


#: (in channels, out channels, 1, 1, 0, 1, 1): the GEMM shapes of :func:`ort_qgemm`'s self-test (short and long
#: reductions, odd sizes).
QGEMM_SHAPES = ((16, 32, 1, 1, 0, 1, 1), (64, 24, 1, 1, 0, 1, 1), (3, 5, 1, 1, 0, 1, 1), (300, 40, 1, 1, 0, 1, 1))


def qconv_exact(conv: Callable = ort_qlinear_conv, scale: Callable = qconv_scale, shapes=QCONV_SHAPES) -> bool:
    """Whether ``conv`` (:func:`ort_qlinear_conv`'s signature) with per-channel scales ``scale(shift)`` computes the
    ``qconv`` path's formula exactly: ``clamp(rshift_round(acc + bias, s), 0, 255)`` (half up), with the input as
    uint8 (zero point 0) and as int8 shifted into uint8 (zero point 128), on every :data:`QCONV_SHAPES` entry with
    ties and near-ties at every shift 0..12, sums up to 2^22 - 1 and 255 x -128 pairs, against int64.

    Any exception (a kernel that cannot run) counts as "not exact": the caller falls back.
    """
    rng = np.random.default_rng(20261202)
    try:
        for c, n, k, stride, pad, groups, dilation in shapes:
            for x_zero_point in (0, 128):
                for x, w, bias, shift in _qconv_cases(rng, c, n, k, groups):
                    if bias is None:  # placed from the sums themselves
                        sums = _qconv_reference(x, x_zero_point, w, 0, shift, stride, pad, groups, dilation)[1]
                        bias = _tie_biases(rng, sums, shift)
                    want, acc = _qconv_reference(x, x_zero_point, w, bias, shift, stride, pad, groups, dilation)
                    # within the proof: below 2^22, or below 2^30 where the rounding saturates from 2^22 on
                    top = int(np.abs(acc + bias.reshape(1, -1, 1, 1)).max())
                    assert top < QCONV_BOUND or (top < QCONV_SATURATING_BOUND and qconv_saturates(shift, 255).all())
                    got = np.asarray(conv(x, x_zero_point, w, bias, scale(shift), stride=(stride, stride),
                                          padding=(pad,) * 4, groups=groups, dilation=(dilation, dilation)))
                    if got.shape != want.shape or not np.array_equal(got.astype(np.int64), want):
                        return False
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return True


def ort_qlinear_add(a: np.ndarray, a_zero_point: int, scale_a: float, b: np.ndarray, b_zero_point: int,
                    scale_b: float, y_zero_point: int) -> np.ndarray:
    """onnxruntime's ``QLinearAdd`` (:data:`QCONV_DOMAIN`) as a ``qconv`` add uses it: uint8 ``a`` and ``b`` with
    scales ``scale_a`` and ``scale_b`` (float32), output scale 1 -> uint8 ``round((a - za) scale_a + (b - zb)
    scale_b) + zy``, saturated (MLAS: float32 fma, then round half to even)."""
    from onnx import TensorProto, helper, numpy_helper

    consts = {"sa": np.float32(scale_a), "za": np.uint8(a_zero_point), "sb": np.float32(scale_b),
              "zb": np.uint8(b_zero_point), "one": np.float32(1.0), "zy": np.uint8(y_zero_point)}
    node = helper.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "one", "zy"], ["y"], domain=QCONV_DOMAIN)
    graph = helper.make_graph([node], "qlinear_add",
                              [helper.make_tensor_value_info(n, TensorProto.UINT8, [None]) for n in ("a", "b")],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QCONV_DOMAIN, 1)])
    return _session(proto).run(None, {"a": a, "b": b})[0]


def _uint8_pairs() -> tuple[np.ndarray, np.ndarray]:
    """Every pair of uint8 values, and 7 more: a length that leaves a vector tail."""
    a, b = (v.reshape(-1).astype(np.uint8) for v in np.meshgrid(np.arange(256), np.arange(256)))
    return np.concatenate([a, a[:7]]), np.concatenate([b, b[:7]])


def qadd_exact(add: Callable = ort_qlinear_add) -> bool:
    """Whether ``add`` (:func:`ort_qlinear_add`'s signature) computes ``clamp((a - za) 2^sa + (b - zb) 2^sb + zy, 0,
    255)`` exactly: every pair of uint8 values (and a length that leaves a vector tail), zero points 0 and 128,
    shifts 0 to 6 in mixed pairs, output zero points 0 and 128, against int64. Sums with a fraction take
    :func:`qadd_plan`, which checks each configuration it returns on every pair."""
    a, b = _uint8_pairs()
    try:
        for shift_a, shift_b in ((0, 0), (1, 0), (0, 1), (6, 0), (2, 6)):
            for za, zb, zy in ((0, 0, 0), (128, 0, 0), (0, 128, 128), (128, 128, 128)):
                want = np.clip((a.astype(np.int64) - za) * (1 << shift_a) + (b.astype(np.int64) - zb) * (1 << shift_b)
                               + zy, 0, 255)
                got = np.asarray(add(a, za, float(1 << shift_a), b, zb, float(1 << shift_b), zy))
                if got.shape != a.shape or not np.array_equal(got.astype(np.int64), want):
                    return False
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return True


@dataclass(frozen=True)
class QAddPlan:
    """The arguments of one ``QLinearAdd`` (output scale 1) for a ``qconv`` add: scales and zero points of the two
    uint8 inputs, and the output zero point (:func:`qadd_plan`)."""

    scale_a: float
    zero_a: int
    scale_b: float
    zero_b: int
    zero_y: int


#: Relative nudges tried, in this order, on the scale of an input whose contribution has a fraction (``shift_x <
#: shift``): large enough that every tie lands above its half-integer after MLAS's float32 roundings, small enough
#: that no other value crosses one (:func:`qadd_plan`). Each candidate is checked on all 65,536 input pairs.
QADD_NUDGES = tuple(2.0 ** -k for k in (12, 13, 11, 14, 10, 15, 9, 16, 17, 8, 18, 19, 20))


def _qadd_zero_points(shift_a: int, shift_b: int, shift: int, bias: int) -> tuple[int, int, int] | None:
    """Zero points ``(za, zb, zy)`` in [0, 255] with ``(zy 2^s - za 2^sa - zb 2^sb) = bias`` exactly, where an input
    whose contribution has a fraction (``shift_x < s``) keeps zero point 0 (so its nudged scale only ever adds);
    the one with the smallest fixed part (MLAS's ``zy - za ra - zb rb``, the fewest rounding bits), or None."""
    grids = [np.arange(256, dtype=np.int64) if s_x >= shift else np.zeros(1, np.int64) for s_x in (shift_a, shift_b)]
    za, zb = (v.reshape(-1) for v in np.meshgrid(*grids, indexing="ij"))
    scaled = bias + (za << shift_a) + (zb << shift_b)  # zy 2^s
    zy = scaled >> shift
    ok = ((scaled & ((1 << shift) - 1)) == 0) & (zy >= 0) & (zy <= 255)
    if not ok.any():
        return None
    cost = np.where(ok, (za << shift_a) + (zb << shift_b) + (zy << shift), np.iinfo(np.int64).max)
    i = int(np.argmin(cost))
    return int(za[i]), int(zb[i]), int(zy[i])


def qadd_plan_exact(plan: QAddPlan, shift_a: int, shift_b: int, shift: int, bias: int,
                    add: Callable = ort_qlinear_add) -> bool:
    """Whether ``add`` with ``plan`` gives ``clamp(rshift_round((a << sa) + (b << sb) + bias, s), 0, 255)`` (half up)
    for every pair of uint8 inputs (and a length that leaves a vector tail): for an elementwise kernel that computes
    each element alike, a proof for this configuration on this machine."""
    from ..datapath import rshift_round

    a, b = _uint8_pairs()
    want = np.clip(rshift_round((a.astype(np.int64) << shift_a) + (b.astype(np.int64) << shift_b) + bias, shift),
                   0, 255)
    try:
        got = np.asarray(add(a, plan.zero_a, plan.scale_a, b, plan.zero_b, plan.scale_b, plan.zero_y))
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return got.shape == a.shape and np.array_equal(got.astype(np.int64), want)


def qadd_plan(shift_a: int, shift_b: int, shift: int, bias: int) -> QAddPlan | None:
    """One ``QLinearAdd`` that computes a ``qconv`` add, ``clamp(rshift_round((a << sa) + (b << sb) + bias, s), 0,
    255)`` half up on uint8 ``a``, ``b``, where :data:`QADD_KERNEL` passed its self-test and a plan passes
    :func:`qadd_plan_exact`; else None (cached per configuration).

    MLAS computes ``rne(fma(a, ra, fma(b, rb, zy - ra za - rb zb)))`` in float32 with ``rx = scale_x`` here.
    The exact value is ``t = v / 2^s`` on a grid of ``2^-s``; rounding it half to even differs from half up only at
    ties. An input with ``shift_x >= s`` adds integers: its ratio is ``2^(sx - s)`` exactly and its zero point takes
    part of the bias. An input with ``shift_x < s`` (the only source of fractions, so of ties) keeps zero point 0
    and the ratio ``2^(sx - s) (1 + e)``: the computed value is ``t + e x 2^(sx - s)``, never below t and above it at
    every tie (a tie needs such an input nonzero). With e large enough to outweigh the float32 roundings
    (half an ulp of values below 2^10 or so, three times) and small enough that ``e x 255 x 2^(sx - s)`` stays below
    the grid's ``2^-s``, ties round up and nothing else moves. Rather than trust those margins, each nudge of
    :data:`QADD_NUDGES` is checked on all 65,536 pairs and the first that passes is used. At ``s = 0`` nothing is
    nudged and the plan is exact outright."""
    if not kernel_verdict(QADD_KERNEL):
        return None
    return _checked_qadd_plan(int(shift_a), int(shift_b), int(shift), int(bias))


@functools.lru_cache(maxsize=None)
def _checked_qadd_plan(shift_a: int, shift_b: int, shift: int, bias: int,
                       add: Callable = ort_qlinear_add) -> QAddPlan | None:
    zeros = _qadd_zero_points(shift_a, shift_b, shift, bias)
    if zeros is None:
        return None
    za, zb, zy = zeros
    fractional = (shift_a < shift, shift_b < shift)
    for nudge in QADD_NUDGES if any(fractional) else (0.0,):
        scale_a, scale_b = (2.0 ** (s_x - shift) * (1.0 + nudge * f) for s_x, f in zip((shift_a, shift_b), fractional))
        if float(np.float32(scale_a)) != scale_a or float(np.float32(scale_b)) != scale_b:
            continue
        plan = QAddPlan(scale_a, za, scale_b, zb, zy)
        if qadd_plan_exact(plan, shift_a, shift_b, shift, bias, add):
            return plan
    return None


#: The quantized convolution that path ``qconv`` runs: onnxruntime's NHWC ``QLinearConv`` of this domain
#: (``channels_last=1``, what onnxruntime itself makes of an ONNX ``QLinearConv`` on x86), emitted as such so that
#: the graph holds its uint8 activations in NHWC from one layer to the next without transposes.
QCONV_DOMAIN = "com.microsoft"
QCONV_KERNEL = "onnxruntime QLinearConv u8xs8"
#: The quantized GEMM that path ``qgemm`` runs (a linear layer, the ``qconv`` proof).
QGEMM_KERNEL = "onnxruntime QGemm u8xs8"
#: The quantized add that a ``qconv`` add layer runs where :func:`qadd_plan` finds a checked configuration (others: a
#: 1x1 ``QLinearConv``).
QADD_KERNEL = "onnxruntime QLinearAdd u8"
#: The global average pooling of a ``qconv`` layer's output where :func:`gap_scale` finds a checked scale.
QGAP_KERNEL = "onnxruntime QLinearGlobalAveragePool u8"
#: Quantized convolutions and GEMMs with a fused requantization (paths ``qconv``, ``qgemm``): name -> self-test.
QCONV_KERNELS: dict[str, Callable[[], bool]] = {
    QCONV_KERNEL: lambda: qconv_exact(ort_qlinear_conv),
    QGEMM_KERNEL: lambda: qconv_exact(ort_qgemm, shapes=QGEMM_SHAPES),
    QADD_KERNEL: qadd_exact,
    QGAP_KERNEL: lambda: qgap_exact(),  # (defined below)
}


def ort_int32_requant(acc: np.ndarray, bias: np.ndarray, shift: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """onnxruntime's int32 ops as the ``int8`` path's integer epilogue uses them: ``Cast<uint8>(Clip(Div(acc + bias,
    2^shift), lo, hi))`` on int32 ``acc`` (M, N) with per-column ``bias`` and ``shift``, scalar ``lo``/``hi``."""
    from onnx import TensorProto, helper, numpy_helper

    n = acc.shape[1]
    consts = {"bias": np.asarray(bias, np.int32).reshape(1, n),
              "divisor": (np.int64(1) << np.asarray(shift, np.int64)).astype(np.int32).reshape(1, n),
              "lo": np.int32(lo), "hi": np.int32(hi)}
    nodes = [helper.make_node("Add", ["acc", "bias"], ["v"]), helper.make_node("Div", ["v", "divisor"], ["q"]),
             helper.make_node("Clip", ["q", "lo", "hi"], ["c"]),
             helper.make_node("Cast", ["c"], ["y"], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, "int32_requant",
                              [helper.make_tensor_value_info("acc", TensorProto.INT32, [None, n])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)],
                              initializer=[numpy_helper.from_array(v, k) for k, v in consts.items()])
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).run(None, {"acc": acc})[0]


def int32_epilogue_exact(requant: Callable = ort_int32_requant) -> bool:
    """Whether ``requant`` (:func:`ort_int32_requant`'s signature) computes ``clamp(floor((acc + bias) / 2^s))`` for
    clamps within [0, 255] exactly (a division truncating toward zero, C's ``/``, as the ``int8`` path's proof
    assumes, or flooring: they differ only below 0, which clamps to lo): every shift 0..24, sums on, next to and
    between multiples and half-multiples of 2^s, positive and negative, up to 2^31 - 1 in magnitude, in a matrix
    large enough for vectorized and threaded code, against int64."""
    rng = np.random.default_rng(20261201)
    n, m = 50, 4099
    shift = np.arange(n) % 25
    unit = np.int64(1) << shift
    # sums (acc + bias) on, next to and between multiples and half-multiples of 2^s, mostly rounding into 0..255
    k = rng.integers(-(1 << 4), 1 << 9, (m, n)) * unit
    near = rng.choice(np.array([-1, 0, 1]), (m, n)) + rng.choice(np.array([0, 1]), (m, n)) * (unit >> 1)
    v = np.clip(k + near, -(1 << 30), (1 << 30) - 1)
    v[: m // 4] = rng.integers(-(1 << 30), 1 << 30, (m // 4, n))
    bias = rng.integers(-(1 << 29), 1 << 29, n)
    acc = v - bias
    top, bottom = (1 << 31) - 1, -(1 << 31)
    acc[m // 2] = np.where(bias >= 0, top - bias, top)  # the extremes of the sum, each term within int32
    acc[m // 2 + 1] = np.where(bias <= 0, bottom - bias, bottom)
    v = acc + bias
    quotient = np.where(v >= 0, v // unit, -((-v) // unit))
    try:
        for lo, hi in ((0, 255), (3, 200)):
            got = np.asarray(requant(acc.astype(np.int32), bias, shift, lo, hi))
            if got.shape != acc.shape or not np.array_equal(got.astype(np.int64), np.clip(quotient, lo, hi)):
                return False
    except Exception:  # noqa: BLE001 - an op that cannot run is as good as inexact here
        return False
    return True


def ort_cast_uint8(x: np.ndarray) -> np.ndarray:
    """onnxruntime's ``Cast`` of float32 ``x`` to uint8."""
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.UINT8)], "cast",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)])
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).run(None, {"x": x})[0]


def cast_floors_exact(cast: Callable = ort_cast_uint8) -> bool:
    """Whether ``cast`` (float32 -> uint8) floors every value in [0, 256): each integer 0..255 plus fractions from
    2^-16 to 1 - 2^-16 (halves included, where rounding would differ), in an array long enough for vectorized and
    threaded code (C++'s conversion truncates; what the ``f32`` path's lazy rounding assumes)."""
    ints = np.arange(256, dtype=np.float64).reshape(-1, 1)
    fractions = np.array([0.0, 2.0 ** -16, 0.25, 0.5, 0.5 + 2.0 ** -16, 0.75, 1 - 2.0 ** -16])
    x = np.tile((ints + fractions).astype(np.float32).reshape(-1), 64)
    try:
        got = np.asarray(cast(x))
        return got.shape == x.shape and np.array_equal(got.astype(np.int64), np.floor(x).astype(np.int64))
    except Exception:  # noqa: BLE001 - an op that cannot run is as good as inexact here
        return False


def ort_quantize_uint8(x: np.ndarray) -> np.ndarray:
    """onnxruntime's ``QuantizeLinear`` of float32 ``x`` to uint8 with scale 1 and zero point 0."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.float32(1.0), "one"), numpy_helper.from_array(np.uint8(0), "zero")]
    graph = helper.make_graph([helper.make_node("QuantizeLinear", ["x", "one", "zero"], ["y"])], "quantize",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], initializer=inits)
    return _session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])).run(None, {"x": x})[0]


def quantize_rounds_exact(quantize: Callable = ort_quantize_uint8) -> bool:
    """Whether ``quantize`` (float32 -> uint8) rounds every value that is no tie to the nearest integer and
    saturates to [0, 255]: the odd multiples of 2^-k (k = 2..16) and the integers from -300 to 600, large values of
    both signs, in an array long enough for vectorized and threaded code (what the ``f32`` path's saturating
    readers assume: their values are never ties)."""
    values = [np.arange(-300, 601, dtype=np.float64), np.array([-2.0 ** 24, -1e6, 2.0 ** 22, 1e6, 2.0 ** 24])]
    for k in range(2, 17):
        step = 2.0 ** -k
        near = np.concatenate([np.arange(1, 64, 2) * step, 1 - np.arange(1, 64, 2) * step, [0.5 - step, 0.5 + step]])
        values.append((np.arange(-3, 260, dtype=np.float64).reshape(-1, 1) + near[(near > 0) & (near < 1)]).ravel())
    x = np.tile(np.concatenate(values).astype(np.float32), 4)
    try:
        got = np.asarray(quantize(x))
        want = np.clip(np.floor(x.astype(np.float64) + 0.5), 0, 255)
        return got.shape == x.shape and np.array_equal(got.astype(np.int64), want.astype(np.int64))
    except Exception:  # noqa: BLE001 - an op that cannot run is as good as inexact here
        return False


def ort_qlinear_global_avg_pool(x: np.ndarray, x_scale: float) -> np.ndarray:
    """onnxruntime's NHWC ``QLinearGlobalAveragePool`` (:data:`QCONV_DOMAIN`) of uint8 ``x`` (B, H, W, C), zero
    points 0, output scale 1: uint8 ``round(sum x_scale / (H W))`` per image and channel, saturated, as (B, C)."""
    from onnx import TensorProto, helper, numpy_helper

    inits = [numpy_helper.from_array(np.float32(x_scale), "xs"), numpy_helper.from_array(np.uint8(0), "zp"),
             numpy_helper.from_array(np.float32(1.0), "one")]
    node = helper.make_node("QLinearGlobalAveragePool", ["x", "xs", "zp", "one", "zp"], ["y"], domain=QCONV_DOMAIN,
                            channels_last=1)
    graph = helper.make_graph([node], "qlinear_gap", [helper.make_tensor_value_info("x", TensorProto.UINT8, None)],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, None)], initializer=inits)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(QCONV_DOMAIN, 1)])
    return _session(proto).run(None, {"x": x})[0].reshape(len(x), -1)


#: The largest pooling window whose every sum :func:`gap_scale` checks (the check holds 255 x window^2 bytes).
GAP_MAX_WINDOW = 256


def _gap_sums(window: int, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Every sum of ``window`` uint8 values (0 to 255 x window) as one channel each of (B, 1, window, channels)
    images, the tail padded with zero sums, and the sums in that order."""
    sums = np.arange(255 * window + 1)
    images = -(-len(sums) // channels)
    sums = np.concatenate([sums, np.zeros(images * channels - len(sums), np.int64)])
    full = sums // 255
    k = np.arange(window).reshape(-1, 1)
    values = np.where(full > k, 255, np.where(full == k, sums % 255, 0))  # (window, sums): 255s, the rest, zeros
    x = values.T.reshape(images, channels, 1, window).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x).astype(np.uint8), sums


def gap_scale_exact(x_scale: float, window: int, mult: int, shift: int, rounding, channels: int,
                    pool: Callable = ort_qlinear_global_avg_pool) -> bool:
    """Whether ``pool`` with ``x_scale`` gives ``clamp(rshift_round(sum x mult, shift), 0, 255)`` for every sum of a
    ``window`` of uint8 values, laid out over ``channels`` channels (the kernel's own loop)."""
    from ..datapath import rshift_round

    x, sums = _gap_sums(window, channels)
    want = np.clip(rshift_round(sums * np.int64(mult), shift, rounding), 0, 255)
    try:
        got = np.asarray(pool(x, x_scale)).reshape(-1)
    except Exception:  # noqa: BLE001 - a kernel that cannot run is as good as inexact here
        return False
    return got.shape == want.shape and np.array_equal(got.astype(np.int64), want)


def gap_scale(window: int, mult: int, shift: int, rounding, channels: int) -> float | None:
    """An ``x_scale`` with which onnxruntime's ``QLinearGlobalAveragePool`` computes a global average pool's
    ``clamp(rshift_round(sum x mult, shift), 0, 255)`` exactly, or None (cached per configuration).

    MLAS sums in int32 (exact) and requantizes ``sum x (x_scale / window)`` in float32, rounding half to even.
    Rather than bound that float arithmetic, every possible sum (0 to 255 x window) is run through the kernel
    for the float32 nearest to ``mult x window / 2^shift`` and, where that fails, for its neighbours up to 32 ulps
    away, and the first scale that gives every sum exactly is used: for a kernel that requantizes each channel
    alike, a proof for this configuration on this machine. Windows up to :data:`GAP_MAX_WINDOW`."""
    if window > GAP_MAX_WINDOW or not kernel_verdict(QGAP_KERNEL):
        return None
    checked = _checked_gap_scale(int(window), int(mult), int(shift), str(getattr(rounding, "value", rounding)),
                                 int(channels))
    if checked is None and _FORCED.get(QGAP_KERNEL):  # a forced verdict decides paths on any CPU, never results
        return float(np.float32(mult * window * 2.0 ** -shift))
    return checked


@functools.lru_cache(maxsize=None)
def _checked_gap_scale(window: int, mult: int, shift: int, rounding: str, channels: int,
                       pool: Callable = ort_qlinear_global_avg_pool) -> float | None:
    start = np.float32(mult * window * 2.0 ** -shift)
    up, down = [start], [start]
    for _ in range(32):
        up.append(np.nextafter(up[-1], np.float32(np.inf)))
        down.append(np.nextafter(down[-1], np.float32(0)))
    for scale in [start] + [v for pair in zip(up[1:], down[1:]) for v in pair]:
        if gap_scale_exact(float(scale), window, mult, shift, rounding, channels, pool):
            return float(scale)
    return None


def qgap_exact(pool: Callable = ort_qlinear_global_avg_pool) -> bool:
    """The general self-test of :data:`QGAP_KERNEL`: a 3x3 window with scale 9 (each output is its sum, saturated),
    over every sum and 3, 64 and 1280 channels. Each configuration a model uses is checked in full by
    :func:`gap_scale`."""
    return all(gap_scale_exact(9.0, 9, 1, 0, "half_up", c, pool) for c in (3, 64, 1280))


#: The integer epilogue of path ``int8`` where its sums reach 2^24.
INT32_EPILOGUE = "onnxruntime int32 Add/Div/Clip epilogue"
#: The conversion that floors a float32 layer's non-negative results where only uint8 readers take them.
CAST_FLOORS = "onnxruntime Cast float32->uint8 floors"
#: The conversion that rounds and saturates a float32 layer's results where only uint8 readers take them.
QUANTIZE_ROUNDS = "onnxruntime QuantizeLinear float32->uint8 rounds, saturates"
#: Integer epilogues: name -> their self-test.
EPILOGUE_KERNELS: dict[str, Callable[[], bool]] = {INT32_EPILOGUE: int32_epilogue_exact,
                                                   CAST_FLOORS: cast_floors_exact,
                                                   QUANTIZE_ROUNDS: quantize_rounds_exact}


def _kernel_names() -> list[str]:
    """Every kernel with a self-test: :data:`INT_KERNELS`, :data:`FUSED_KERNELS`, :data:`QCONV_KERNELS`,
    :data:`EPILOGUE_KERNELS`."""
    return [*INT_KERNELS, *FUSED_KERNELS, *QCONV_KERNELS, *EPILOGUE_KERNELS]


#: Verdicts set by :func:`forced_verdicts` (tests that check path choices independently of this CPU).
_FORCED: dict[str, bool] = {}


def kernel_verdict(name: str) -> bool:
    """The self-test verdict of kernel ``name`` of :data:`INT_KERNELS`, :data:`FUSED_KERNELS` or
    :data:`QCONV_KERNELS`, run once per process and cached (unless :func:`forced_verdicts` sets it)."""
    if name in _FORCED:
        return _FORCED[name]
    return _measured_verdict(name)


@functools.lru_cache(maxsize=None)
def _measured_verdict(name: str) -> bool:
    if name in QCONV_KERNELS:
        return QCONV_KERNELS[name]()
    if name in EPILOGUE_KERNELS:
        return EPILOGUE_KERNELS[name]()
    if name in FUSED_KERNELS:
        fn, a_dtype = FUSED_KERNELS[name]
        return fused_matmul_exact(fn, a_dtype)
    fn, a_dtype = INT_KERNELS[name]
    return int_matmul_exact(fn, a_dtype)


kernel_verdict.cache_clear = _measured_verdict.cache_clear  # type: ignore[attr-defined]


@contextlib.contextmanager
def forced_verdicts(verdict: bool):
    """Within the block every kernel's verdict is ``verdict``, whatever this CPU does: for tests of which path a
    layer takes. Sessions built inside the block keep their kernels; never use it to run a model for results."""
    saved = dict(_FORCED)
    _FORCED.update(dict.fromkeys(_kernel_names(), verdict))
    try:
        yield
    finally:
        _FORCED.clear()
        _FORCED.update(saved)


def chosen_kernels() -> dict:
    """The CPU and the verdict on every integer kernel, for reports (runs the self-tests once)."""
    return {**cpu_summary(), "int_kernels": {name: ("exact" if kernel_verdict(name) else "rejected")
                                             for name in _kernel_names()}}
