"""AveragePool with padding and count_include_pad=0 (ONNX's default): imported, quantized, bit-exact."""

import numpy as np
import onnxruntime as ort
import torch

from accel.engine import run_model, run_model_contract
from accel.frontend.fakequant import to_torch
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx
from accel.frontend.ptq.layerwise import quantize_network_input
from accel.frontend.quantize import QuantizeOptions, dequantize_output, quantize_graph
from tests.support.models import GraphBuilder, save


def _graph(tmp_path, count_include_pad):
    g = GraphBuilder([1, 8, 8], seed=4)
    conv = g.node("Conv", ["x", g.weight("w1", (4, 1, 3, 3), 0.8), g.weight("b1", (4,), 0.1)], pads=[1, 1, 1, 1])
    relu = g.node("Relu", [conv])
    pool = g.node("AveragePool", [relu], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1],
                  count_include_pad=count_include_pad)
    flat = g.node("Flatten", [pool])
    fc = g.node("Gemm", [flat, g.weight("w2", (10, 256), 0.1), g.weight("b2", (10,), 0.1)], transB=1)
    return save(g.build(fc), tmp_path / f"pool{count_include_pad}.onnx")


def test_exclude_padding_is_imported_and_matches_onnxruntime(tmp_path):
    x = np.random.default_rng(0).uniform(0, 1, (16, 1, 8, 8)).astype(np.float32)
    outs = {}
    for include in (0, 1):
        path = _graph(tmp_path, include)
        graph = import_onnx(path)
        pool = next(n for n in graph.nodes if n.op == "avg_pool")
        assert pool.attrs.get("count_include_pad", True) is bool(include)
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        expected = session.run(None, {"x": x})[0]
        outs[include] = run_float(graph, x)[graph.outputs[0]]
        np.testing.assert_allclose(outs[include], expected, rtol=1e-4, atol=1e-4)
    assert np.abs(outs[0] - outs[1]).max() > 1e-2  # the two readings differ at the border


def test_exclude_padding_quantized_model_is_bit_exact_and_tracks_float(tmp_path):
    graph = import_onnx(_graph(tmp_path, 0))
    x = np.random.default_rng(1).uniform(0, 1, (64, 1, 8, 8)).astype(np.float32)
    model = quantize_graph(graph, x, options=QuantizeOptions())
    pool = next(layer for layer in model.layers if layer.op == "avg_pool")
    assert pool.arrays["count_mult"].shape == (9,) and pool.arrays["count_shift"].shape == (9,)
    x_int = quantize_network_input(model, x)
    out = model.outputs[0]
    expected = run_model_contract(model, x_int)[out]
    for backend in ("reference", "fast"):
        np.testing.assert_array_equal(run_model(model, x_int, backend=backend)[out], expected)
    np.testing.assert_array_equal(to_torch(model)(torch.as_tensor(x_int, dtype=torch.float64)).numpy(), expected)
    logits = dequantize_output(model, out, expected)
    reference = run_float(graph, x)[graph.outputs[0]]
    assert np.mean(logits.argmax(1) == reference.argmax(1)) >= 0.9
    assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max()
