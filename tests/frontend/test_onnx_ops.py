"""The table of ONNX-op converters: it covers the documented ops, and ReduceMean becomes a global average pool."""

import re
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from accel.errors import ModelImportError
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import SUPPORTED_OPS, import_onnx
from accel.frontend.onnx_ops import CONVERTERS
from tests.support.models import GraphBuilder, save

DOCS = Path(__file__).resolve().parents[2] / "docs" / "QUANTIZATION.md"


def documented_ops() -> set[str]:
    """ONNX op types named in the import step's list of ops in docs/QUANTIZATION.md."""
    text = DOCS.read_text()
    start = text.index("Ops, one converter each")
    listing = text[start:text.index("A model with other ops", start)]
    return {word for word in re.findall(r"\b[A-Z][A-Za-z]+\b", listing) if onnx.defs.has(word)}


def test_every_documented_op_has_a_converter_and_no_converter_is_undocumented():
    documented = documented_ops()
    assert len(documented) >= 20
    assert documented == set(CONVERTERS)
    assert SUPPORTED_OPS == tuple(CONVERTERS)
    assert all(callable(func) for func in CONVERTERS.values())


def ort_run(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def reduce_mean_model(tmp_path, *, opset, axes, keepdims, name):
    """Conv, ReduceMean over ``axes`` (an attribute before opset 18, an input from 18), then a Gemm when flat."""
    g = GraphBuilder([2, 6, 5])
    c = g.node("Conv", ["x", g.weight("w", (4, 2, 3, 3)), g.weight("b", (4,))], pads=[1, 1, 1, 1])
    r = g.node("Relu", [c])
    if opset >= 18:
        m = g.node("ReduceMean", [r, g.init("axes", np.array(axes, np.int64))], keepdims=keepdims)
    else:
        m = g.node("ReduceMean", [r], axes=axes, keepdims=keepdims)
    out = g.node("Gemm", [m, g.weight("fc", (3, 4)), g.weight("fcb", (3,))], transB=1) if not keepdims else m
    return save(g.build(out, opset=opset), tmp_path / f"{name}.onnx")


@pytest.mark.parametrize("opset, axes, keepdims", [(17, [2, 3], 1), (17, [-1, -2], 0), (18, [-2, -1], 1),
                                                    (18, [3, 2], 0)])
def test_reduce_mean_over_h_w_is_a_global_average_pool(tmp_path, opset, axes, keepdims):
    path = reduce_mean_model(tmp_path, opset=opset, axes=axes, keepdims=keepdims, name=f"rm{opset}{keepdims}")
    graph = import_onnx(path)
    expected = ["conv", "global_avg_pool"] if keepdims else ["conv", "global_avg_pool", "flatten", "linear"]
    assert [n.op for n in graph.nodes] == expected
    x = np.random.default_rng(2).normal(size=(3, 2, 6, 5)).astype(np.float32)
    np.testing.assert_allclose(run_float(graph, x)[graph.outputs[0]], ort_run(path, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("axes", [[1], [1, 2, 3], [2]])
def test_reduce_mean_over_other_axes_names_the_node_and_what_was_expected(tmp_path, axes):
    path = reduce_mean_model(tmp_path, opset=17, axes=axes, keepdims=1, name="rm_bad")
    with pytest.raises(ModelImportError, match=rf"^{re.escape(path)}: node 'reducemean3' \(ReduceMean\): a mean "
                                               rf"over axes {re.escape(str(axes))} of a \(batch, 4, 6, 5\) input "
                                               r"is not supported; expected the spatial axes \[2, 3\]"):
        import_onnx(path)
