"""Quantization front end: trained networks in, integer models out.

``import_onnx`` (ONNX -> float graph: ``onnx_prepare`` folds shape subgraphs and
frees the batch, ``onnx_ops`` converts op by op, ``passes`` folds BatchNorm and
fuses activations) -> ``calibrate`` (power-of-two exponent per activation
tensor) -> ``emit_integer_model`` (weights through ``weights`` and the LUT
families of ``lut``, exponents, shifts, biases, clamps) ->
:class:`accel.ir.Model`; ``quantize_onnx`` does all three, ``evaluate``
measures the result (``metrics.sqnr_db`` per layer).
"""

from .calibrate import Calibration, calibrate
from .evaluate import EvalResult, evaluate
from .export import export_pytorch
from .graph import FloatGraph, FloatNode, run_float
from .onnx_import import SUPPORTED_OPS, import_onnx
from .quantize import (
                       DEFAULT_GRANULARITY,
                       DEFAULT_LUT,
                       QuantizeOptions,
                       dequantize_output,
                       emit_integer_model,
                       quantize_graph,
                       quantize_onnx,
)

__all__ = ["Calibration", "DEFAULT_GRANULARITY", "DEFAULT_LUT", "EvalResult", "FloatGraph", "FloatNode",
           "QuantizeOptions", "SUPPORTED_OPS", "calibrate", "dequantize_output", "evaluate",
           "emit_integer_model", "export_pytorch", "import_onnx", "quantize_graph", "quantize_onnx", "run_float"]
