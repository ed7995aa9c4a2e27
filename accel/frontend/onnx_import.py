"""ONNX import: a trained network file to a :class:`~accel.frontend.graph.FloatGraph`.

The importer reads ONNX opset 13 and newer with one input (batch first; the
batch may be dynamic or fixed: it is free after import). It

1. prepares the model (:func:`~accel.frontend.onnx_prepare.prepare_onnx`:
   shape inference, shape subgraphs folded to constants, a free batch);
2. checks every node before any conversion (an unsupported model fails
   listing *every* unsupported node and the supported ops);
3. converts node by node through the table of ONNX-op converters
   (:data:`~accel.frontend.onnx_ops.CONVERTERS`), tracking shapes without the
   batch dimension;
4. runs the graph passes (:mod:`accel.frontend.passes`): dead nodes pruned,
   BatchNorm folded, activations fused.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ModelImportError
from .graph import FloatGraph
from .onnx_ops import SUPPORTED_OPS, OnnxConversion
from .onnx_prepare import prepare_onnx
from .passes import run_graph_passes

__all__ = ["SUPPORTED_OPS", "MIN_OPSET", "import_onnx", "load_prepared"]

#: Oldest opset of the default domain the importer accepts.
MIN_OPSET = 13


def _load(path: Path):
    import onnx

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelImportError(f"{path}: cannot read the model ({exc.strerror})") from None
    if not data:
        raise ModelImportError(f"{path}: the file is empty; expected an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, others RuntimeError
        raise ModelImportError(f"{path}: not a valid ONNX file (corrupt or truncated: "
                               f"{type(exc).__name__})") from None
    if not model.graph.node:
        raise ModelImportError(f"{path}: not a valid ONNX file (corrupt or truncated: the graph has no nodes)")
    if any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer):
        # torch.onnx.export (dynamo) writes the weights to "<file>.data" beside the model by default
        try:
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
        except Exception as exc:  # missing or short data file, or a location outside the model's folder
            raise ModelImportError(f"{path}: the weights stored outside the file cannot be read ({exc}); "
                                   f"expected the data file beside the model") from None
    return model


def _fail(path: Path, message: str) -> ModelImportError:
    return ModelImportError(f"{path}: {message}")


def load_prepared(path: str | os.PathLike):
    """Load an ONNX file, check its opset and input, and prepare it (:func:`prepare_onnx`).

    Returns
    -------
    onnx.ModelProto
        The prepared model: shape subgraphs folded, the batch dimension free.

    Raises
    ------
    ModelImportError
        Unreadable, corrupt or truncated file; opset below 13; not exactly one
        input, or one without fixed sizes after the batch; unreadable initializers.
    """
    import onnx

    path = Path(path)
    model = _load(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise _fail(path, f"opset {opset} is not supported; expected {MIN_OPSET} or newer "
                          f"(re-export with opset_version={MIN_OPSET} or later)")
    for init in model.graph.initializer:
        try:
            onnx.numpy_helper.to_array(init)
        except Exception as exc:
            raise _fail(path, f"initializer {init.name!r} cannot be read ({exc})") from None
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise _fail(path, f"expected exactly one input tensor, got {len(inputs)} "
                          f"({', '.join(i.name for i in inputs) or 'none'})")
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) < 2 or any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims[1:]):
        shown = [d.dim_param or d.dim_value for d in dims]
        raise _fail(path, f"input {inputs[0].name!r} has shape {shown}; expected a batch dimension followed by "
                          f"fixed sizes, e.g. [batch, 1, 28, 28]")
    return prepare_onnx(model, str(path))


def import_onnx(path: str | os.PathLike) -> FloatGraph:
    """Import an ONNX file into a float graph with BatchNorm folded and activations fused.

    Parameters
    ----------
    path : path
        ``.onnx`` file, opset 13 or newer, one input (batch first; the batch
        dimension may be dynamic or fixed, and is free in the graph), only
        :data:`SUPPORTED_OPS` once shape subgraphs are folded.

    Returns
    -------
    FloatGraph

    Raises
    ------
    ModelImportError
        Unreadable, corrupt or truncated file; opset below 13; unsupported
        nodes (all listed, with the supported ops); missing initializers;
        NaN or Inf weights; inconsistent shapes. The message names the file.
    """
    import onnx

    path = Path(path)
    model = load_prepared(path)
    bad = [n for n in model.graph.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")]
    if bad:
        listing = ", ".join(f"{n.op_type} {n.name or '(unnamed)'!r}" for n in bad)
        raise _fail(path, f"{len(bad)} unsupported node(s): {listing}; supported ops: {', '.join(SUPPORTED_OPS)}")
    conversion = OnnxConversion(str(path), {o.name for o in model.graph.output})
    for init in model.graph.initializer:
        conversion.consts[init.name] = onnx.numpy_helper.to_array(init)
    inp = next(i for i in model.graph.input if i.name not in conversion.consts)
    conversion.shapes[inp.name] = tuple(int(d.dim_value) for d in inp.type.tensor_type.shape.dim[1:])
    for index, node in enumerate(model.graph.node):
        conversion.convert(node, index)
    out_names = [conversion.alias.get(o.name, o.name) for o in model.graph.output]
    for o in out_names:
        if o not in conversion.shapes or o == inp.name:
            raise _fail(path, f"output {o!r} is not computed by any supported node")
    graph = FloatGraph(path.stem, str(path), inp.name, conversion.shapes, conversion.nodes, out_names)
    return run_graph_passes(graph)
