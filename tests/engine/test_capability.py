"""The run-time exactness self-test of integer kernels: it rejects an inexact kernel, accepts an exact one,
and its verdict on this machine's real kernels decides nothing that a test then assumes."""

import numpy as np
import pytest

from accel.datapath import conv_gemm_groups, im2col
from accel.engine import capability
from accel.engine.capability import (
    EPILOGUE_KERNELS,
    FUSED_KERNELS,
    INT_KERNELS,
    QCONV_KERNELS,
    QCONV_SHAPES,
    QGEMM_SHAPES,
    chosen_kernels,
    cpu_flags,
    forced_verdicts,
    fused_matmul_exact,
    int_matmul_exact,
    kernel_verdict,
    ort_qgemm,
    ort_qlinear_conv,
    qconv_exact,
    qconv_scale,
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
    assert set(report["int_kernels"]) == (set(INT_KERNELS) | set(FUSED_KERNELS) | set(QCONV_KERNELS)
                                           | set(EPILOGUE_KERNELS))
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
    measured = {name: kernel_verdict(name) for name in [*INT_KERNELS, *FUSED_KERNELS, *QCONV_KERNELS]}
    with forced_verdicts(verdict):
        assert all(kernel_verdict(name) is verdict for name in measured)
    assert {name: kernel_verdict(name) for name in measured} == measured


def qlinear_conv_model(matmul=exact_matmul):
    """A model of MLAS's QLinearConv (x_scale = y_scale = 1, y_zero_point 0): int32 sums of the stored uint8 values
    (padding holds the zero point) by ``matmul``, less ``zero point x sum w``, plus the bias, then
    ``round_half_even(float32(v) * scale)`` in float32 and saturation to uint8."""
    def run(x, x_zero_point, w, bias, scale, *, stride, padding, groups, dilation):
        n, _, kh, kw = w.shape
        cols = im2col(x, (kh, kw), stride, padding, dilation, x_zero_point)
        b, oh, ow = cols.shape[:3]
        acc = np.empty((b * oh * ow, n), np.int64)
        for channels, patch in conv_gemm_groups(cols, n, groups):
            wt = w[channels].reshape(channels.stop - channels.start, -1).T
            acc[:, channels] = matmul(patch.astype(np.uint8), wt) - x_zero_point * wt.sum(axis=0, dtype=np.int64)
        v = (acc + bias).astype(np.float32) * np.asarray(scale, np.float32)
        return np.clip(np.rint(v), 0, 255).astype(np.uint8).reshape(b, oh, ow, n).transpose(0, 3, 1, 2)
    return run


def unperturbed_scale(shift):
    """``2^-s`` without the tie nudge: ties round to even."""
    return np.ldexp(1.0, -np.asarray(shift, np.int64)).astype(np.float32)


def test_qconv_self_test_accepts_a_model_of_mlas():
    assert qconv_exact(qlinear_conv_model(), qconv_scale)


@pytest.mark.parametrize("scale", [unperturbed_scale,
                                   lambda s: np.ldexp(1.0 + 2.0 ** -21, -np.asarray(s, np.int64)).astype(np.float32),
                                   lambda s: np.ldexp(1.0 + 2.0 ** -24, -np.asarray(s, np.int64)).astype(np.float32)])
def test_qconv_self_test_rejects_a_broken_scale(scale):
    """Ties to even (no nudge), a nudge so large that values near 2^22 cross a rounding boundary, and one so small
    that large ties round back to even: the tie cases catch all three."""
    assert not qconv_exact(qlinear_conv_model(), scale)


def test_qconv_self_test_rejects_avx2_pair_saturation():
    assert not qconv_exact(qlinear_conv_model(avx2_pair_saturating_matmul), qconv_scale)


def test_qconv_self_test_rejects_a_kernel_that_cannot_run():
    def no_kernel(*args, **kwargs):
        raise RuntimeError("QLinearConv: no kernel for this shape")

    assert not qconv_exact(no_kernel, qconv_scale)


def test_qconv_self_test_rejects_the_unperturbed_scale_on_this_machine():
    """onnxruntime's own kernel: MLAS rounds ties to even, so the plain 2^-s scale fails the tie cases (and on a CPU
    whose kernel is inexact anyway the verdict is False too): whatever this CPU is, the self-test can fail."""
    assert not qconv_exact(ort_qlinear_conv, unperturbed_scale)
    assert not qconv_exact(ort_qgemm, unperturbed_scale, shapes=QGEMM_SHAPES)


def test_qgemm_self_test_refuses_convolutions():
    """QGemm's adapter runs 1x1 convolutions only; any other shape raises, which the self-test counts as inexact."""
    with pytest.raises(ValueError, match="1x1"):
        ort_qgemm(np.zeros((1, 4, 3, 3), np.uint8), 0, np.zeros((2, 4, 3, 3), np.int8), np.zeros(2), np.ones(2))
    assert not qconv_exact(ort_qgemm, qconv_scale, shapes=QCONV_SHAPES[3:4])


def test_qconv_verdict_is_cached_and_forced():
    kernel_verdict.cache_clear()
    name = next(iter(QCONV_KERNELS))
    original, calls = QCONV_KERNELS[name], []
    QCONV_KERNELS[name] = lambda: calls.append(1) or original()
    try:
        first = kernel_verdict(name)
        assert kernel_verdict(name) is first and len(calls) == 1  # once per process
        with forced_verdicts(not first):
            assert kernel_verdict(name) is (not first) and len(calls) == 1
    finally:
        QCONV_KERNELS[name] = original
        kernel_verdict.cache_clear()


def test_int32_epilogue_self_test_rejects_other_arithmetic():
    """The int32 epilogue's self-test passes C's truncating division (and a flooring one: they differ only below 0,
    which clamps to lo >= 0 either way) and rejects a division rounding to nearest and a sum made in float32:
    whatever this CPU is, the self-test can fail."""
    from accel.engine.capability import int32_epilogue_exact

    def epilogue(divide, sum_dtype=np.int64):
        def run(acc, bias, shift, lo, hi):
            v = (acc.astype(sum_dtype) + np.asarray(bias).astype(sum_dtype).reshape(1, -1)).astype(np.int64)
            return np.clip(divide(v, np.int64(1) << np.asarray(shift, np.int64).reshape(1, -1)), lo, hi).astype(
                np.uint8)
        return run

    assert int32_epilogue_exact(epilogue(lambda v, d: np.where(v >= 0, v // d, -((-v) // d))))
    assert int32_epilogue_exact(epilogue(lambda v, d: v // d))
    assert not int32_epilogue_exact(epilogue(lambda v, d: np.round(v / d).astype(np.int64)))
    assert not int32_epilogue_exact(epilogue(lambda v, d: v // d, np.float32))


def test_cast_self_test_rejects_rounding():
    """The Cast self-test passes flooring and rejects rounding to nearest: whatever this CPU is, it can fail."""
    from accel.engine.capability import cast_floors_exact

    assert cast_floors_exact(lambda x: np.floor(x).astype(np.uint8))
    assert not cast_floors_exact(lambda x: np.rint(x).astype(np.uint8))


def test_quantize_self_test_rejects_flooring_and_wrapping():
    """The QuantizeLinear self-test passes rounding to nearest with saturation and rejects flooring and a conversion
    that wraps past 255: whatever this CPU is, it can fail."""
    from accel.engine.capability import quantize_rounds_exact

    assert quantize_rounds_exact(lambda x: np.clip(np.rint(x), 0, 255).astype(np.uint8))
    assert not quantize_rounds_exact(lambda x: np.clip(np.floor(x), 0, 255).astype(np.uint8))
    assert not quantize_rounds_exact(lambda x: (np.clip(np.rint(x), 0, None).astype(np.int64) % 256).astype(np.uint8))


def test_qadd_self_test_rejects_wrapping_and_rounding():
    """The QLinearAdd self-test passes the exact saturating sum and rejects one that wraps at 256 and one that
    halves the shift-6 input: whatever this CPU is, it can fail."""
    from accel.engine.capability import qadd_exact

    def add(wrap=False, scale_a=lambda s: s):
        def run(a, za, sa, b, zb, sb, zy):
            v = (a.astype(np.int64) - za) * int(scale_a(sa)) + (b.astype(np.int64) - zb) * int(sb) + zy
            return (v % 256 if wrap else np.clip(v, 0, 255)).astype(np.uint8)
        return run

    assert qadd_exact(add())
    assert not qadd_exact(add(wrap=True))
    assert not qadd_exact(add(scale_a=lambda s: max(s // 2, 1)))


def _mlas_qadd_avx2(a, za, scale_a, b, zb, scale_b, zy):
    """MLAS's AVX2 QLinearAdd (output scale 1) in numpy: the fixed part ``zy - fma(ra, za, rb zb)`` (the compiler
    contracts it), two float32 fmas (exact in float64, then rounded once to float32), round half to even,
    saturation to uint8. It matched onnxruntime 1.31 (AVX-512 machine) on 200 random configurations x 65,543 pairs,
    2026-12-01."""
    f32 = np.float32
    fixed = f32(f32(zy) - f32(float(scale_a) * za + float(f32(f32(scale_b) * f32(zb)))))
    t = f32(b.astype(np.float64) * f32(scale_b) + fixed)
    t = f32(a.astype(np.float64) * f32(scale_a) + t.astype(np.float64))
    return np.clip(np.rint(t), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("shift_a,shift_b,shift,bias", [(0, 1, 1, -128), (0, 0, 1, 0), (1, 0, 1, -128),
                                                        (0, 1, 2, 128), (2, 0, 3, 1024), (0, 0, 0, -128)])
def test_qadd_plan_rounds_ties_up_under_round_half_even(shift_a, shift_b, shift, bias):
    """On MLAS's float32 arithmetic (emulated, so independent of this CPU) the plan search finds a QLinearAdd that
    equals the half-up contract on every uint8 pair; the same zero points without the nudge fail wherever the sum
    has a fraction (ties round to even), and so does a nudge so large that non-ties cross a half-integer."""
    from dataclasses import replace

    from accel.engine.capability import _checked_qadd_plan, qadd_plan_exact

    plan = _checked_qadd_plan(shift_a, shift_b, shift, bias, _mlas_qadd_avx2)
    assert plan is not None
    assert qadd_plan_exact(plan, shift_a, shift_b, shift, bias, _mlas_qadd_avx2)
    if shift > min(shift_a, shift_b):
        plain = replace(plan, scale_a=2.0 ** (shift_a - shift), scale_b=2.0 ** (shift_b - shift))
        assert not qadd_plan_exact(plain, shift_a, shift_b, shift, bias, _mlas_qadd_avx2)
        coarse = replace(plan, **{key: 2.0 ** (s_x - shift) * (1 + 2.0 ** -4) for key, s_x in
                                  (("scale_a", shift_a), ("scale_b", shift_b)) if s_x < shift})
        assert not qadd_plan_exact(coarse, shift_a, shift_b, shift, bias, _mlas_qadd_avx2)


def test_qadd_plan_needs_a_zero_point_solution():
    """Without output zero point room for the bias (both inputs fractional, bias below zero) there is no plan: the
    add stays a 1x1 QLinearConv."""
    from accel.engine.capability import _checked_qadd_plan, _qadd_zero_points

    assert _qadd_zero_points(0, 0, 1, -128) is None
    assert _checked_qadd_plan(0, 0, 1, -128, _mlas_qadd_avx2) is None


def _rounding_pool(truncate=False):
    """A global average pool in numpy as MLAS computes it (int32 sum, float32 product with x_scale / window,
    round half to even, saturation), or truncating instead of rounding."""
    def pool(x, x_scale):
        window = x.shape[1] * x.shape[2]
        total = x.reshape(len(x), window, -1).astype(np.int64).sum(axis=1).astype(np.float32)
        v = total * np.float32(np.float32(x_scale) / np.float32(window))
        return np.clip(np.trunc(v) if truncate else np.rint(v), 0, 255).astype(np.uint8)
    return pool


def test_gap_scale_search_checks_every_sum():
    """The global average pool's scale search, on MLAS's arithmetic in numpy (independent of this CPU): the scale it
    returns passes every sum of the window; a truncating kernel finds none; floor rounding, which no rounding to
    nearest gives, finds none either."""
    from accel.engine.capability import _checked_gap_scale, gap_scale_exact

    pool = _rounding_pool()
    for window, mult, shift, channels in ((49, 42799, 20, 64), (49, 42799, 21, 1280), (16, 1, 4, 3)):
        scale = _checked_gap_scale(window, mult, shift, "half_up", channels, pool)
        assert scale is not None and gap_scale_exact(scale, window, mult, shift, "half_up", channels, pool)
    assert _checked_gap_scale(49, 42799, 20, "half_up", 64, _rounding_pool(truncate=True)) is None
    assert _checked_gap_scale(16, 1, 4, "floor", 3, pool) is None
