"""Bundled models: the committed ONNX files, their index, and reproducible retraining."""

import importlib.util
from pathlib import Path

import numpy as np
import onnx
import pytest

from accel.frontend.workflow import MODELS_DIR, bundled_models

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "models" / "train.py"  # in the checkout, not the package


def load_train_script():
    spec = importlib.util.spec_from_file_location("bundled_train", TRAIN_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_index_covers_both_data_sets_and_the_three_architectures():
    index = bundled_models()
    assert {v["data"] for v in index.values()} == {"mnist5k", "digits"}
    assert {"cnn_mnist", "resnet_mnist", "mobilenet_mnist"} <= set(index)
    ops = {name: {n.op_type for n in onnx.load(str(MODELS_DIR / f"{name}.onnx")).graph.node} for name in index}
    assert "BatchNormalization" in ops["resnet_mnist"] and "Add" in ops["resnet_mnist"]
    assert "Clip" in ops["mobilenet_mnist"] and "BatchNormalization" in ops["mobilenet_mnist"]
    for name in index:
        model = onnx.load(str(MODELS_DIR / f"{name}.onnx"))
        assert model.ir_version <= 10 and model.opset_import[0].version >= 13
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch
        assert (MODELS_DIR / f"{name}.onnx").stat().st_size < 1 << 20


def retrain_and_compare(name, tmp_path):
    train = load_train_script()
    entry = train.train(name, tmp_path)
    assert entry["float_top1"] == bundled_models()[name]["float_top1"]
    fresh = {i.name: onnx.numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / f"{name}.onnx")).graph.initializer}
    committed = {i.name: onnx.numpy_helper.to_array(i)
                 for i in onnx.load(str(MODELS_DIR / f"{name}.onnx")).graph.initializer}
    assert fresh.keys() == committed.keys()
    for key in fresh:
        np.testing.assert_array_equal(fresh[key], committed[key], err_msg=key)


def test_retraining_reproduces_cnn_digits(tmp_path):
    retrain_and_compare("cnn_digits", tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cnn_mnist", "resnet_mnist", "mobilenet_mnist"])
def test_retraining_reproduces_mnist_models(tmp_path, name):
    retrain_and_compare(name, tmp_path)
