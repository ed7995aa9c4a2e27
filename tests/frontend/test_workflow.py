"""The file-level workflows: ``run_demo`` on a bundled model, configs with overridden bit widths."""

import json
import shutil

import pytest

from accel.errors import ConfigError, DataError, ModelImportError
from accel.frontend.onnx_import import import_onnx
from accel.frontend.workflow import MODELS_DIR, bundled_models, calibration_images, format_demo, make_config, run_demo


def test_demo_writes_reports_and_models(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(MODELS_DIR / "cnn_digits.onnx", models)
    (models / "models.json").write_text(json.dumps({"cnn_digits": bundled_models()["cnn_digits"]}))
    report = run_demo(tmp_path / "out", models_dir=models, progress=False)
    (row,) = report["models"]
    assert row["model"] == "cnn_digits" and row["images"] == 360
    assert row["float_top1"] == pytest.approx(bundled_models()["cnn_digits"]["float_top1"], abs=0.01)
    assert row["drop"] == pytest.approx(row["float_top1"] - row["quant_top1"], abs=0.01)
    assert json.loads((tmp_path / "out" / "demo_report.json").read_text()) == report
    assert "| cnn_digits | digits | 360 |" in (tmp_path / "out" / "demo_report.md").read_text()
    assert (tmp_path / "out" / "cnn_digits.qmodel").is_file()
    assert format_demo(report).splitlines()[1].startswith("cnn_digits")


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
