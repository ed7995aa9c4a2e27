"""Verilog export of the GEMM core, with a short description of its ports and parameters."""

from __future__ import annotations

import json
import os
from pathlib import Path

from amaranth.back import verilog
from amaranth.lib import wiring

from ..config import AcceleratorConfig
from ..report import Table, check_output_dir, write_text
from .core import GemmCore
from .params import mark_unelaborated

__all__ = ["TOP_NAME", "verilog_text", "port_description", "generate_verilog"]

#: Module name of the exported core.
TOP_NAME = "accel_gemm_core"


def verilog_text(config: AcceleratorConfig, *, dsp: str | None = None) -> str:
    """The Verilog of :class:`GemmCore` for ``config`` (checked before elaboration); ``dsp`` names an
    FPGA family whose DSP primitive the PEs instantiate (synthesis only, see :class:`GemmCore`)."""
    from amaranth.hdl import Const, Value

    core = GemmCore(config, dsp=dsp)
    # `out` is always ready: its constant `ready` is no port.
    ports = [Value.cast(value) for _, _, value in core.signature.flatten(core)
             if not isinstance(value, Const)]
    return verilog.convert(core, name=TOP_NAME, ports=ports, emit_src=False)


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


def port_description(config: AcceleratorConfig) -> dict:
    """Ports, payload fields (bit offsets), timing and parameters of the core for ``config``."""
    from amaranth.hdl import Const, Shape
    from amaranth.lib import data

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


def _markdown(desc: dict) -> str:
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


def generate_verilog(config: AcceleratorConfig, out_dir: str | os.PathLike, *,
                     overwrite: bool = False) -> dict[str, Path]:
    """Write ``accel_gemm_core.v``, ``accel_gemm_core.json`` and ``accel_gemm_core.md`` to ``out_dir``.

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
    kinds = {"verilog": f"{TOP_NAME}.v", "json": f"{TOP_NAME}.json", "markdown": f"{TOP_NAME}.md"}
    desc = port_description(config)  # checks the config before any folder is created
    paths = dict(zip(kinds, check_output_dir(out_dir, list(kinds.values()), overwrite=overwrite)))
    texts = {"verilog": verilog_text(config), "json": json.dumps(desc, indent=2) + "\n",
             "markdown": _markdown(desc)}
    for kind, path in paths.items():
        write_text(path, texts[kind], overwrite=overwrite)
    return paths
