"""The trainable network computes its plan's contract exactly, on every bundled architecture."""

import numpy as np
import pytest
import torch

from accel.data import load_dataset
from accel.errors import ConfigError
from accel.frontend.onnx_import import import_onnx
from accel.frontend.qat import check_export, nearest_codes, prepare, scale_gradient, straight_through
from accel.frontend.quantize import default_config
from accel.frontend.workflow import MODELS_DIR, bundled_models


def test_straight_through_is_exact_forward_and_identity_backward():
    latent = torch.tensor([0.1, 2.7, -3.3], requires_grad=True)
    exact = torch.tensor([0.0, 3.0, -3.0])
    out = straight_through(exact, latent)
    assert torch.equal(out, exact)
    out.sum().backward()
    assert torch.equal(latent.grad, torch.ones(3))


def test_scale_gradient_scales_only_the_gradient():
    x = torch.tensor(3.0, requires_grad=True)
    y = scale_gradient(x, 0.25)
    assert float(y.detach()) == 3.0
    y.backward()
    assert float(x.grad) == 0.25


def test_nearest_codes_per_row():
    levels = np.array([[-4.0, 0.0, 4.0], [-1.0, 0.0, 1.0]])
    scaled = np.array([[1.9, 2.1, -3.0], [0.4, 0.6, -5.0]])
    np.testing.assert_array_equal(nearest_codes(scaled, levels), [[1, 2, 0], [1, 2, 0]])


@pytest.mark.parametrize("name", ["resnet_mnist", "mobilenet_mnist", "cnn_mnist"])
def test_perturbed_parameters_export_exactly(name):
    """Random moves of every learnable part (scales across rounding boundaries, LUT levels,
    latent weights and biases): the engine still gives the trained network's logits exactly."""
    data = bundled_models()[name]["data"]
    train_set, test = load_dataset(data, "train"), load_dataset(data, "test")
    net, _ = prepare(import_onnx(MODELS_DIR / f"{name}.onnx"), train_set.x, default_config(act_bits=6),
                     learn_lut=True)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, p in net.named_parameters():
            noise = torch.rand(p.shape, generator=gen) - 0.5
            if "log2" in key:
                p.add_(noise * 1.2)
            elif "lut" in key:
                p.add_(noise * 6)
            else:
                p.add_(noise * 0.05 * p.abs().mean())
    result = check_export(net, net.plan(), test.x[:200])
    assert result == {"images": 200, "equal_logits": 200, "equal_predictions": 200}


def test_multiply_shift_is_refused():
    train_set = load_dataset("digits", "train")
    with pytest.raises(ConfigError, match=r"^requant 'multiply_shift': quantization-aware training"):
        prepare(import_onnx(MODELS_DIR / "cnn_digits.onnx"), train_set.x[:32],
                default_config(requant="multiply_shift"))
