"""RTL simulation: building the exported Verilog under Verilator or Icarus, running tile plans on it
through cocotb, and comparing a model's layers with the engine.

``build`` (simulator builds, cached and shared under a lock), ``jobs`` (private run
folders, the cocotb testbench), ``verify`` (model inputs, engine comparison),
``tools`` (simulators on ``PATH``). The Verilog harness (``hdl/``) and the cocotb
testbench (``testbench/``) ship inside the package.
"""

from .build import SIMULATORS, SimBuild, build_simulation, cache_dir, lint_verilog
from .jobs import JobResult, run_jobs, run_plan
from .verify import LayerReport, Mismatch, model_inputs, verify_model, write_cycles

__all__ = ["SIMULATORS", "JobResult", "LayerReport", "Mismatch", "SimBuild", "build_simulation", "cache_dir",
           "lint_verilog", "model_inputs", "run_jobs", "run_plan", "verify_model", "write_cycles"]
