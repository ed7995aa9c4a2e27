"""Synthesis results: read from the yosys netlist and nextpnr's JSON report, shown as tables."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

from ..report import Column, Table

__all__ = ["SynthResult", "count_cells", "device_utilization", "overflowing", "critical_path",
           "result_table"]

# Cell types of the mapped netlist, by the resource they use (yosys's synth_ecp5 / synth_ice40 output).
_CATEGORIES = {
    "ecp5": {"luts": ("LUT4",), "carry": ("CCU2C",), "ffs": ("TRELLIS_FF",),
             "dsp": ("MULT18X18D", "ALU54B"), "bram": ("DP16KD", "PDPW16KD"),
             "dist_ram": ("TRELLIS_DPR16X4",)},
    "ice40": {"luts": ("SB_LUT4",), "carry": ("SB_CARRY",), "ffs": ("SB_DFF",),
              "dsp": ("SB_MAC16",), "bram": ("SB_RAM40_4K", "SB_SPRAM256KA"), "dist_ram": ()},
}

#: nextpnr's name for the logic cells (LUT + FF + carry slots) of a family: the device percentage.
LOGIC_CELL = {"ecp5": "TRELLIS_COMB", "ice40": "ICESTORM_LC"}
#: nextpnr's name for the I/O pins of a family.
IO_CELL = {"ecp5": "TRELLIS_IO", "ice40": "SB_IO"}

#: What a user calls the nextpnr cell types that can overflow.
RESOURCE_NAMES = {"TRELLIS_COMB": "logic cells (LUT4/carry)", "TRELLIS_FF": "flip-flops",
                  "MULT18X18D": "DSP multipliers", "ALU54B": "DSP ALUs", "DP16KD": "block RAMs",
                  "TRELLIS_RAMW": "distributed RAM", "TRELLIS_IO": "I/O pins",
                  "ICESTORM_LC": "logic cells (LUT4/carry/FF)", "ICESTORM_RAM": "block RAMs",
                  "ICESTORM_DSP": "DSP multipliers", "ICESTORM_SPRAM": "SPRAMs", "SB_IO": "I/O pins",
                  "SB_GB": "global buffers"}


def count_cells(netlist: dict, top: str, family: str) -> dict[str, int]:
    """Cells of the flattened ``top`` of a yosys JSON netlist, summed by resource category."""
    cells = netlist["modules"][top]["cells"].values()
    counts = {name: 0 for name in _CATEGORIES[family]}
    for cell in cells:
        for name, types in _CATEGORIES[family].items():
            # iCE40 flip-flops come in many flavours (SB_DFFE, SB_DFFSR, ...): match the prefix.
            if cell["type"] in types or (name == "ffs" and cell["type"].startswith(types)):
                counts[name] += 1
    return counts


# "Info: \t          TRELLIS_IO:       0/    197     0%"
_UTIL_RE = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", re.MULTILINE)


def device_utilization(pnr_log: str) -> dict[str, tuple[int, int]]:
    """``{cell type: (used, available)}`` from nextpnr's "Device utilisation" lines (the last block)."""
    found: dict[str, tuple[int, int]] = {}
    for name, used, available in _UTIL_RE.findall(pnr_log):
        found[name] = (int(used), int(available))
    return found


def overflowing(utilization: dict[str, tuple[int, int]]) -> list[str]:
    """``"DSP multipliers (MULT18X18D): 64 of 28"`` for each resource used beyond the device."""
    return [f"{RESOURCE_NAMES.get(name, name)} ({name}): {used} of {available}"
            for name, (used, available) in utilization.items() if used > available]


_FF_CELL_RE = re.compile(r"^(?P<signal>.*?)_(?:TRELLIS_FF|SB_DFF\w*?)_Q(?:_(?P<bit>\d+))?(?:_|$)")


def _signal_of(cell: str) -> str:
    """The register a flip-flop cell implements (``acc_reg[7]``), or the cell name when unknown."""
    match = _FF_CELL_RE.match(cell)
    if not match:
        return cell
    return f"{match['signal']}[{match['bit']}]" if match["bit"] else match["signal"]


def critical_path(report: dict) -> dict | None:
    """Start, end and delays (ns) of the slowest path in nextpnr's JSON report (None without one)."""
    paths = report.get("critical_paths") or []
    if not paths:
        return None
    worst = max(paths, key=lambda p: sum(step["delay"] for step in p["path"]))
    steps = worst["path"]
    logic = sum(s["delay"] for s in steps if s["type"] != "routing")
    routing = sum(s["delay"] for s in steps if s["type"] == "routing")
    first_net = next((s["net"] for s in steps if s.get("net")), None)
    return {"clock": worst["from"], "from": first_net or _signal_of(steps[0]["from"]["cell"]),
            "to": _signal_of(steps[-1]["to"]["cell"]), "from_cell": steps[0]["from"]["cell"],
            "to_cell": steps[-1]["to"]["cell"], "delay_ns": round(logic + routing, 3),
            "logic_ns": round(logic, 3), "routing_ns": round(routing, 3)}


@dataclass
class SynthResult:
    """Area and timing of one configuration on one target (what ``accel rtl synth`` reports)."""

    target: str
    device: str
    top: str
    array: str                      #: "8x8"
    luts: int
    ffs: int
    carry: int
    dsp: int
    bram: int
    dist_ram: int
    io: int                         #: I/O pins placed (0 out of context)
    port_bits: int                  #: port bits of the core itself
    out_of_context: bool
    wrapper_ffs: int                #: flip-flops of the scan wrapper (iCE40), included in ``ffs``
    logic_cells: tuple[int, int]    #: nextpnr's logic cells used, available
    fmax_mhz: dict[str, float]      #: achieved, per clock
    constraint_mhz: float
    critical_path: dict | None
    seed: int = 1                   #: nextpnr's placement seed
    utilization: dict[str, tuple[int, int]] = field(default_factory=dict)
    tools: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cached: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "SynthResult":
        d = dict(d)
        d["logic_cells"] = tuple(d["logic_cells"])
        d["utilization"] = {k: tuple(v) for k, v in d.get("utilization", {}).items()}
        return cls(**d)


def result_table(result: SynthResult) -> Table:
    """The resources and timing of ``result`` as a two-column table."""
    used, available = result.logic_cells
    rows = [("logic cells", f"{used:,} of {available:,} ({100 * used / max(available, 1):.0f}%)"),
            ("LUT4", f"{result.luts:,}"), ("flip-flops", f"{result.ffs:,}"
                                          + (f" (scan wrapper: {result.wrapper_ffs:,})" if result.wrapper_ffs
                                             else "")),
            ("carry cells", f"{result.carry:,}"), ("DSP", f"{result.dsp:,}"),
            ("block RAM", f"{result.bram:,}"), ("distributed RAM", f"{result.dist_ram:,}"),
            ("I/O", ("out of context (no I/O buffers)" if result.out_of_context
                     else f"{result.io} pins (scan wrapper)") + f"; core ports {result.port_bits} bits")]
    for clock, mhz in result.fmax_mhz.items():
        verdict = "meets" if mhz >= result.constraint_mhz else "FAILS"
        rows.append((f"Fmax {clock}", f"{mhz:.1f} MHz ({verdict} {result.constraint_mhz:g} MHz)"))
    path = result.critical_path
    if path:
        rows.append(("critical path", f"{path['from']} -> {path['to']}: {path['delay_ns']:.2f} ns "
                                      f"({path['logic_ns']:.2f} logic, {path['routing_ns']:.2f} routing)"))
    return Table([Column("resource"), Column("value")], rows)
