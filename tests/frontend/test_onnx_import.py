"""ONNX import: every supported op against onnxruntime, BatchNorm folding, activation fusion, bad files."""

import re

import numpy as np
import onnxruntime as ort
import pytest

from accel.data import load_dataset
from accel.errors import ModelImportError
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import SUPPORTED_OPS, import_onnx
from accel.frontend.workflow import MODELS_DIR, bundled_models
from tests.support.models import GraphBuilder, affine_model, all_ops_model, save


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.astype(np.float32)})[0]


@pytest.mark.parametrize("name", list(bundled_models()))
def test_bundled_model_matches_onnxruntime(name):
    info = bundled_models()[name]
    path = MODELS_DIR / f"{name}.onnx"
    graph = import_onnx(path)
    x = load_dataset(info["data"]).x[:64]
    ours = run_float(graph, x)[graph.outputs[0]]
    np.testing.assert_allclose(ours, ort_run(path, x), rtol=1e-4, atol=1e-4)
    # BatchNorm and activations are folded and fused: only array ops and data movement remain.
    assert {n.op for n in graph.nodes} <= {"conv", "linear", "add", "max_pool", "global_avg_pool", "flatten"}


def test_bundled_residual_model_has_batchnorm_in_file_and_none_after_import():
    import onnx

    path = MODELS_DIR / "resnet_mnist.onnx"
    assert sum(n.op_type == "BatchNormalization" for n in onnx.load(str(path)).graph.node) >= 4
    graph = import_onnx(path)
    assert all(n.op != "affine" for n in graph.nodes)
    assert sum("folded" in n.attrs for n in graph.nodes) >= 4


def test_every_supported_op_against_onnxruntime(tmp_path):
    """The graph with every op of the issue, checked number for number against onnxruntime."""
    path = all_ops_model(tmp_path)
    graph = import_onnx(path)
    ops = [n.op for n in graph.nodes]
    assert ops.count("conv") == 3 and "affine" not in ops  # BN and the MatMul bias folded
    assert graph.nodes[0].act == (0.0, 6.0) and graph.nodes[1].act == (-0.5, 2.5)
    assert graph.producer(graph.outputs[0]).op == "linear"
    x = np.random.default_rng(1).uniform(-1, 1, (5, 3, 12, 12)).astype(np.float32)
    ours = run_float(graph, x)[graph.outputs[0]]
    ref = ort_run(path, x)  # the file ends with Softmax: compare probabilities
    e = np.exp(ours - ours.max(1, keepdims=True))
    np.testing.assert_allclose(e / e.sum(1, keepdims=True), ref, rtol=1e-4, atol=1e-5)


def test_unsupported_nodes_are_all_listed_before_any_work(tmp_path):
    g = GraphBuilder([1, 4, 4])
    a = g.node("Sigmoid", ["x"], name="gate")
    b = g.node("Conv", [a, g.weight("w", (2, 1, 1, 1))])
    c = g.node("LSTM", [b], name="")  # unnamed
    d = g.node("Tanh", [c], name="squash")
    path = save(g.build(d), tmp_path / "bad.onnx")
    with pytest.raises(ModelImportError) as info:
        import_onnx(path)
    msg = str(info.value)
    assert re.match(rf"^{re.escape(str(path))}: 3 unsupported node\(s\): Sigmoid 'gate', LSTM '\(unnamed\)', "
                    rf"Tanh 'squash'; supported ops: Conv, Gemm, MatMul, ", msg)
    assert all(op in msg for op in SUPPORTED_OPS) and "\n" not in msg


def test_corrupt_truncated_empty_and_missing_files(tmp_path):
    good = MODELS_DIR / "cnn_digits.onnx"
    data = good.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x08\x07not a protobuf at all" * 10)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    for path, pattern in ((truncated, "not a valid ONNX file|initializer .* cannot be read|reads"),
                          (garbage, "not a valid ONNX file"), (empty, "the file is empty"),
                          (tmp_path / "absent.onnx", "cannot read the model")):
        with pytest.raises(ModelImportError, match=rf"^{re.escape(str(path))}: ({pattern})"):
            import_onnx(path)


def test_missing_initializer(tmp_path):
    g = GraphBuilder([1, 4, 4])
    y = g.node("Conv", ["x", "conv.weight"], name="conv1")
    path = save(g.build(y), tmp_path / "noinit.onnx")
    with pytest.raises(ModelImportError, match=rf"^{re.escape(path)}: node 'conv1' \(Conv\): weight "
                                               r"'conv.weight' is missing; expected an initializer$"):
        import_onnx(path)
    g = GraphBuilder([1, 4, 4])
    y = g.node("Add", ["x", "skip"], name="add1")
    path = save(g.build(y), tmp_path / "noinit2.onnx")
    with pytest.raises(ModelImportError, match=r"node 'add1' \(Add\): operand 'skip' is missing; expected an "
                                               r"initializer$"):
        import_onnx(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_weights(tmp_path, bad):
    g = GraphBuilder([1, 4, 4])
    w = np.ones((2, 1, 3, 3), np.float32)
    w[1, 0, 2, 2] = bad
    y = g.node("Conv", ["x", g.init("conv.weight", w)], name="conv1")
    path = save(g.build(y), tmp_path / "nan.onnx")
    with pytest.raises(ModelImportError, match=r"'conv1' \(Conv\): weight 'conv.weight' holds NaN or Inf "
                                               r"\(1 of 18 values\)"):
        import_onnx(path)


def test_old_opset_and_non_static_input(tmp_path):
    g = GraphBuilder([1, 4, 4])
    y = g.node("Relu", ["x"])
    with pytest.raises(ModelImportError, match=r"opset 11 is not supported; expected 13 or newer"):
        import_onnx(save(g.build(y, opset=11), tmp_path / "old.onnx"))
    g = GraphBuilder([1, "h", 4])
    y = g.node("Relu", ["x"])
    with pytest.raises(ModelImportError, match=r"input 'x' has shape \['batch', 1, 'h', 4\]; expected a batch"):
        import_onnx(save(g.build(y), tmp_path / "dyn.onnx"))


def test_standalone_activation_and_batchnorm_stay_affine(tmp_path):
    """ReLU right after the input and a BatchNorm after a pool have nothing to fuse into."""
    path = affine_model(tmp_path)
    graph = import_onnx(path)
    assert [n.op for n in graph.nodes] == ["affine", "max_pool", "affine"]
    x = np.random.default_rng(0).normal(size=(3, 2, 4, 4)).astype(np.float32)
    np.testing.assert_allclose(run_float(graph, x)[graph.outputs[0]], ort_run(path, x), rtol=1e-5, atol=1e-5)


def test_fixed_batch_export_is_accepted(tmp_path):
    g = GraphBuilder([1, 4, 4])
    y = g.node("Conv", ["x", g.weight("w", (2, 1, 3, 3))])
    model = g.build(y)
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    graph = import_onnx(save(model, tmp_path / "fixed.onnx"))
    x = np.ones((7, 1, 4, 4), np.float32)
    assert run_float(graph, x)[graph.outputs[0]].shape == (7, 2, 2, 2)
