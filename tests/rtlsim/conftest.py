"""Fixtures of the RTL simulation tests."""

import pytest

from accel.frontend.workflow import MODELS_DIR
from accel.ir import save_model


@pytest.fixture(scope="session")
def digits_qmodel(tmp_path_factory):
    """The bundled cnn_digits network quantized with the defaults, as a ``.qmodel`` file."""
    from accel.frontend import quantize_onnx

    path = tmp_path_factory.mktemp("models") / "cnn_digits.qmodel"
    save_model(quantize_onnx(MODELS_DIR / "cnn_digits.onnx", "digits"), path)
    return path
