"""Bad models: every error names the layer and the field."""

import numpy as np
import pytest

from accel.config import AcceleratorConfig
from accel.engine import run_model
from accel.errors import DataError, ModelError
from accel.ir import ModelBuilder


def build(cfg=None, **overrides):
    cfg = cfg or AcceleratorConfig()
    arrays = dict(codes=np.zeros((4, 2, 3, 3), np.uint8), lut=np.zeros((1, 16), np.int8),
                  bias=np.zeros(4, np.int32), shift=np.zeros(4, np.int32))
    arrays.update(overrides)
    b = ModelBuilder(cfg)
    x = b.input("x", (2, 5, 5), "int8")
    return b.conv2d("conv1", x, **arrays)


@pytest.mark.parametrize("override, message", [
    (dict(codes=np.full((4, 2, 3, 3), 16, np.uint8)),
     r"^layer 'conv1' \(conv2d\): field 'codes': value 16 at index \(0, 0, 0, 0\) is out of range, allowed 0\.\.15"),
    (dict(lut=np.full((1, 16), 200)), r"^layer 'conv1' \(conv2d\): field 'lut': value 200 .* allowed -128\.\.127"),
    (dict(lut=np.zeros((1, 8), np.int8)), r"^layer 'conv1' \(conv2d\): field 'lut': expected shape \(1, 16\)"),
    (dict(shift=np.full(4, 32)), r"^layer 'conv1' \(conv2d\): field 'shift': value 32 .* allowed 0\.\.31"),
    (dict(shift=np.full(4, -1)), r"field 'shift': value -1 .* allowed 0\.\.31"),
    (dict(bias=np.zeros(3, np.int32)), r"^layer 'conv1' \(conv2d\): field 'bias': expected shape \(4,\), got \(3,\)"),
    (dict(bias=np.zeros(4, np.float32)), r"field 'bias': expected an integer array, got dtype float32"),
    (dict(codes=np.zeros((4, 3, 3, 3), np.uint8)), r"^layer 'conv1' \(conv2d\): field 'codes': shape \(4, 3, 3, 3\)"
     r" does not match 2 input channels"),
    (dict(codes=np.zeros((4, 2, 3), np.uint8)), r"field 'codes': expected 4 dimensions"),
])
def test_bad_fields(override, message):
    with pytest.raises(ModelError, match=message):
        build(**override)


def test_codes_checked_against_weight_bits():
    with pytest.raises(ModelError, match=r"field 'codes': value 4 .* allowed 0\.\.3"):
        build(AcceleratorConfig(weight_bits=2), codes=np.full((4, 2, 3, 3), 4, np.uint8), lut=np.zeros((1, 4), np.int8))


def test_multiply_shift_needs_mult():
    with pytest.raises(ModelError, match=r"field 'mult': missing"):
        build(AcceleratorConfig(requant="multiply_shift"))


def test_bias_beyond_accumulator():
    with pytest.raises(ModelError, match=r"field 'bias': value 40000 .* allowed -32768\.\.32767"):
        build(AcceleratorConfig(acc_bits=16), bias=np.full(4, 40000))


def test_clamp_bounds_must_fit_output_type():
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (3,), "int8")
    with pytest.raises(ModelError, match=r"^layer 'fc' \(linear\): field 'hi': 300 is out of range"):
        b.linear("fc", x, codes=np.zeros((2, 3), np.uint8), lut=np.zeros((1, 16), np.int8), bias=np.zeros(2, int),
                 shift=np.zeros(2, int), lo=0, hi=300, dtype="uint8")


def test_engine_rejects_bad_inputs():
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (3,), "int8")
    y = b.linear("fc", x, codes=np.zeros((2, 3), np.uint8), lut=np.zeros((1, 16), np.int8), bias=np.zeros(2, int),
                 shift=np.zeros(2, int), raw=True)
    model = b.build([y])
    with pytest.raises(DataError, match=r"input 'x': expected shape \(batch, 3\), got \(2, 4\)"):
        run_model(model, np.zeros((2, 4), np.int8))
    with pytest.raises(DataError, match=r"input 'x': expected integers"):
        run_model(model, np.zeros((2, 3), np.float32))
    with pytest.raises(DataError, match=r"input 'x': values -200\.\.0 outside int8"):
        run_model(model, np.array([[-200, 0, 0]]))


@pytest.mark.parametrize("padding", [(2, 0, 0, 0), (0, 3, 0, 0), (0, 0, 2, 0), (0, 0, 0, 5)])
def test_max_pool_padding_must_be_smaller_than_the_kernel(padding):
    # A window of padding only has no maximum (ONNX MaxPool refuses it too).
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (1, 6, 6), "int8")
    with pytest.raises(ModelError, match=r"^layer 'pool' \(max_pool\): field 'padding': \[.*\] must be smaller "
                                         r"than the kernel \[2, 3\] on every side"):
        b.max_pool("pool", x, kernel=(2, 3), stride=(1, 1), padding=padding)


def test_max_pool_padding_one_below_the_kernel_is_accepted():
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (1, 6, 6), "int8")
    y = b.max_pool("pool", x, kernel=(2, 3), stride=(1, 1), padding=(1, 2, 1, 2))
    model = b.build([y])
    out = run_model(model, np.full((1, 1, 6, 6), -100, np.int8), backend="reference")[y]
    assert out.shape == (1, 1, 7, 8) and (out == -100).all()
