"""The file-level workflows: the bundled models' index, configs with overridden bit widths, calibration data."""

import re
import shutil

import numpy as np
import pytest

from accel.data import load_dataset
from accel.errors import ConfigError, DataError, ModelImportError
from accel.frontend.onnx_import import import_onnx
from accel.frontend.workflow import MODELS_DIR, bundled_models, calibration_images, make_config


def test_make_config_overrides_and_checks():
    assert make_config(weight_bits=3, act_bits=6).weight_bits == 3
    with pytest.raises(ConfigError, match=r"config\.act_bits: 1 is out of range, allowed 2\.\.8"):
        make_config(act_bits=1)


def test_calibration_data_is_explicit(tmp_path, caplog):
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    x, name = calibration_images(graph, None)  # a bundled model: the data set its index names
    assert name == "digits" and x.shape == (1437, 1, 8, 8)
    digits = load_dataset("digits", "test")
    np.savez(tmp_path / "own.npz", x=digits.x, y=digits.y)
    x, name = calibration_images(graph, None, data=str(tmp_path / "own.npz"))  # eval's --data
    assert name.endswith("own.npz") and x.shape == (360, 1, 8, 8)
    shutil.copy(MODELS_DIR / "cnn_digits.onnx", tmp_path / "net.onnx")
    with pytest.raises(DataError, match=r"^.*net\.onnx: no calibration data; give --calib DATA \(mnist5k, "
                                        r"digits or an \.npz with 'x' normalized as the network expects\)$"):
        calibration_images(import_onnx(tmp_path / "net.onnx"), None)
    assert not caplog.records


def test_calibration_data_unlike_a_bundled_models_own_draws_one_warning(tmp_path, caplog):
    digits = load_dataset("digits", "calib")
    normalized = (digits.x - digits.x.mean()) / digits.x.std()
    np.savez(tmp_path / "normalized.npz", x=normalized.astype(np.float32), y=digits.y)
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    calibration_images(graph, "digits")
    assert not caplog.records
    calibration_images(graph, str(tmp_path / "normalized.npz"))
    (record,) = caplog.records
    assert record.levelname == "WARNING" and "\n" not in record.getMessage()
    assert re.match(r"^calibration data .*normalized\.npz differs grossly from digits, the data set of "
                    r"cnn_digits: standard deviation 0\.99\d against 0\.375 \(2\.7 times\); is one normalized",
                    record.getMessage())


def test_bundled_index_missing(tmp_path):
    with pytest.raises(ModelImportError, match=r"models\.json: cannot read the bundled models' index"):
        bundled_models(tmp_path)
