"""PyTorch to ONNX: the helper every PyTorch model goes through before import."""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import ModelImportError
from ..report.files import check_output, write_bytes

__all__ = ["DEFAULT_OPSET", "MAX_IR_VERSION", "export_pytorch"]

#: Opset the helper exports with (the importer accepts 13 and newer).
DEFAULT_OPSET = 17
#: Highest ONNX IR version the pinned onnxruntime loads.
MAX_IR_VERSION = 10


def export_pytorch(module, input_shape: Sequence[int], path: str | os.PathLike, *,
                   opset: int = DEFAULT_OPSET, input_name: str = "input",
                   output_name: str = "logits", keep_batchnorm: bool = False, overwrite: bool = False) -> Path:
    """Export a PyTorch module to ONNX with a dynamic batch dimension.

    The module is put in eval mode and traced with a zero input of shape
    ``(2, *input_shape)`` through the TorchScript exporter (``dynamo=False``,
    which keeps the graph to the plain ops the importer reads).

    Parameters
    ----------
    module : torch.nn.Module
        The trained network.
    input_shape : sequence of int
        Shape of one input without the batch dimension, e.g. ``(1, 28, 28)``.
    path : path
        Where to write the ``.onnx`` file.
    opset : int
        ONNX opset, 13 or newer.
    keep_batchnorm : bool
        Keep ``BatchNormalization`` nodes in the file (the exporter's eval mode
        otherwise folds them into the convolutions); the importer folds them.
    overwrite : bool
        Replace an existing file (the file is written atomically either way).

    Returns
    -------
    pathlib.Path
        The written file.

    Raises
    ------
    ModelImportError
        If the export fails (the message names the module and the reason).
    OutputError
        ``path`` exists (without ``overwrite``) or its folder cannot be written (checked first).
    """
    import onnx
    import torch

    if opset < 13:
        raise ModelImportError(f"opset {opset}: expected 13 or newer")
    path = check_output(path, overwrite=overwrite)
    module = module.eval()
    example = torch.zeros((2, *input_shape), dtype=torch.float32)
    mode = torch.onnx.TrainingMode.PRESERVE if keep_batchnorm else torch.onnx.TrainingMode.EVAL
    buffer = io.BytesIO()  # in memory first: a failed export leaves no file behind
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buffer, dynamo=False, opset_version=opset,
                              input_names=[input_name], output_names=[output_name], training=mode,
                              do_constant_folding=not keep_batchnorm,
                              dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    except Exception as exc:  # the exporter raises many kinds; report one line
        raise ModelImportError(f"{type(module).__name__}: ONNX export failed ({exc})") from None
    model = onnx.load_from_string(buffer.getvalue())
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    return write_bytes(path, model.SerializeToString(), overwrite=overwrite)
