"""The op registry: every executor has a handler for every op of ``accel.ir.OPS``, and nothing falls through."""

import math

import numpy as np
import pytest

from accel.engine import Engine
from accel.engine.contract_runner import CONTRACT_HANDLERS, run_layer_contract
from accel.engine.onnx_lowering import EXACT_IN_FLOAT, FLOAT_LOWERINGS, exact_in_float
from accel.engine.runner import NUMBA_HANDLERS
from accel.errors import ModelError
from accel.frontend.fakequant import FAKEQUANT_MODULES, FakeQuantModel
from accel.ir import MAC_OPS, OPS, Layer, Model, layer_macs
from accel.ir.ops import infer_shape, validate_layer
from tests.support.models import small_resnet

EXECUTOR_TABLES = {
    "engine reference backend (numba)": NUMBA_HANDLERS,
    "contract runner": CONTRACT_HANDLERS,
    "fast backend exactness check": EXACT_IN_FLOAT,
    "fast backend ONNX lowering": FLOAT_LOWERINGS,
    "fake-quant model": FAKEQUANT_MODULES,
}


@pytest.mark.parametrize("executor", sorted(EXECUTOR_TABLES))
def test_every_executor_handles_every_op(executor):
    table = EXECUTOR_TABLES[executor]
    assert sorted(set(OPS) - set(table)) == [], f"{executor}: no handler"
    assert sorted(set(table) - set(OPS)) == [], f"{executor}: handles ops the registry does not know"


def test_mac_ops_are_registered_ops_with_mac_counts():
    assert set(MAC_OPS) <= set(OPS)
    model = small_resnet()
    for layer in model.layers:
        expected = 0
        if layer.op in MAC_OPS:
            expected = math.prod(model.tensors[layer.output].shape) * math.prod(layer.arrays["codes"].shape[1:])
            assert expected > 0
        assert layer_macs(model, layer) == expected, layer.name


def test_an_unregistered_op_is_an_error_everywhere():
    model = small_resnet()
    layer = Layer("mystery", "softmax", [model.inputs[0]], "out")
    x = np.zeros((1,) + model.tensors[model.inputs[0]].shape, np.int8)
    with pytest.raises(ModelError, match=r"^layer 'mystery': unknown op 'softmax'; known ops: conv2d, linear"):
        validate_layer(layer, model)
    with pytest.raises(ModelError, match=r"^layer 'mystery': unknown op 'softmax'"):
        infer_shape(layer, [x.shape[1:]])
    with pytest.raises(ModelError, match=r"^layer 'mystery': unknown op 'softmax'"):
        Engine(model, "reference").run_layer(layer, [x])
    with pytest.raises(ModelError, match=r"^layer 'mystery': op 'softmax' has no contract handler"):
        run_layer_contract(model, layer, [x])
    with pytest.raises(ModelError, match=r"^layer 'mystery': op 'softmax' has no fake-quant implementation"):
        FakeQuantModel(Model(model.config, model.inputs, ["out"], model.tensors, [layer]))
    assert not exact_in_float(model, layer)  # so the fast backend hands it to the numba kernels
