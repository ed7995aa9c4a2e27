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
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["FUSED_KERNELS", "INT_KERNELS", "chosen_kernels", "cpu_flags", "cpu_summary", "forced_verdicts",
           "fused_matmul_exact", "int_matmul_exact", "kernel_verdict", "ort_matmul_integer",
           "ort_matmul_integer_to_float", "torch_int_mm", "torch_int_mm_verdict", "int_mm_weights"]

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

#: Verdicts set by :func:`forced_verdicts` (tests that check path choices independently of this CPU).
_FORCED: dict[str, bool] = {}


def kernel_verdict(name: str) -> bool:
    """The self-test verdict of kernel ``name`` of :data:`INT_KERNELS` or :data:`FUSED_KERNELS`, run once per
    process and cached (unless :func:`forced_verdicts` sets it)."""
    if name in _FORCED:
        return _FORCED[name]
    return _measured_verdict(name)


@functools.lru_cache(maxsize=None)
def _measured_verdict(name: str) -> bool:
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
    _FORCED.update(dict.fromkeys([*INT_KERNELS, *FUSED_KERNELS], verdict))
    try:
        yield
    finally:
        _FORCED.clear()
        _FORCED.update(saved)


def chosen_kernels() -> dict:
    """The CPU and the verdict on every integer kernel, for reports (runs the self-tests once)."""
    return {**cpu_summary(), "int_kernels": {name: ("exact" if kernel_verdict(name) else "rejected")
                                             for name in [*INT_KERNELS, *FUSED_KERNELS]}}
