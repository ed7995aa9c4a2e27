"""Quantization front end: trained networks in, integer models out.

``import_onnx`` (ONNX -> float graph, BatchNorm folded, activations fused) ->
``calibrate`` (power-of-two exponent per activation tensor) -> ``lower``
(weights through the LUT families of ``weights``, shifts, biases, clamps) ->
:class:`accel.ir.Model`; ``quantize_onnx`` does all three, ``evaluate``
measures the result.
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
                       lower,
                       quantize_graph,
                       quantize_onnx,
)

__all__ = ["Calibration", "DEFAULT_GRANULARITY", "DEFAULT_LUT", "EvalResult", "FloatGraph", "FloatNode",
           "QuantizeOptions", "SUPPORTED_OPS", "calibrate", "dequantize_output", "evaluate",
           "export_pytorch", "import_onnx", "lower", "quantize_graph", "quantize_onnx", "run_float"]
