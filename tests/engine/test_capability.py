"""The run-time exactness self-test of integer kernels: it rejects an inexact kernel, accepts an exact one,
and its verdict on this machine's real kernels decides nothing that a test then assumes."""

import numpy as np
import pytest

from accel.engine import capability
from accel.engine.capability import (
    FUSED_KERNELS,
    INT_KERNELS,
    chosen_kernels,
    cpu_flags,
    forced_verdicts,
    fused_matmul_exact,
    int_matmul_exact,
    kernel_verdict,
)


def exact_matmul(a, b):
    return (a.astype(np.int64) @ b.astype(np.int64)).astype(np.int32)


def avx2_pair_saturating_matmul(a, b):
    """The arithmetic of AVX2 u8 x s8 dot products without VNNI (``pmaddubsw``): adjacent pairs of
    products are added in int16 with saturation, then those int16 values are summed in int32."""
    k = a.shape[1]
    if k % 2:
        a, b = np.pad(a, ((0, 0), (0, 1))), np.pad(b, ((0, 1), (0, 0)))
    prod = a.astype(np.int32)[:, :, None] * b.astype(np.int32)[None, :, :]  # (M, K, N)
    pairs = np.clip(prod[:, 0::2] + prod[:, 1::2], -32768, 32767)
    return pairs.sum(axis=1, dtype=np.int64).astype(np.int32)


def int16_accumulating_matmul(a, b):
    """A kernel with a 16-bit accumulator: wraps on long reductions."""
    return exact_matmul(a, b).astype(np.int16).astype(np.int32)


def failing_matmul(a, b):
    raise RuntimeError("no kernel for this shape")


@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8])
def test_self_test_accepts_an_exact_kernel(a_dtype):
    assert int_matmul_exact(exact_matmul, a_dtype)


def test_self_test_rejects_avx2_pair_saturation():
    # The model is exact on small values: only the adversarial extremes (255 x -128 twice) expose it.
    a = np.array([[1, 2, 3, 4]], np.uint8)
    b = np.array([[1], [-2], [3], [-4]], np.int8)
    assert np.array_equal(avx2_pair_saturating_matmul(a, b), exact_matmul(a, b))
    assert not int_matmul_exact(avx2_pair_saturating_matmul, np.uint8)


@pytest.mark.parametrize("kernel", [int16_accumulating_matmul, failing_matmul,
                                    lambda a, b: exact_matmul(a, b)[:, :-1]])
def test_self_test_rejects_other_failures(kernel):
    assert not int_matmul_exact(kernel, np.uint8)


def test_verdicts_are_cached_and_reported():
    kernel_verdict.cache_clear()
    calls = []
    name = next(iter(INT_KERNELS))
    fn, a_dtype = INT_KERNELS[name]
    original = INT_KERNELS[name]
    INT_KERNELS[name] = (lambda a, b: calls.append(1) or fn(a, b), a_dtype)
    try:
        first = kernel_verdict(name)
        count = len(calls)
        assert kernel_verdict(name) is first and len(calls) == count  # once per process
    finally:
        INT_KERNELS[name] = original
        kernel_verdict.cache_clear()
    report = chosen_kernels()
    assert set(report["int_kernels"]) == set(INT_KERNELS) | set(FUSED_KERNELS)
    assert set(report["int_kernels"].values()) <= {"exact", "rejected"}
    assert set(report["flags"]) <= set(capability.REPORTED_FLAGS) and set(report["flags"]) <= cpu_flags()


def fused(matmul, epilogue_dtype=np.float64):
    """A fused ``(a @ b) * scale + bias`` kernel from an integer GEMM, its epilogue in ``epilogue_dtype``."""
    def run(a, b, scale, bias):
        acc = matmul(a, b).astype(epilogue_dtype)
        return (acc * scale.astype(epilogue_dtype) + bias.astype(epilogue_dtype)).astype(np.float32)
    return run


@pytest.mark.parametrize("a_dtype", [np.uint8, np.int8])
def test_fused_self_test_accepts_an_exact_kernel(a_dtype):
    assert fused_matmul_exact(fused(exact_matmul), a_dtype)


@pytest.mark.parametrize("kernel", [fused(avx2_pair_saturating_matmul), fused(exact_matmul, np.float16),
                                    lambda a, b, scale, bias: failing_matmul(a, b)])
def test_fused_self_test_rejects_inexact_kernels(kernel):
    """The int16 pair saturation, an epilogue of too few bits, a kernel that cannot run."""
    assert not fused_matmul_exact(kernel, np.uint8)


@pytest.mark.parametrize("verdict", [True, False])
def test_forced_verdicts_apply_inside_the_block_only(verdict):
    measured = {name: kernel_verdict(name) for name in [*INT_KERNELS, *FUSED_KERNELS]}
    with forced_verdicts(verdict):
        assert all(kernel_verdict(name) is verdict for name in measured)
    assert {name: kernel_verdict(name) for name in measured} == measured
