"""Gateware: the Amaranth LUT/shift MAC array (one small file per component).

* :class:`WeightDecoder` — run-time loadable LUT of signed int8 weights;
* :class:`ProcessingElement` — multiply-accumulate with bias preload, ``wrap`` or ``saturate``;
* :class:`SystolicArray` — ``rows x cols`` PEs, output-stationary, skewed, with a drain chain;
* :class:`Requantizer` — per-lane shift or multiply-shift, rounding, clamp;
* :class:`GemmCore` — all of them behind stream interfaces (LUT, tile, data in; outputs out);
* :func:`generate_verilog` — Verilog for a configuration, with a port description.

This package never imports :mod:`accel.engine` (DESIGN.md): tests compare it with the engine.
"""

from .array import SystolicArray
from .core import GemmCore, beat_layout, layer_layout, lut_layout, output_layout, tile_layout
from .decoder import WeightDecoder
from .params import check_buildable
from .pe import ProcessingElement
from .requant import Requantizer
from .verilog import TOP_NAME, generate_verilog

__all__ = ["GemmCore", "ProcessingElement", "Requantizer", "SystolicArray", "TOP_NAME", "WeightDecoder",
           "beat_layout", "check_buildable", "generate_verilog", "layer_layout", "lut_layout",
           "output_layout", "tile_layout"]
