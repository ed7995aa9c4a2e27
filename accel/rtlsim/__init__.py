"""RTL simulation: building the exported Verilog under Verilator or Icarus, running tile plans on it
through cocotb, and comparing a model's layers with the engine.

``build`` (simulator builds, cached and shared under a lock), ``jobs`` (private run
folders, the cocotb testbench), ``verify`` (model inputs, engine comparison),
``tools`` (simulators on ``PATH``). The Verilog harness (``hdl/``) and the cocotb
testbench (``testbench/``) ship inside the package.
"""

import importlib

_EXPORTS = {"axi": ("AxiJobResult", "run_axi_jobs"),
            "build": ("SIMULATORS", "SimBuild", "build_simulation", "cache_dir", "lint_verilog"),
            "jobs": ("JobResult", "run_jobs", "run_plan", "run_testbench", "waves_file"),
            "verify": ("LayerReport", "Mismatch", "model_inputs", "verify_model", "write_cycles")}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    # Lazy: the simulator's Python imports accel.rtlsim.testbench, which needs none of this
    # (importing it eagerly costs every simulation about a second).
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
