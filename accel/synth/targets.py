"""FPGA targets of ``accel rtl synth``: device, yosys script and nextpnr options per target name."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

__all__ = ["Target", "TARGETS", "get_target"]


@dataclass(frozen=True)
class Target:
    """One FPGA target.

    ``out_of_context`` targets (ECP5) place and route the core without I/O buffers
    (``nextpnr-ecp5 --out-of-context``): its hundreds of port bits exceed every package.
    nextpnr-ice40 has no such mode, so iCE40 targets wrap the core in a scan wrapper
    (:func:`~accel.synth.flow.scan_wrapper`) with five pins; its flip-flops count in the results.
    """

    name: str
    family: str            #: "ecp5" or "ice40"
    device: str            #: the part, as the vendor names it
    pnr_args: tuple[str, ...]
    out_of_context: bool

    @property
    def yosys_command(self) -> str:
        return f"synth_{self.family}"

    @property
    def nextpnr_tool(self) -> str:
        return f"yowasp-nextpnr-{self.family}"

    @property
    def nextpnr_package(self) -> str:
        """The PyPI distribution that ships :attr:`nextpnr_tool`."""
        return self.nextpnr_tool


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("ecp5-25k", "ecp5", "LFE5U-25F", ("--25k",), True),
    Target("ecp5-85k", "ecp5", "LFE5U-85F", ("--85k",), True),
    Target("ice40-hx8k", "ice40", "iCE40HX8K (CT256)", ("--hx8k", "--package", "ct256"), False),
    Target("ice40-up5k", "ice40", "iCE40UP5K (SG48)", ("--up5k", "--package", "sg48"), False),
)}


def get_target(name: str) -> Target:
    """The target called ``name``; :class:`UsageError` naming the known ones otherwise."""
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown FPGA target {name!r}; expected one of {', '.join(TARGETS)}") from None
