"""``evaluate``: both passes stream in batches, the source network is checked by its SHA-256,
and calibration data unlike the test data draws a warning."""

import importlib
import re
import shutil

import numpy as np
import onnx
import pytest

from accel.data import Dataset, load_dataset
from accel.engine import Engine
from accel.errors import ModelImportError
from accel.frontend.evaluate import evaluate
from accel.frontend.onnx_import import import_onnx
from accel.frontend.quantize import default_config, quantize_graph
from accel.frontend.workflow import MODELS_DIR

evaluate_module = importlib.import_module("accel.frontend.evaluate")  # the package exports a function of that name


@pytest.fixture()
def digits_copy(tmp_path):
    """cnn_digits copied outside the bundled folder and quantized from that copy."""
    path = tmp_path / "net.onnx"
    shutil.copy(MODELS_DIR / "cnn_digits.onnx", path)
    model = quantize_graph(import_onnx(path), load_dataset("digits", "calib").x, default_config())
    return path, model


def test_both_passes_stream_in_batches(digits_copy, monkeypatch):
    path, model = digits_copy
    test = load_dataset("digits", "test")
    seen = {"float": [], "engine": [], "graph": []}
    open_session, engine_run, run_float = evaluate_module._onnx_session, Engine.run, evaluate_module.run_float

    class RecordingSession:  # the real onnxruntime session, with the batch sizes it is given recorded
        def __init__(self, session):
            self.session = session

        def get_inputs(self):
            return self.session.get_inputs()

        def run(self, outputs, feeds):
            seen["float"].append(len(next(iter(feeds.values()))))
            return self.session.run(outputs, feeds)

    def recording_engine_run(self, x, **kw):
        seen["engine"].append(len(x))
        return engine_run(self, x, **kw)

    def recording_run_float(graph, x, **kw):
        seen["graph"].append(len(x))
        return run_float(graph, x, **kw)

    monkeypatch.setattr(evaluate_module, "_onnx_session", lambda p: RecordingSession(open_session(p)))
    monkeypatch.setattr(Engine, "run", recording_engine_run)
    monkeypatch.setattr(evaluate_module, "run_float", recording_run_float)
    streamed = evaluate(model, test, batch_size=64)
    for sizes in seen.values():
        assert sizes == [64] * 5 + [40]  # 360 images, never more than one batch at a time
    whole = evaluate(model, test, batch_size=len(test), sqnr=False)
    assert streamed.quant_top1 == whole.quant_top1 and streamed.images == whole.images == 360
    assert streamed.float_top1 > 95 and streamed.agreement > 95


def test_a_changed_source_network_is_refused(digits_copy):
    path, model = digits_copy
    proto = onnx.load(path)
    weights = proto.graph.initializer[0]
    array = onnx.numpy_helper.to_array(weights) * np.float32(1.5)  # other weights, same architecture
    weights.CopyFrom(onnx.numpy_helper.from_array(array, weights.name))
    onnx.save(proto, path)
    with pytest.raises(ModelImportError, match=r"^d\.qmodel: its source network .*net\.onnx has changed since it "
                                               r"was quantized \(SHA-256 [0-9a-f]{12}, recorded [0-9a-f]{12}\); "
                                               r"re-quantize it or restore that file$"):
        evaluate(model, load_dataset("digits", "test"), where="d.qmodel")


def test_a_model_without_the_source_hash_is_evaluated_with_a_warning(digits_copy, caplog):
    path, model = digits_copy
    del model.metadata["source_sha256"]
    result = evaluate(model, load_dataset("digits", "test"), sqnr=False, where="old.qmodel")
    assert result.float_top1 is not None
    (record,) = [r for r in caplog.records if r.levelname == "WARNING"]
    assert re.match(r"^old\.qmodel: records no SHA-256 of its source network \(written by an older accel\); "
                    r"the float results of .*net\.onnx are unverified$", record.getMessage())


def test_test_data_unlike_the_calibration_data_draws_one_warning(digits_copy, caplog):
    path, model = digits_copy
    test = load_dataset("digits", "test")
    evaluate(model, test, sqnr=False)
    assert not caplog.records
    normalized = Dataset("normalized.npz", "test", (test.x - test.x.mean()) / test.x.std(), test.y)
    evaluate(model, normalized, sqnr=False)
    (record,) = caplog.records
    assert re.match(r"^calibration data of the model differs grossly from normalized\.npz \(test\): standard "
                    r"deviation 0\.3\d+ against 1 \(2\.\d times\); is one normalized and the other not\?",
                    record.getMessage())
