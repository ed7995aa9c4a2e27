"""Average pool excluding padding (ONNX count_include_pad=0, contract v1.2): every executor agrees
with the contract, the importer accepts it, and the quantized model follows onnxruntime."""

import numpy as np
import pytest
import torch

from accel.config import AcceleratorConfig, Rounding
from accel.datapath import avg_pool, window_counts
from accel.engine import run_model, run_model_contract
from accel.errors import ModelError
from accel.frontend.fakequant import to_torch
from accel.ir import ModelBuilder

CASES = [((3, 3), (1, 1), (1, 1, 1, 1)), ((2, 2), (2, 2), (1, 1, 0, 0)), ((3, 2), (2, 1), (2, 0, 1, 1))]


def test_window_counts():
    np.testing.assert_array_equal(window_counts((3, 3), (3, 3), (1, 1), (1, 1, 1, 1)),
                                  [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def _model(kernel, stride, padding, rounding, rng):
    cfg = AcceleratorConfig(rounding=rounding)
    size = kernel[0] * kernel[1]
    b = ModelBuilder(cfg)
    x = b.input("x", (3, 7, 6), "int8")
    arrays = {"count_mult": rng.integers(1, 1 << 16, size), "count_shift": rng.integers(0, 20, size)}
    y = b.add_layer("pool", "avg_pool", [x], {"kernel": list(kernel), "stride": list(stride),
                                              "padding": list(padding), "pad_value": 5, "mult": 1, "shift": 0,
                                              "lo": -128, "hi": 127}, arrays, dtype="int8", exponent=0)
    return b.build([y])


@pytest.mark.parametrize("rounding", [Rounding.HALF_UP, Rounding.FLOOR])
@pytest.mark.parametrize("kernel,stride,padding", CASES)
def test_every_executor_follows_the_contract(kernel, stride, padding, rounding):
    rng = np.random.default_rng(sum(kernel) + sum(padding))
    model = _model(kernel, stride, padding, rounding, rng)
    x = rng.integers(-128, 128, (4, 3, 7, 6)).astype(np.int8)
    expected = run_model_contract(model, x)["pool"]
    assert expected.shape[2:] == window_counts((7, 6), kernel, stride, padding).shape
    for backend in ("reference", "fast"):
        np.testing.assert_array_equal(run_model(model, x, backend=backend)["pool"], expected, err_msg=backend)
    fq = to_torch(model)(torch.as_tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(fq, expected)


def test_contract_excludes_padding_from_sum_and_divisor():
    x = np.full((1, 1, 3, 3), 10, np.int64)
    size = 9
    # multiplier ~2^16 / count and shift 16: the mean of the real elements (10) everywhere, although
    # pad_value is 99 and the border windows hold 4 or 6 real elements
    mult = np.array([65535 // c for c in range(1, size + 1)])
    y = avg_pool(x, (3, 3), (1, 1), (1, 1, 1, 1), 99, 0, 0, -128, 127, "half_up", mult, np.full(size, 16))
    np.testing.assert_array_equal(y, np.full((1, 1, 3, 3), 10))


def test_validation_needs_both_arrays_of_the_right_size():
    rng = np.random.default_rng(0)
    model = _model((3, 3), (1, 1), (1, 1, 1, 1), Rounding.HALF_UP, rng)
    layer = model.layers[0]
    del layer.arrays["count_shift"]
    with pytest.raises(ModelError, match=r"field 'count_shift': missing"):
        model.validate()
    layer.arrays["count_shift"] = np.zeros(4, np.int64)
    with pytest.raises(ModelError, match=r"field 'count_shift'"):
        model.validate()
