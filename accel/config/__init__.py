"""The accelerator description: one frozen :class:`AcceleratorConfig` for everything.

The gateware, the engine, the performance model and the compiler all take this
object; none of them re-derives a width or a mode on its own.
"""

from .accelerator import (
    AcceleratorConfig,
    EnergyTable,
    LutScope,
    Overflow,
    PeKind,
    Requant,
    Rounding,
    load_config,
    save_config,
)

__all__ = ["AcceleratorConfig", "EnergyTable", "LutScope", "Overflow", "PeKind", "Requant", "Rounding",
           "load_config", "save_config"]
