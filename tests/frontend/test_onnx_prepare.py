"""Before import: shape subgraphs folded, the batch dimension free, weights in an external data file."""

import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from accel.errors import ModelImportError
from accel.frontend.evaluate import onnx_logits
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx, load_prepared
from accel.frontend.onnx_prepare import BATCH_DIM, prepare_onnx
from tests.support.models import GraphBuilder, save


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def pooled_classifier(g: GraphBuilder, reshape_target: str) -> str:
    c = g.node("Conv", ["x", g.weight("w", (4, 1, 3, 3)), g.weight("b", (4,))])
    r = g.node("Relu", [c])
    p = g.node("GlobalAveragePool", [r])
    flat = g.node("Reshape", [p, reshape_target(p) if callable(reshape_target) else reshape_target])
    return g.node("Gemm", [flat, g.weight("fc", (3, 4)), g.weight("fcb", (3,))], transB=1)


def view_batch_minus_one(g: GraphBuilder):
    """TorchScript's ``x.view(x.size(0), -1)``: Shape -> Gather -> Unsqueeze -> Concat."""
    def target(tensor):
        shape = g.node("Shape", [tensor])
        batch = g.node("Gather", [shape, g.init("zero", np.array(0, np.int64))], axis=0)
        batch1 = g.node("Unsqueeze", [batch, g.init("axis0", np.array([0], np.int64))])
        return g.node("Concat", [batch1, g.init("minus_one", np.array([-1], np.int64))], axis=0)
    return target


def test_shape_subgraph_of_a_dynamic_batch_is_folded(tmp_path):
    g = GraphBuilder([1, 6, 6])
    path = save(g.build(pooled_classifier(g, view_batch_minus_one(g))), tmp_path / "view.onnx")
    graph = import_onnx(path)
    assert [n.op for n in graph.nodes] == ["conv", "global_avg_pool", "flatten", "linear"]
    x = np.random.default_rng(0).normal(size=(5, 1, 6, 6)).astype(np.float32)
    np.testing.assert_allclose(run_float(graph, x)[graph.outputs[0]], ort_run(path, x), rtol=1e-5, atol=1e-6)


def fixed_batch_model(tmp_path, target):
    g = GraphBuilder([1, 6, 6])
    model = g.build(pooled_classifier(g, g.init("target", np.array(target, np.int64))))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    return save(model, tmp_path / "fixed.onnx")


def test_fixed_batch_model_with_the_batch_in_its_reshape_runs_with_any_batch(tmp_path):
    path = fixed_batch_model(tmp_path, [1, -1])
    x = np.random.default_rng(1).normal(size=(7, 1, 6, 6)).astype(np.float32)
    with pytest.raises(Exception, match="Got: 7 Expected: 1|invalid dimensions"):
        ort_run(path, x)  # as exported, the file runs only with one image
    graph = import_onnx(path)
    ours = run_float(graph, x)[graph.outputs[0]]
    assert ours.shape == (7, 3)
    np.testing.assert_allclose(onnx_logits(path, x), ours, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(onnx_logits(path, x[:1]), ort_run(path, x[:1]), rtol=1e-6, atol=1e-7)
    prepared = load_prepared(path)
    assert prepared.graph.input[0].type.tensor_type.shape.dim[0].dim_param == BATCH_DIM
    reshape = next(n for n in prepared.graph.node if n.op_type == "Reshape")
    target = next(i for i in prepared.graph.initializer if i.name == reshape.input[1])
    assert onnx.numpy_helper.to_array(target).tolist() == [-1, 4]
    assert "target" not in {i.name for i in prepared.graph.initializer}  # the old target is gone


def test_prepare_leaves_the_given_model_alone(tmp_path):
    path = fixed_batch_model(tmp_path, [1, -1])
    model = onnx.load(path)
    before = model.SerializeToString()
    prepare_onnx(model, path)
    assert model.SerializeToString() == before


def test_reshape_that_does_not_keep_the_batch_is_refused(tmp_path):
    path = fixed_batch_model(tmp_path, [2, -1])  # one image of 4 channels into 2 rows of 2
    with pytest.raises(ModelImportError, match=rf"^{re.escape(path)}: node 'reshape4' \(Reshape\): target shape "
                                               r"\[2, -1\] does not keep the batch dimension first"):
        import_onnx(path)


def test_weights_in_an_external_data_file(tmp_path):
    g = GraphBuilder([1, 6, 6])
    model = g.build(pooled_classifier(g, g.init("target", np.array([0, -1], np.int64))))
    path = tmp_path / "external.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.onnx.data", size_threshold=100)  # the weights, not the shape
    x = np.random.default_rng(2).normal(size=(3, 1, 6, 6)).astype(np.float32)
    graph = import_onnx(path)
    np.testing.assert_allclose(run_float(graph, x)[graph.outputs[0]], ort_run(path, x), rtol=1e-5, atol=1e-6)
    (tmp_path / "external.onnx.data").unlink()
    with pytest.raises(ModelImportError, match=rf"^{re.escape(str(path))}: the weights stored outside the file "
                                               r"cannot be read \(.*\); expected the data file beside the model$"):
        import_onnx(path)


def test_preparation_is_deterministic(tmp_path):
    g = GraphBuilder([1, 6, 6])
    path = save(g.build(pooled_classifier(g, view_batch_minus_one(g))), tmp_path / "view.onnx")
    first = load_prepared(path)
    assert {n.op_type for n in first.graph.node} == {"Conv", "Relu", "GlobalAveragePool", "Reshape", "Gemm"}
    assert load_prepared(path).SerializeToString() == first.SerializeToString()
