"""The file-level workflows: the bundled models' index, configs with overridden bit widths, calibration data."""

import pytest

from accel.errors import ConfigError, DataError, ModelImportError
from accel.frontend.onnx_import import import_onnx
from accel.frontend.workflow import MODELS_DIR, bundled_models, calibration_images, make_config


def test_make_config_overrides_and_checks():
    assert make_config(weight_bits=3, act_bits=6).weight_bits == 3
    with pytest.raises(ConfigError, match=r"config\.act_bits: 1 is out of range, allowed 2\.\.8"):
        make_config(act_bits=1)


def test_calibration_data_defaults_to_the_matching_bundled_set(tmp_path):
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    x, name = calibration_images(graph, None)
    assert name == "digits" and x.shape == (1437, 1, 8, 8)
    graph.shapes[graph.input] = (3, 32, 32)
    with pytest.raises(DataError, match=r"no bundled data set has images of shape \(3, 32, 32\); give "
                                        r"calibration data with --calib"):
        calibration_images(graph, None)


def test_bundled_index_missing(tmp_path):
    with pytest.raises(ModelImportError, match=r"models\.json: cannot read the bundled models' index"):
        bundled_models(tmp_path)
