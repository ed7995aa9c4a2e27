"""Ordinary PyTorch exports import, quantize and run with any batch.

The network is the bundled residual model's trained (BatchNorm-folded) weights in
a PyTorch module written the way people write one: ``AdaptiveAvgPool2d(1)``
(``F.adaptive_avg_pool2d(x, 1)``) and ``x.view(x.size(0), -1)``. torch 2.13
exports it four ways: its default exporter (``ReduceMean``; a ``Reshape`` whose
target bakes in the export batch, or ``[-1, C]``) and the TorchScript exporter
(``GlobalAveragePool``; a ``Shape``/``Gather``/``Unsqueeze``/``Concat`` chain
with a dynamic batch), each with a fixed batch of 1 and with a dynamic batch.
Each export is quantized and run through the engine on batches of 250 and
compared with onnxruntime's float result on the same images.
"""

import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest

from accel.data import Dataset, load_dataset
from accel.frontend.evaluate import evaluate, onnx_logits
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx
from accel.frontend.quantize import QuantizeOptions, quantize_graph
from accel.frontend.workflow import MODELS_DIR

torch = pytest.importorskip("torch")
F = torch.nn.functional

BUNDLED = MODELS_DIR / "resnet_mnist.onnx"


class FloatGraphNet(torch.nn.Module):
    """A PyTorch module that computes an imported float graph with the usual PyTorch calls."""

    def __init__(self, float_graph):
        super().__init__()
        self.float_graph = float_graph
        self.weights = torch.nn.ParameterDict()
        for node in float_graph.nodes:
            if node.op in ("conv", "linear"):
                for key in ("weight", "bias"):
                    self.weights[f"{node.name}_{key}".replace(".", "_")] = torch.nn.Parameter(
                        torch.tensor(node.params[key], dtype=torch.float32))

    def forward(self, x):
        values = {self.float_graph.input: x}
        for node in self.float_graph.nodes:
            a, inputs = node.attrs, [values[t] for t in node.inputs]
            key = node.name.replace(".", "_")
            if node.op == "conv":
                top, left, bottom, right = a["padding"]
                assert (top, left) == (bottom, right)
                y = F.conv2d(inputs[0], self.weights[f"{key}_weight"], self.weights[f"{key}_bias"], a["stride"],
                             (top, left), a["dilation"], a["groups"])
            elif node.op == "linear":
                y = F.linear(inputs[0], self.weights[f"{key}_weight"], self.weights[f"{key}_bias"])
            elif node.op == "add":
                y = inputs[0] + inputs[1]
            elif node.op == "max_pool":
                y = F.max_pool2d(inputs[0], a["kernel"], a["stride"], a["padding"][:2])
            elif node.op == "global_avg_pool":
                y = F.adaptive_avg_pool2d(inputs[0], 1)
            elif node.op == "flatten":
                y = inputs[0].view(inputs[0].size(0), -1)
            else:  # pragma: no cover - the bundled residual model has only the ops above
                raise NotImplementedError(node.op)
            if node.act is not None:
                y = torch.relu(y) if node.act == (0.0, float("inf")) else torch.clamp(y, *node.act)
            values[node.output] = y
        return values[self.float_graph.outputs[0]]


EXPORTS = [("default", "fixed"), ("default", "dynamic"), ("torchscript", "fixed"), ("torchscript", "dynamic")]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Export the network the four ways once; ``{(exporter, batch): path}``."""
    net = FloatGraphNet(import_onnx(BUNDLED)).eval()
    folder = tmp_path_factory.mktemp("torch_exports")
    paths = {}
    for exporter, batch in EXPORTS:
        path = folder / f"{exporter}_{batch}.onnx"
        example = torch.zeros(1 if batch == "fixed" else 2, 1, 28, 28)
        options = {}
        if exporter == "default" and batch == "dynamic":
            options["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
        if exporter == "torchscript":
            options["dynamo"] = False
            if batch == "dynamic":
                options.update(input_names=["image"], dynamic_axes={"image": {0: "batch"}})
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(net, (example,), str(path), **options)
        paths[exporter, batch] = path
    return paths


def test_the_exports_hold_the_ops_that_were_refused(exported):
    ops = {key: {n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node}
           for key, path in exported.items()}
    assert "ReduceMean" in ops["default", "fixed"] and "ReduceMean" in ops["default", "dynamic"]
    assert {"Shape", "Gather", "Unsqueeze", "Concat"} <= ops["torchscript", "dynamic"]
    batch = {key: onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
             for key, path in exported.items()}
    assert batch["default", "fixed"].dim_value == 1 and batch["torchscript", "fixed"].dim_value == 1


@pytest.mark.parametrize("exporter, batch", EXPORTS)
def test_export_imports_quantizes_and_runs_with_another_batch(exported, exporter, batch):
    path = exported[exporter, batch]
    graph = import_onnx(path)
    assert [n.op for n in graph.nodes] == [n.op for n in import_onnx(BUNDLED).nodes]
    test = load_dataset("mnist5k", "test")
    x = test.x[:500]
    np.testing.assert_allclose(run_float(graph, x[:64])[graph.outputs[0]], onnx_logits(path, x[:64]),
                               rtol=1e-4, atol=1e-4)
    model = quantize_graph(graph, load_dataset("mnist5k", "calib").x, options=QuantizeOptions(calib_size=64))
    result = evaluate(model, Dataset(test.name, test.split, x, test.y[:500]), onnx_path=path, sqnr=False)
    assert result.agreement >= 98.0, result.table()
    assert result.float_top1 >= 96.0 and abs(result.float_top1 - result.quant_top1) <= 1.5, result.table()


def test_accel_eval_of_a_fixed_batch_export(exported, tmp_path):
    """``accel eval`` once crashed with a traceback on a model exported with batch 1."""
    proc = subprocess.run([sys.executable, "-m", "accel", "eval", str(exported["default", "fixed"]), "--data",
                           "mnist5k", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert '"agreement"' in proc.stdout and "Traceback" not in proc.stderr
