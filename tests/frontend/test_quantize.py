"""Lowering to the integer model: legal shifts, fused clamps, residual adds, raw logits, and accuracy
targets of issue 4 on the bundled models and on networks the project has never seen."""

import math

import numpy as np
import pytest

from accel.config import AcceleratorConfig, LutScope, Requant
from accel.data import load_dataset
from accel.datapath import quantize_input
from accel.engine import run_model
from accel.frontend.calibrate import calibrate
from accel.frontend.evaluate import evaluate
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx
from accel.frontend.quantize import (
    QuantizeOptions,
    default_config,
    dequantize_output,
    emit_integer_model,
    quantize_graph,
)
from accel.frontend.workflow import MODELS_DIR, bundled_models
from accel.ir import MAC_OPS
from tests.support.models import GraphBuilder, affine_model, all_ops_model, committed_float_top1, save

BUNDLED = bundled_models()


def quantized_outputs(model, graph, x):
    info = model.tensors[model.inputs[0]]
    xi = quantize_input(x, info.exponent, -128, 127).astype(np.int8)
    ints = run_model(model, xi, return_all=True)
    floats = run_float(graph, x, return_all=True)
    return ints, floats


def sqnr(f, q):
    return 10 * math.log10(np.sum(f.astype(np.float64) ** 2) / max(np.sum((f - q) ** 2), 1e-30))


def residual_graph(tmp_path):
    """Conv-ReLU6 stem, a residual add with ReLU, avg pool, concat of two pools, linear head."""
    g = GraphBuilder([1, 8, 8], seed=3)
    stem = g.node("Conv", ["x", g.weight("w1", (4, 1, 3, 3), 0.8), g.weight("b1", (4,), 0.1)], pads=[1, 1, 1, 1])
    r6 = g.node("Clip", [stem, g.init("lo", np.float32(0)), g.init("hi", np.float32(6))])
    body = g.node("Conv", [r6, g.weight("w2", (4, 4, 3, 3), 0.2)], pads=[1, 1, 1, 1])
    add = g.node("Add", [body, r6])
    relu = g.node("Relu", [add])
    mp = g.node("MaxPool", [relu], kernel_shape=[2, 2], strides=[2, 2])
    ap = g.node("AveragePool", [relu], kernel_shape=[2, 2], strides=[2, 2])
    cat = g.node("Concat", [mp, ap], axis=1)
    flat = g.node("Flatten", [cat])
    fc = g.node("Gemm", [flat, g.weight("w3", (10, 128), 0.1), g.weight("b3", (10,), 0.1)], transB=1)
    return import_onnx(save(g.build(fc), tmp_path / "residual.onnx"))


CONFIGS = {
    "default": AcceleratorConfig(),
    "w8": AcceleratorConfig(weight_bits=8),
    "w2": AcceleratorConfig(weight_bits=2),
    "a6": AcceleratorConfig(act_bits=6),
    "lut_per_channel": AcceleratorConfig(lut_scope=LutScope.CHANNEL),
    "multiply_shift": AcceleratorConfig(requant=Requant.MULTIPLY_SHIFT),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_lowering_is_legal_and_tracks_float(tmp_path, name):
    config = CONFIGS[name]
    graph = residual_graph(tmp_path)
    x = np.random.default_rng(0).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    model = quantize_graph(graph, x, config, QuantizeOptions())
    model.validate()
    lo_a, hi_a = config.act_range(False)
    for layer in model.layers:
        if layer.op in MAC_OPS:
            assert layer.arrays["codes"].max() < config.lut_entries
            if not layer.attrs["raw"]:
                assert 0 <= layer.arrays["shift"].min() and layer.arrays["shift"].max() <= config.max_shift
                assert lo_a <= layer.attrs["hi"] <= hi_a or layer.attrs["hi"] <= config.act_range(True)[1]
            assert ("mult" in layer.arrays) == (config.requant is Requant.MULTIPLY_SHIFT)
    ints, floats = quantized_outputs(model, graph, x)
    out = model.outputs[0]
    q = dequantize_output(model, out, ints[out])
    # a wrong exponent anywhere (a factor of two) falls below ~6 dB
    want = {"default": 10, "w8": 30, "w2": 0, "a6": 10, "lut_per_channel": 10, "multiply_shift": 10}[name]
    assert sqnr(floats[out], q) > want


@pytest.mark.parametrize("build, want_db", [(all_ops_model, 25), (affine_model, 30)])
def test_every_op_lowers_and_runs_on_the_engine(tmp_path, build, want_db):
    """Grouped/dilated/depthwise convs, ceil-mode max pool, avg pool, concat, reshape, standalone
    affine layers (ReLU on the input, BatchNorm after a pool): W8A8 through the engine tracks float."""
    graph = import_onnx(build(tmp_path))
    x = np.random.default_rng(0).uniform(-1, 1, (64, *graph.input_shape)).astype(np.float32)
    model = quantize_graph(graph, x, default_config(weight_bits=8))
    ops = {layer.op for layer in model.layers}
    assert ops >= ({"conv2d", "max_pool", "avg_pool", "concat", "reshape", "add", "global_avg_pool", "linear"}
                   if build is all_ops_model else {"conv2d", "max_pool"})
    ints, floats = quantized_outputs(model, graph, x)
    for layer in model.layers:
        q = dequantize_output(model, layer.output, ints[layer.output]).reshape(floats[layer.output].shape)
        assert sqnr(floats[layer.output], q) > want_db, layer.name


def test_fused_relu6_residual_add_and_raw_logits(tmp_path):
    graph = residual_graph(tmp_path)
    x = np.random.default_rng(0).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    model = quantize_graph(graph, x, AcceleratorConfig(weight_bits=8), QuantizeOptions(lut="uniform"))
    stem, body, add = model.layers[0], model.layers[1], model.layers[2]
    e_stem = model.tensors[stem.output].exponent
    assert model.tensors[stem.output].dtype == "uint8" and stem.attrs["lo"] == 0
    assert stem.attrs["hi"] == min(255, round(6 * 2 ** e_stem))
    # add: both inputs aligned by left shifts to the finer exponent, then one right shift
    e_a, e_b, e_y = (model.tensors[t].exponent for t in (*add.inputs, add.output))
    e_t = max(e_a, e_b)
    assert (add.attrs["shift_a"], add.attrs["shift_b"], add.attrs["shift"]) == (e_t - e_a, e_t - e_b, e_t - e_y)
    assert add.attrs["lo"] == 0 and model.tensors[add.output].dtype == "uint8"
    # the shift of every channel is the exponent arithmetic of DESIGN.md
    e_x = model.tensors[body.inputs[0]].exponent
    np.testing.assert_array_equal(body.arrays["shift"],
                                  e_x + body.arrays["weight_exponent"] - model.tensors[body.output].exponent)
    head = model.layers[-1]
    assert head.attrs["raw"] and model.tensors[head.output].dtype == "int32"
    scales = model.metadata["output_scales"][head.output]
    e_in = model.tensors[head.inputs[0]].exponent
    np.testing.assert_allclose(scales, 2.0 ** -(e_in + head.arrays["weight_exponent"]))


def test_output_exponent_is_lowered_when_a_shift_would_be_negative(tmp_path):
    """A layer whose calibrated output would be finer than its accumulator gets a coarser output."""
    g = GraphBuilder([4], seed=0)
    fc1 = g.node("Gemm", ["x", g.init("w1", np.full((4, 4), 0.001, np.float32))], transB=1)
    fc2 = g.node("Gemm", [fc1, g.init("w2", np.eye(4, dtype=np.float32))], transB=1)
    graph = import_onnx(save(g.build(fc2), tmp_path / "tiny.onnx"))
    x = np.random.default_rng(0).uniform(0.9, 1, (32, 4)).astype(np.float32)
    calib = calibrate(graph, x, method="minmax")
    calib.exponents[graph.nodes[0].output] = 30  # far finer than any accumulator can reach
    model = emit_integer_model(graph, calib, AcceleratorConfig(weight_bits=8), QuantizeOptions(lut="uniform"))
    layer = model.layers[0]
    assert layer.arrays["shift"].min() == 0
    assert model.tensors[layer.output].exponent == (model.tensors["x"].exponent
                                                   + layer.arrays["weight_exponent"].min())


def accuracy(name, config, options=None):
    info = BUNDLED[name]
    path = MODELS_DIR / f"{name}.onnx"
    graph = import_onnx(path)
    model = quantize_graph(graph, load_dataset(info["data"], "calib").x, config, options or QuantizeOptions())
    result = evaluate(model, load_dataset(info["data"]), onnx_path=path, sqnr=False)
    assert result.float_top1 == committed_float_top1(name)
    return result


@pytest.mark.parametrize("name", list(BUNDLED))
def test_w8a8_within_0_3_points_of_float(name):
    result = accuracy(name, AcceleratorConfig(weight_bits=8))
    assert result.float_top1 - result.quant_top1 <= 0.3


@pytest.mark.parametrize("name", list(BUNDLED))
def test_w4a8_defaults_within_1_point_of_float(name):
    result = accuracy(name, default_config())
    assert default_config().weight_bits == 4 and default_config().act_bits == 8
    assert result.float_top1 - result.quant_top1 <= 1.0


class _Unseen:
    """Networks the project has never seen, trained here in seconds on digits and exported to ONNX."""

    @staticmethod
    def branchy():
        import torch
        from torch import nn

        class Branchy(nn.Module):  # BatchNorm, two branches (one dilated), concat, avg pool, MLP head
            def __init__(self):
                super().__init__()
                self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
                self.a = nn.Sequential(nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU())
                self.b = nn.Sequential(nn.Conv2d(8, 8, 1), nn.ReLU6())
                self.head = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 32), nn.ReLU(),
                                          nn.Linear(32, 10))

            def forward(self, x):
                s = self.stem(x)
                return self.head(torch.cat([self.a(s), self.b(s)], dim=1))

        return Branchy()

    @staticmethod
    def mlp():
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.Linear(64, 48), nn.ReLU(), nn.Linear(48, 10))


@pytest.fixture(scope="module", params=["branchy", "mlp"])
def unseen_onnx(request, tmp_path_factory):
    import torch

    from accel.frontend.export import export_pytorch

    torch.manual_seed(0)
    net = getattr(_Unseen, request.param)()
    train = load_dataset("digits", "train")
    x, y = torch.from_numpy(train.x), torch.from_numpy(train.y)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(15):
        net.train()
        for i in range(0, len(x), 64):
            loss = torch.nn.functional.cross_entropy(net(x[i:i + 64]), y[i:i + 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return export_pytorch(net, (1, 8, 8), tmp_path_factory.mktemp("unseen") / f"{request.param}.onnx",
                          keep_batchnorm=True)


@pytest.mark.parametrize("weight_bits, budget", [(8, 0.3), (4, 1.0)])
def test_unseen_networks_meet_the_targets(unseen_onnx, weight_bits, budget):
    graph = import_onnx(unseen_onnx)
    model = quantize_graph(graph, load_dataset("digits", "calib").x, default_config(weight_bits=weight_bits))
    result = evaluate(model, load_dataset("digits"), graph=graph, onnx_path=unseen_onnx)
    assert result.float_top1 > 90
    assert result.float_top1 - result.quant_top1 <= budget
    assert all(layer["sqnr_db"] is None or layer["sqnr_db"] > 10 for layer in result.layers)


def test_every_float_op_has_a_layer_emitter():
    from accel.frontend.graph import FLOAT_OPS
    from accel.frontend.quantize import _EMITTERS

    assert set(_EMITTERS) == set(FLOAT_OPS)
