"""Quantization-aware training: the loss falls, scales stay powers of two, the export is exact."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from accel.data import load_dataset
from accel.datapath import quantize_input
from accel.engine import run_model
from accel.errors import ConfigError
from accel.frontend.fakequant import FakeQuantModel
from accel.frontend.onnx_import import import_onnx
from accel.frontend.qat import TrainOptions, export, prepare, train
from accel.frontend.quantize import default_config
from accel.frontend.workflow import MODELS_DIR
from accel.ir import MAC_OPS

OPTS = TrainOptions(epochs=1, learn_lut=True, seed=0)


def _loss(net, x, y) -> float:
    with torch.no_grad():
        return float(F.cross_entropy(net(net.quantize_input(x)), torch.as_tensor(y)))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", "train"), load_dataset("digits", "test")


@pytest.fixture(scope="module")
def trained(digits, tmp_path_factory):
    """cnn_digits at W2A4 (post-training loses points there), one epoch with learned LUTs."""
    train_set, _ = digits
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    net, start = prepare(graph, train_set.x, default_config(weight_bits=2, act_bits=4), learn_lut=True)
    loss_before = _loss(net, train_set.x, train_set.y)
    start_params = {k: v.detach().clone() for k, v in net.state_dict().items()}
    checkpoint = tmp_path_factory.mktemp("qat") / "run.ckpt"
    history = train(net, train_set.x, train_set.y, OPTS, checkpoint=checkpoint)
    return dict(net=net, start=start, loss_before=loss_before, start_params=start_params, history=history,
                checkpoint=checkpoint, graph=graph)


def test_training_lowers_the_loss(trained, digits):
    train_set, _ = digits
    assert _loss(trained["net"], train_set.x, train_set.y) < 0.8 * trained["loss_before"]
    assert len(trained["history"]) == 1 and trained["history"][0]["epoch"] == 1


def test_learned_scales_are_powers_of_two_and_shifts_follow(trained):
    net = trained["net"]
    moved = [k for k, v in net.state_dict().items() if "log2" in k and not torch.equal(v, trained["start_params"][k])]
    assert moved, "no scale parameter was trained"
    model = net.plan()
    for layer in model.layers:
        if "weight_exponent" not in layer.arrays:
            continue
        e_w = np.asarray(layer.arrays["weight_exponent"])
        assert e_w.dtype.kind == "i"
        if not layer.attrs["raw"]:
            e_x = model.tensors[layer.inputs[0]].exponent
            e_y = model.tensors[layer.output].exponent
            np.testing.assert_array_equal(layer.arrays["shift"], e_x + e_w - e_y)
    for q in net.quantized_weights().values():
        mantissa, _ = np.frexp(q.step)
        assert np.all(mantissa == 0.5)


def test_learned_luts_are_int8_and_moved(trained):
    net, start = trained["net"], trained["start"]
    model = net.plan()
    changed = 0
    for layer in model.layers:
        if "lut" in layer.arrays:
            assert layer.arrays["lut"].dtype == np.int8
            changed += not np.array_equal(layer.arrays["lut"], start.layer(layer.name).arrays["lut"])
    assert changed > 0


def test_export_is_bit_exact_with_the_engine_on_the_whole_test_set(trained, digits):
    _, test = digits
    model, result = export(trained["net"], test.x)
    assert result == {"images": len(test), "equal_logits": len(test), "equal_predictions": len(test)}
    # the fake-quant model of the exported file gives the same raw logits as the engine
    x_int = quantize_input(test.x, model.tensors[model.inputs[0]].exponent)
    with torch.no_grad():
        fq = FakeQuantModel(model)(torch.as_tensor(x_int, dtype=torch.float64)).numpy()
    np.testing.assert_array_equal(fq, run_model(model, x_int.astype(np.int8))[model.outputs[0]])


def test_resume_continues_from_the_checkpoint(trained, digits):
    train_set, _ = digits
    graph = trained["graph"]
    net, _ = prepare(graph, train_set.x, default_config(weight_bits=2, act_bits=4), learn_lut=True)
    history = train(net, train_set.x[:64], train_set.y[:64], TrainOptions(epochs=2, learn_lut=True, seed=0),
                    checkpoint=trained["checkpoint"], resume=True)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[0] == trained["history"][0]


def test_resume_refuses_a_checkpoint_of_other_options(trained, digits):
    train_set, _ = digits
    net, _ = prepare(trained["graph"], train_set.x, default_config(weight_bits=2, act_bits=4))
    with pytest.raises(ConfigError, match=r"^.*run\.ckpt: the checkpoint was made for another network"):
        train(net, train_set.x[:64], train_set.y[:64], TrainOptions(epochs=2, seed=0),
              checkpoint=trained["checkpoint"], resume=True)


@pytest.mark.parametrize("schedule, factors", [("constant", [1.0, 1.0, 1.0]), ("cosine", [1.0, 0.5, 0.0])])
def test_learning_rate_schedules(schedule, factors):
    from accel.frontend.qat.train import _set_rates

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.Adam([{"params": [param], "lr": 0.2}])
    opts = TrainOptions(schedule=schedule)
    rates = []
    for progress in (0.0, 0.5, 1.0):
        _set_rates(optimizer, opts, progress)
        rates.append(optimizer.param_groups[0]["lr"])
    assert rates == pytest.approx([0.2 * f for f in factors])


@pytest.mark.parametrize("field, value", [("epochs", 0), ("lr", 0.0), ("sparsity", -1.0), ("offset_lr", 0.0),
                                          ("schedule", "linear")])
def test_bad_training_options(field, value):
    with pytest.raises(ConfigError, match=rf"^{field} "):
        TrainOptions(**{field: value})


def test_an_l1_penalty_raises_activation_sparsity(digits):
    """Georgiadis-style sparsification: with an L1 weight on the activations more of them are zero
    (measured through the engine on the exported model)."""
    from accel.perf.activations import measure_activations

    train_set, test = digits
    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    zeros = []
    for l1 in (0.0, 1.0):
        net, _ = prepare(graph, train_set.x, default_config())
        train(net, train_set.x, train_set.y, TrainOptions(epochs=1, sparsity=l1, lr=1e-3, seed=0))
        model, _ = export(net)
        x_int = quantize_input(test.x[:100], model.tensors[model.inputs[0]].exponent).astype(np.int8)
        stats = measure_activations(model, x_int)
        hidden = [layer.output for layer in model.layers if layer.op in MAC_OPS and not layer.attrs["raw"]]
        zeros.append(np.mean([stats.sparsity[t] for t in hidden]))
    assert zeros[1] > zeros[0] + 0.05
