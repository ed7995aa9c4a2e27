"""Before import: ONNX shape inference, constant folding of shape subgraphs, and a free batch dimension.

PyTorch's exporters write ``x.view(x.size(0), -1)`` as a
``Shape -> Gather -> Unsqueeze -> Concat -> Reshape`` chain (TorchScript
exporter with a dynamic batch) or as a ``Reshape`` whose target bakes in the
export batch (``[1, -1]`` with a fixed batch), and a fixed-batch export
declares the batch size in its input. :func:`prepare_onnx` turns such a model
into one that runs with any batch:

1. the batch dimension is pinned (to the declared size, or 1 when it is
   dynamic), so that every shape is static;
2. ``onnx.shape_inference`` (with data propagation) and onnxscript's constant
   folder (``onnxscript.optimizer.fold_constants``, folding only: none of its
   rewrite rules, which would change the float arithmetic) turn shape
   subgraphs into constants;
3. each ``Reshape`` whose constant target keeps the (pinned) batch first gets
   the target ``[-1, *per_sample_shape]``;
4. the batch dimension of the input and outputs becomes the symbolic
   ``batch`` again and the inferred intermediate shapes are dropped.

Both the importer and the float reference (onnxruntime, ``accel eval``) run
the prepared model, so they see the same graph.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelImportError

__all__ = ["BATCH_DIM", "prepare_onnx"]

#: Name of the free batch dimension in a prepared model.
BATCH_DIM = "batch"


def prepare_onnx(model, where: str):
    """The model with shape subgraphs folded to constants and a free batch dimension.

    Parameters
    ----------
    model : onnx.ModelProto
        A loaded model with one non-initializer input, batch first (not changed).
    where : str
        The model's file, for error messages.

    Returns
    -------
    onnx.ModelProto
        A new model.

    Raises
    ------
    ModelImportError
        Shape inference or constant folding failed (an inconsistent graph).
    """
    import onnx
    import onnx_ir as ir
    from onnxscript import optimizer

    model = onnx.ModelProto.FromString(model.SerializeToString())
    batch_dim = _input(model).type.tensor_type.shape.dim[0]
    batch = batch_dim.dim_value if batch_dim.HasField("dim_value") and batch_dim.dim_value > 0 else 1
    batch_dim.Clear()
    batch_dim.dim_value = batch
    try:
        model = onnx.shape_inference.infer_shapes(model, data_prop=True)
        folded = ir.from_proto(model)
        optimizer.fold_constants(folded, onnx_shape_inference=True)
        optimizer.remove_unused_nodes(folded)
        model = onnx.shape_inference.infer_shapes(ir.to_proto(folded), data_prop=True)
    except Exception as exc:  # onnx raises InferenceError/ValidationError, the IR ValueError and others
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelImportError(f"{where}: shape inference and constant folding failed ({detail}); "
                               f"expected a consistent ONNX graph") from None
    _free_batch_in_reshapes(model, batch)
    _free_batch(model)
    return model


def _input(model):
    """The one graph input that is no initializer (the importer has checked that there is one)."""
    initializers = {i.name for i in model.graph.initializer}
    return next(i for i in model.graph.input if i.name not in initializers)


def _static_shape(value_info) -> list[int] | None:
    shape = value_info.type.tensor_type.shape
    if not value_info.type.tensor_type.HasField("shape"):
        return None
    dims = [d.dim_value if d.HasField("dim_value") else None for d in shape.dim]
    return None if None in dims else dims


def _free_batch_in_reshapes(model, batch: int) -> None:
    """Rewrite constant Reshape targets that keep the batch first as ``[-1, *per_sample_shape]``."""
    from onnx import numpy_helper

    shapes = {vi.name: _static_shape(vi) for vi in list(model.graph.value_info) + list(model.graph.output)}
    constants = {i.name for i in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    replaced: set[str] = set()
    for node in model.graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in constants:
            continue
        out_shape = shapes.get(node.output[0])
        if not out_shape or out_shape[0] != batch:
            continue  # not batch first: the importer says why it cannot take it
        name = f"{node.output[0]}.free_batch_shape"
        model.graph.initializer.append(numpy_helper.from_array(np.array([-1, *out_shape[1:]], np.int64), name))
        replaced.add(node.input[1])
        node.input[1] = name
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    unused = replaced - used  # the old targets go, so that onnxruntime does not warn about them
    for init in [i for i in model.graph.initializer if i.name in unused]:
        model.graph.initializer.remove(init)
    for node in [n for n in model.graph.node if n.op_type == "Constant" and n.output[0] in unused]:
        model.graph.node.remove(node)


def _free_batch(model) -> None:
    """Input and outputs get the symbolic batch dimension; the pinned intermediate shapes go."""
    del model.graph.value_info[:]
    for value_info in [_input(model), *model.graph.output]:
        tensor_type = value_info.type.tensor_type
        if tensor_type.HasField("shape") and len(tensor_type.shape.dim) > 0:
            dim = tensor_type.shape.dim[0]
            dim.Clear()
            dim.dim_param = BATCH_DIM
