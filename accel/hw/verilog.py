"""Verilog export of the GEMM core, with a short description of its ports and parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from ..config import AcceleratorConfig
from ..report import Table, check_output_dir, write_text
from .axi_top import AXI_TOP_NAME, REGISTERS, AxiTop
from .core import GemmCore
from .params import mark_unelaborated

__all__ = ["TOP_NAME", "TOPS", "module_name", "verilog_text", "port_description", "generate_verilog"]

#: Module name of the exported core.
TOP_NAME = "accel_gemm_core"
#: Top levels that can be exported: ``core`` (the streams of :class:`GemmCore`) and ``axi`` (:class:`AxiTop`).
TOPS = ("core", "axi")


def module_name(top: str = "core") -> str:
    """The Verilog module name of a top level (:data:`TOPS`)."""
    return {"core": TOP_NAME, "axi": AXI_TOP_NAME}[top]


def _component(config: AcceleratorConfig, top: str, dsp: str | None = None):
    if top not in TOPS:
        raise ValueError(f"top {top!r}: expected one of {', '.join(TOPS)}")
    return GemmCore(config, dsp=dsp) if top == "core" else AxiTop(config, dsp=dsp)


def verilog_text(config: AcceleratorConfig, *, dsp: str | None = None, top: str = "core") -> str:
    """The Verilog of :class:`GemmCore` (or, with ``top="axi"``, :class:`AxiTop`) for ``config``
    (checked before elaboration); ``dsp`` names an FPGA family whose DSP primitive the PEs
    instantiate (synthesis only, see :class:`GemmCore`)."""
    from amaranth.hdl import Const, Value

    component = _component(config, top, dsp)
    # The core's `out` is always ready: its constant `ready` is no port.
    ports = [Value.cast(value) for _, _, value in component.signature.flatten(component)
             if not isinstance(value, Const)]
    return verilog.convert(component, name=module_name(top), ports=ports, emit_src=False)


def _flatten(layout, prefix, offset=0):
    """(name, offset, width) of every leaf field of a layout."""
    from amaranth.lib import data

    out = []
    if isinstance(layout, data.StructLayout):
        for name, field in layout:
            out += _flatten(field.shape, f"{prefix}.{name}", offset + field.offset)
    elif isinstance(layout, data.ArrayLayout):
        out.append((f"{prefix}[0..{layout.length - 1}]", offset,
                    f"{layout.length} x {_shape_text(layout.elem_shape)}"))
    else:
        out.append((prefix, offset, _shape_text(layout)))
    return out


def _shape_text(shape) -> str:
    from amaranth.hdl import Shape

    s = Shape.cast(shape)
    return f"{'signed' if s.signed else 'unsigned'}({s.width})"


def port_description(config: AcceleratorConfig, top: str = "core") -> dict:
    """Ports, payload fields (bit offsets), timing and parameters of the core (or the AXI top) for ``config``."""
    from amaranth.hdl import Const, Shape
    from amaranth.lib import data

    if top == "axi":
        return _axi_description(config)
    core = mark_unelaborated(GemmCore(config))
    ports = []
    for path, member, value in core.signature.flatten(core):
        if isinstance(value, Const):
            continue
        name = "__".join(str(p) for p in path)
        shape = member.shape
        width = Shape.cast(shape.as_shape() if isinstance(shape, data.Layout) else shape).width
        entry = {"name": name, "direction": "input" if member.flow == wiring.In else "output",
                 "width": width}
        if isinstance(shape, data.Layout):
            entry["fields"] = [{"field": f, "lsb": o, "shape": s} for f, o, s in _flatten(shape, name)]
        ports.append(entry)
    ports = ([{"name": "clk", "direction": "input", "width": 1},
              {"name": "rst", "direction": "input", "width": 1, "note": "synchronous, active high"}]
             + ports)
    return {
        "module": TOP_NAME,
        "config": config.to_dict(),
        "ports": ports,
        "timing": {
            "input_latency": core.input_latency,
            "array_capture_latency": core.timing.capture_latency,
            "drain_cycles": core.timing.drain_cycles,
            "requant_latency": core.requant_latency,
            "min_last_interval": core.min_last_interval,
            "output_latency": core.output_latency,
            "tile_cycles": f"depth + {core.output_latency}",
        },
    }


def _axi_description(config: AcceleratorConfig) -> dict:
    from amaranth.hdl import Shape

    axi = mark_unelaborated(AxiTop(config))
    ports = [{"name": "clk", "direction": "input", "width": 1},
             {"name": "rst", "direction": "input", "width": 1, "note": "synchronous, active high"}]
    for path, member, _ in axi.signature.flatten(axi):
        ports.append({"name": "__".join(map(str, path)), "direction": "input" if member.flow == wiring.In
                      else "output", "width": Shape.cast(member.shape).width})
    return {
        "module": AXI_TOP_NAME,
        "config": config.to_dict(),
        "bus_bits": axi.bus_bits,
        "out_fifo_rows": axi.out_fifo_rows,
        "pins": sum(p["width"] for p in ports),
        "ports": ports,
        "words_per_beat": axi.beat_words(),
        "registers": [{"name": n, "offset": f"0x{o:02X}", "access": a, "meaning": t}
                      for n, (o, a, t) in REGISTERS.items()],
    }


def _markdown(desc: dict) -> str:
    if "registers" in desc:
        return _axi_markdown(desc)
    cfg = desc["config"]
    parameters = Table(["field", "value"], [(k, v) for k, v in cfg.items() if k != "energy"])
    ports = Table(["port", "dir", "width", "fields (lsb: shape)"],
                  [(f"`{p['name']}`", p["direction"], p["width"],
                    "; ".join(f"`{f['field']}` @{f['lsb']}: {f['shape']}" for f in p.get("fields", []))
                    or p.get("note", "")) for p in desc["ports"]])
    timing = Table(["quantity", "cycles"], desc["timing"].items())
    lines = [f"# `{desc['module']}`", "",
             f"GEMM core for a {cfg['rows']}x{cfg['cols']} array: {cfg['weight_bits']}-bit codes, "
             f"{cfg['act_bits']}-bit activations, {cfg['acc_bits']}-bit accumulators "
             f"({cfg['overflow']}), requant {cfg['requant']} ({cfg['rounding']}).", "",
             "## Parameters", "", parameters.markdown(), "", "## Ports", "", ports.markdown(), "",
             "## Timing (cycles)", "", timing.markdown()]
    lines += ["", "Streams are valid/ready (`*__valid`, `*__ready`, `*__payload`); `out` has no ready "
              "(the consumer takes every beat). See docs/RTL.md.", ""]
    return "\n".join(lines)


def _axi_markdown(desc: dict) -> str:
    cfg = desc["config"]
    ports = Table(["port", "dir", "width"], [(f"`{p['name']}`", p["direction"], p["width"]) for p in desc["ports"]])
    regs = Table(["offset", "register", "access", "meaning"],
                 [(r["offset"], r["name"], r["access"], r["meaning"]) for r in desc["registers"]])
    words = Table(["beat", "stream words"], desc["words_per_beat"].items())
    return "\n".join([
        f"# `{desc['module']}`", "",
        f"The {cfg['rows']}x{cfg['cols']} GEMM core behind AXI4-Stream ({desc['bus_bits']}-bit) in/out and "
        f"AXI4-Lite control; {desc['pins']} pins; an output FIFO of {desc['out_fifo_rows']} rows. "
        "Protocol: docs/RTL.md.", "",
        "## Ports", "", ports.markdown(), "", "## Registers (AXI4-Lite, 32-bit)", "", regs.markdown(), "",
        "## Stream words per beat", "", words.markdown(), ""])


def generate_verilog(config: AcceleratorConfig, out_dir: str | os.PathLike, *,
                     overwrite: bool = False, top: str = "core") -> dict[str, Path]:
    """Write ``<module>.v``, ``<module>.json`` and ``<module>.md`` to ``out_dir`` (the module is
    ``accel_gemm_core``, or ``accel_axi_top`` with ``top="axi"``).

    The folder is created if missing; existing files are replaced only with ``overwrite`` (a
    hand-edited Verilog file is never lost by accident), each atomically.

    Returns
    -------
    dict
        The paths by kind (``verilog``, ``json``, ``markdown``).

    Raises
    ------
    OutputError
        A file exists (without ``overwrite``) or the folder cannot be written; checked before
        the (slow) elaboration.
    ConfigError
        The gateware cannot build ``config``.
    """
    name = module_name(top)
    kinds = {"verilog": f"{name}.v", "json": f"{name}.json", "markdown": f"{name}.md"}
    desc = port_description(config, top)  # checks the config before any folder is created
    paths = dict(zip(kinds, check_output_dir(out_dir, list(kinds.values()), overwrite=overwrite)))
    texts = {"verilog": verilog_text(config, top=top), "json": json.dumps(desc, indent=2) + "\n",
             "markdown": _markdown(desc)}
    for kind, path in paths.items():
        write_text(path, texts[kind], overwrite=overwrite)
    return paths
