"""The PyTorch-to-ONNX helper: dynamic batch, BatchNorm kept or folded, errors."""

import numpy as np
import onnx
import pytest

from accel.errors import ModelImportError, OutputError
from accel.frontend.export import export_pytorch
from accel.frontend.graph import run_float
from accel.frontend.onnx_import import import_onnx

torch = pytest.importorskip("torch")


def small_net():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 5, 3))
    net[1].running_mean.uniform_(-1, 1)
    net[1].running_var.uniform_(0.5, 2)
    return net.eval()


@pytest.mark.parametrize("keep_batchnorm", [False, True])
def test_export_then_import_matches_pytorch_on_any_batch(tmp_path, keep_batchnorm):
    net = small_net()
    path = export_pytorch(net, (2, 5, 5), tmp_path / "net.onnx", keep_batchnorm=keep_batchnorm)
    model = onnx.load(str(path))
    assert model.ir_version <= 10 and model.opset_import[0].version == 17
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert any(n.op_type == "BatchNormalization" for n in model.graph.node) == keep_batchnorm
    graph = import_onnx(path)
    for batch in (1, 7):
        x = np.random.default_rng(batch).normal(size=(batch, 2, 5, 5)).astype(np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(x)).numpy()
        np.testing.assert_allclose(run_float(graph, x)[graph.outputs[0]], want, rtol=1e-4, atol=1e-5)


def test_export_errors(tmp_path):
    with pytest.raises(ModelImportError, match=r"^opset 11: expected 13 or newer$"):
        export_pytorch(small_net(), (2, 5, 5), tmp_path / "a.onnx", opset=11)
    with pytest.raises(ModelImportError, match=r"^Sequential: ONNX export failed \("):
        export_pytorch(small_net(), (3, 5, 5), tmp_path / "b.onnx")  # 3 channels into a 2-channel conv


def test_export_never_replaces_a_file_unasked_and_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "net.onnx"
    path.write_bytes(b"a user's model")
    with pytest.raises(OutputError, match=r"net\.onnx: already exists; refusing to overwrite it"):
        export_pytorch(small_net(), (2, 5, 5), path)
    assert path.read_bytes() == b"a user's model"
    export_pytorch(small_net(), (2, 5, 5), path, overwrite=True)
    assert import_onnx(path).input_shape == (2, 5, 5)
    with pytest.raises(ModelImportError):
        export_pytorch(small_net(), (3, 5, 5), tmp_path / "bad.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.onnx"]
