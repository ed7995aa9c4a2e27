"""Property tests: every engine backend equals the numpy contract bit for bit.

The default run draws 1,000 conv, 300 wide conv (the GEMM paths: 8-bit im2col GEMM, rounding by
convolutions), 500 linear and 200 pooling/add/concat cases; ``ACCEL_FULL=1`` raises each to 5,000.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.config import AcceleratorConfig
from accel.engine import BACKENDS, Engine, run_model, run_model_contract
from accel.ir import ModelBuilder
from tests.support.contract import assert_matches_contract
from tests.support.strategies import conv_cases, linear_cases, mac_arrays, pool_add_concat_case, wide_conv_cases

FULL = settings().max_examples >= 5000


def assert_backends_match(model, xs):
    expected = run_model_contract(model, xs)
    for backend in BACKENDS:
        got = run_model(model, xs, backend=backend)
        for name in expected:
            assert got[name].dtype == np.dtype(model.tensors[name].dtype), (backend, name)
        assert_matches_contract(model, xs, got, backend, expected)


@settings(max_examples=5000 if FULL else 1000)
@given(conv_cases())
def test_conv2d_matches_contract(case):
    assert_backends_match(*case)


@settings(max_examples=5000 if FULL else 300, deadline=None)
@given(wide_conv_cases())
def test_wide_conv2d_matches_contract(case):
    """Convolutions with whole channel blocks and long reductions: where this CPU's integer kernels passed their
    self-test they run as 8-bit GEMMs, the others end in the rounding by convolutions."""
    assert_backends_match(*case)


@settings(max_examples=5000 if FULL else 500)
@given(linear_cases())
def test_linear_matches_contract(case):
    assert_backends_match(*case)


@settings(max_examples=5000 if FULL else 200)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["half_up", "floor"]), st.sampled_from(["int8", "uint8"]))
def test_pool_add_concat_match_contract(seed, rounding, dtype):
    assert_backends_match(*pool_add_concat_case(seed, rounding, dtype))


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits", [16, 32])
@pytest.mark.parametrize("k", [1, 600, 30000])
def test_long_reductions(k, acc_bits, overflow):
    """K of 1 up to tens of thousands, with every product at its extreme (-128 x -128)."""
    rng = np.random.default_rng(k + acc_bits)
    cfg = AcceleratorConfig(acc_bits=acc_bits, overflow=overflow)
    b = ModelBuilder(cfg)
    x = b.input("x", (k,), "int8")
    arrays = mac_arrays(rng, cfg, 4, (4, k), extreme=False)
    arrays["lut"][0, :2] = -128
    arrays["codes"][:2] = rng.integers(0, 2, (2, k))  # two channels of all -128 weights
    y = b.linear("fc", x, **arrays, raw=True)
    model = b.build([y])
    xs = rng.integers(-128, 128, (3, k)).astype(np.int8)
    xs[0] = -128
    assert_backends_match(model, xs)


def test_long_conv_reduction_uses_float64_path():
    """A conv whose sums exceed 2^24 (K = 64*3*3 at extreme values) stays exact."""
    rng = np.random.default_rng(7)
    cfg = AcceleratorConfig()
    b = ModelBuilder(cfg)
    x = b.input("x", (64, 6, 6), "uint8")
    arrays = mac_arrays(rng, cfg, 8, (8, 64, 3, 3), extreme=True)
    arrays["lut"][:] = -128
    y = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), raw=True)
    model = b.build([y])
    xs = np.full((2, 64, 6, 6), 255, np.uint8)
    assert_backends_match(model, xs)


@pytest.mark.parametrize("raw", [False, True])
@pytest.mark.parametrize("rounding", ["half_up", "floor"])
def test_fast_path_exact_at_its_bound(rounding, raw):
    """Sums just below 2^23 on onnxruntime's blocked (NCHWc) convolution stay exact."""
    rng = np.random.default_rng(11)
    cfg = AcceleratorConfig(rounding=rounding)
    b = ModelBuilder(cfg)
    x = b.input("x", (64, 10, 10), "uint8")
    arrays = mac_arrays(rng, cfg, 32, (32, 64, 3, 3), extreme=False)
    arrays["lut"] = np.array([[-57, 57, -57, 57, -56, 56, -1, 1, 0, 3, -3, 7, -7, 57, -57, 55]] * 32, np.int8)
    arrays["bias"] = rng.integers(-2000, 2000, 32)
    arrays["shift"] = rng.integers(11, 13, 32)  # spreads the outputs over the int8 range
    y = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), lo=-128, hi=127, raw=raw)
    model = b.build([y])
    engine = Engine(model, "fast")
    assert [s[0] for s in engine._segments(False)] == ["onnx"]  # this layer runs in onnxruntime
    xs = np.where(rng.random((3, 64, 10, 10)) < 0.8, 255, rng.integers(0, 256, (3, 64, 10, 10))).astype(np.uint8)
    assert_backends_match(model, xs)
    if not raw:
        out = run_model(model, xs)["conv"]
        assert len(np.unique(out)) > 60  # requantization exercised, not just the clamp
