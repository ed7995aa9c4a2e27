"""FPGA synthesis of the GEMM core: yosys + nextpnr (YoWASP), area and Fmax, cached (``accel rtl synth``)."""

from .flow import SYNTH_TOOLS, FitError, run_name, scan_wrapper, synthesize, tool_versions
from .results import SynthResult, result_table
from .targets import TARGETS, Target, get_target

__all__ = ["SYNTH_TOOLS", "FitError", "scan_wrapper", "synthesize", "run_name", "tool_versions",
           "SynthResult", "result_table", "TARGETS", "Target", "get_target"]
