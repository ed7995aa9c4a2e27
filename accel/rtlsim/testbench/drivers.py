"""Reusable cocotb driver and monitor of the GEMM core inside ``accel_harness``.

The harness (``accel/rtlsim/hdl/accel_harness.v``) feeds the core's ``lut``,
``tile`` and ``data`` streams from memories without a bubble and records every
output beat and per-tile cycle stamp in memories of its own, so that Python does
no work per clock cycle. One handshake (``start`` -> ``done``) runs one *job*:
the harness loads the memory images from the simulator's working folder, resets
the core, streams the job and writes the outputs back. Hence:

* :class:`CoreDriver` queues stimulus (:meth:`~CoreDriver.load_lut`,
  :meth:`~CoreDriver.send_tile`) and sends it as one job (:meth:`~CoreDriver.run`),
  or sends memory images prepared elsewhere (:meth:`~CoreDriver.run_images`);
* :class:`OutputMonitor` reads what the harness recorded after ``done``: the output
  beats, each tile's first-input and last-output cycle, and the job's total cycles;
* :func:`run_tile` does reset, LUT load, one tile and collection in one call.

The core is reset at the start of every job, so each job begins with a LUT load.
Composing jobs needs the :class:`~accel.config.AcceleratorConfig` the Verilog
was generated from; sending prepared images does not (nor does it import numpy
or Amaranth, which keeps the simulator's start fast).

Example (inside a ``@cocotb.test()``)::

    driver, monitor = CoreDriver(dut, config), OutputMonitor(dut, config)
    await driver.reset()
    driver.load_lut(lut)                      # 2**weight_bits int8 values
    driver.send_tile(act, codes, bias, shift) # act (P<=rows, K), codes (N<=cols, K)
    plan = await driver.run()
    got = monitor.collect(plan)               # got.results[0]: (P, N)
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

from ...errors import ModelError

__all__ = ["INPUTS", "OUTPUTS", "CoreDriver", "OutputMonitor", "Collected", "RunTimes", "TileRun", "read_words",
           "run_tile"]

#: Memory images the harness loads at ``start`` (in the simulator's working folder).
INPUTS = ("job_head.hex", "job_control.hex", "job_data.hex")
#: What the harness writes before ``done``: output beats, per-tile cycle stamps, total cycles.
OUTPUTS = ("job_out.hex", "job_cycles.hex", "job_stat.hex")

#: Simulated nanoseconds per clock cycle of the harness (both clock modes).
CLOCK_NS = 10


def read_words(path: str | os.PathLike) -> list[str]:
    """The words of a ``$readmemh``/``$writememh`` file, lower case (address comments skipped)."""
    return [ln.split()[0].lower() for ln in Path(path).read_text().splitlines()
            if ln.strip() and not ln.lstrip().startswith("//")]


@dataclass(frozen=True)
class RunTimes:
    """Wall-clock seconds of one job: ``run_s`` the design running (reset release to ``done``),
    ``wall_s`` also loading the memories and reading back."""

    run_s: float
    wall_s: float


class CoreDriver:
    """Stimulus of ``accel_gemm_core`` through ``accel_harness``: LUT loads and tiles, sent as one job.

    Parameters
    ----------
    dut
        cocotb's handle of ``accel_harness`` (its ``start``, ``running`` and ``done``).
    config : AcceleratorConfig, optional
        The configuration the Verilog was generated from; needed to compose jobs with
        :meth:`load_lut`/:meth:`send_tile`, not for :meth:`run_images`.
    workdir : path, optional
        The simulator's working folder, where the harness reads and writes its files
        (default: the current folder, which is where cocotb runs the test).
    """

    def __init__(self, dut, config=None, *, workdir: str | os.PathLike | None = None):
        self.dut = dut
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()
        self._problems: list = []
        self._tiles: list = []
        self._lut = None          # the table the next tile computes with
        self._lut_pending = False  # a load_lut since the last tile
        self._layer = {"lo": -128, "hi": 127, "raw": False, "act_signed": True}
        self.last_times: RunTimes | None = None  #: wall-clock seconds of the last :meth:`run`

    async def reset(self) -> None:
        """Bring the handshake to idle: ``start`` low, no job finishing.

        The harness holds the core in reset between jobs and resets it again when a
        job starts; the queued stimulus is dropped.
        """
        self.dut.start.value = 0
        await Timer(1, "ns")
        if int(self.dut.done.value):
            await FallingEdge(self.dut.done)
        self._problems, self._tiles = [], []
        self._lut, self._lut_pending = None, False

    def _need_config(self, what: str):
        if self.config is None:
            raise ModelError(f"CoreDriver.{what}: pass the AcceleratorConfig of the Verilog to CoreDriver "
                             f"to compose jobs")
        return self.config

    def set_layer(self, *, lo: int = -128, hi: int = 127, raw: bool = False, act_signed: bool = True) -> None:
        """Settings of the ``layer`` port for the next job: clamp bounds, raw accumulators, activation type."""
        from ...datapath.limits import DTYPE_RANGES

        low, high = DTYPE_RANGES["int8"][0], DTYPE_RANGES["uint8"][1]
        if not low <= lo <= hi <= high:
            raise ModelError(f"CoreDriver.set_layer: lo={lo}, hi={hi}: expected {low} <= lo <= hi <= {high}")
        if self._tiles:
            raise ModelError("CoreDriver.set_layer: the layer settings hold for a whole job; "
                             "call it before send_tile or after run")
        self._layer = {"lo": int(lo), "hi": int(hi), "raw": bool(raw), "act_signed": bool(act_signed)}

    def load_lut(self, table) -> None:
        """Queue a LUT load: ``2**weight_bits`` int8 values for every column, or one row per column
        (``(cols, 2**weight_bits)``, a per-channel table; needs ``lut_scope = "channel"``)."""
        import numpy as np

        cfg = self._need_config("load_lut")
        lut = np.asarray(table, dtype=np.int64)
        if lut.ndim == 1:
            lut = lut[None, :]
        if lut.ndim != 2 or lut.shape[1] != cfg.lut_entries or lut.shape[0] not in (1, cfg.cols):
            raise ModelError(f"CoreDriver.load_lut: table of shape {np.shape(table)}: expected "
                             f"({cfg.lut_entries},) or ({cfg.cols}, {cfg.lut_entries})")
        _check_range("load_lut", "table", lut, -128, 127)
        self._lut, self._lut_pending = lut, True

    def send_tile(self, act, codes, bias=None, shift=None, mult=None) -> int:
        """Queue one tile; returns its index in the job.

        ``out[p, n] = requant(bias[n] + sum_k T_n[codes[n, k]] * act[p, k])`` with
        ``act`` of shape (P, K), P <= rows (one row per output pixel) and ``codes`` of
        shape (N, K), N <= cols; ``bias``, ``shift`` (default 0) and ``mult``
        (``requant = "multiply_shift"`` only, default 1) per output channel.
        """
        import numpy as np

        from ...compile import GemmProblem, Tile, plan_tiles

        cfg = self._need_config("send_tile")
        if self._lut is None:
            raise ModelError("CoreDriver.send_tile: no LUT loaded in this job; call load_lut first "
                             "(the harness resets the core at the start of every job)")
        act, codes = np.asarray(act, dtype=np.int64), np.asarray(codes, dtype=np.int64)
        if act.ndim != 2 or codes.ndim != 2 or act.shape[1] != codes.shape[1]:
            raise ModelError(f"CoreDriver.send_tile: act {act.shape} and codes {codes.shape}: expected "
                             f"(P, K) and (N, K) with the same K")
        (p, k), n = act.shape, codes.shape[0]
        if not (1 <= p <= cfg.rows and 1 <= n <= cfg.cols):
            raise ModelError(f"CoreDriver.send_tile: {p} pixels x {n} channels: one tile holds at most "
                             f"{cfg.rows} x {cfg.cols}")
        bias = np.zeros(n, np.int64) if bias is None else np.asarray(bias, dtype=np.int64).reshape(n)
        shift = np.zeros(n, np.int64) if shift is None else np.asarray(shift, dtype=np.int64).reshape(n)
        if mult is not None:
            mult = np.asarray(mult, dtype=np.int64).reshape(n)
            _check_range("send_tile", "mult", mult, 0, (1 << cfg.mult_bits) - 1)
        elif cfg.requant.value == "multiply_shift":
            mult = np.ones(n, np.int64)
        layer = self._layer
        _check_range("send_tile", "act", act, *cfg.act_range(layer["act_signed"]))
        _check_range("send_tile", "codes", codes, 0, cfg.lut_entries - 1)
        _check_range("send_tile", "bias", bias, cfg.acc_min, cfg.acc_max)
        _check_range("send_tile", "shift", shift, 0, cfg.max_shift)
        lut = self._lut if self._lut.shape[0] == 1 else self._lut[:n]
        prob = GemmProblem(f"tile{len(self._tiles)}", act, codes.astype(np.uint8), lut, bias, shift, mult,
                           layer["lo"], layer["hi"], layer["raw"], layer["act_signed"], slice(0, n))
        plan_tiles([prob], cfg)  # the compiler's checks: depth, decodable LUT values, LUT scope
        self._problems.append(prob)
        self._tiles.append(Tile(len(self._problems) - 1, 0, 0, k, lut_load=self._lut_pending))
        self._lut_pending = False
        return len(self._tiles) - 1

    @property
    def plan(self):
        """The queued job as a :class:`~accel.compile.TilePlan` (its problems hold every tile's operands)."""
        from ...compile import TilePlan

        return TilePlan(self._need_config("plan"), list(self._problems), list(self._tiles))

    def expected(self) -> list:
        """The contract's answer (:mod:`accel.datapath`) of every queued tile, (P, N) each."""
        return [prob.expected(self.config) for prob in self._problems]

    async def run(self, timeout_cycles: int | None = None):
        """Send the queued LUT loads and tiles as one job; returns its plan (for :meth:`OutputMonitor.collect`).

        The queue is emptied; the loaded table stays current for the next job's first
        tile only after another :meth:`load_lut` (the core is reset per job).
        """
        from ...compile import pack_job, schedule

        plan = self.plan
        if not plan.tiles:
            raise ModelError("CoreDriver.run: no tile queued; call send_tile first")
        image = pack_job(plan)
        if timeout_cycles is None:
            timeout_cycles = 2 * (schedule(plan)[-1].last_out + 1) + 1000
        self._problems, self._tiles = [], []
        self._lut, self._lut_pending = None, False
        self.last_times = await self.run_images(image.head, image.control, image.data, timeout_cycles)
        return plan

    async def run_images(self, head: bytes, control: bytes, data: bytes, timeout_cycles: int) -> RunTimes:
        """Run one job from prepared memory images (:func:`accel.compile.pack_job`); wait for ``done``.

        Removes the outputs of the previous job first, so that a monitor never reads stale ones.
        Raises cocotb's ``SimTimeoutError`` when the job takes more than ``timeout_cycles`` (+100).
        """
        for name, content in zip(INPUTS, (head, control, data)):
            (self.workdir / name).write_bytes(content)
        for name in OUTPUTS:
            (self.workdir / name).unlink(missing_ok=True)
        t0 = time.perf_counter()
        self.dut.start.value = 1
        await RisingEdge(self.dut.running)
        t_run = time.perf_counter()
        await with_timeout(RisingEdge(self.dut.done), CLOCK_NS * (timeout_cycles + 100), "ns")
        t_done = time.perf_counter()
        self.dut.start.value = 0
        await FallingEdge(self.dut.done)
        return RunTimes(t_done - t_run, time.perf_counter() - t0)


@dataclass
class Collected:
    """What the harness recorded for one job."""

    words: list[str]                 #: output beats as hex words, in arrival order (bottom row of a tile first)
    stamps: list[tuple[int, int]]    #: per tile: cycle of its first data beat, cycle of its last output beat
    total_cycles: int                #: reset release to the job's last output
    results: list = field(default_factory=list)  #: per tile (P, N) values, when collected with a plan

    @property
    def tile_cycles(self) -> list[int]:
        """Per tile: first data beat to last output beat, both counted."""
        return [last - first + 1 for first, last in self.stamps]


class OutputMonitor:
    """The output side of ``accel_harness``: output beats and cycle stamps of the last job.

    The harness samples ``out`` every cycle into a memory (the core's output stream has
    no ready, so the consumer must take every beat), stamps each tile's first data beat
    and last output beat, and writes them out before ``done``; the monitor reads them.

    Parameters
    ----------
    dut
        cocotb's handle of ``accel_harness`` (unused beyond naming the design; kept for symmetry).
    config : AcceleratorConfig, optional
        Needed to unpack output beats into values (:meth:`collect` with a plan).
    workdir : path, optional
        The simulator's working folder (default: the current folder).
    """

    def __init__(self, dut=None, config=None, *, workdir: str | os.PathLike | None = None):
        self.dut = dut
        self.config = config
        self.workdir = Path(workdir) if workdir is not None else Path.cwd()

    def collect(self, plan=None) -> Collected:
        """Read the last job's outputs; with its ``plan``, also unpack one (P, N) array per tile."""
        words = read_words(self.workdir / OUTPUTS[0])
        stamps = [int(w, 16) for w in read_words(self.workdir / OUTPUTS[1])]
        total = int(read_words(self.workdir / OUTPUTS[2])[0], 16)
        got = Collected(words, list(zip(stamps[0::2], stamps[1::2])), total)
        if plan is not None:
            from ...compile import CoreLayout, unpack_outputs
            from ...compile.images import hex_to_bits

            width = CoreLayout.from_config(plan.config).output_width
            got.results = unpack_outputs(plan, hex_to_bits("\n".join(words), width))
        return got

    def save_to(self, folder: str | os.PathLike) -> None:
        """Copy the last job's output files into ``folder`` (the run's record)."""
        for name in OUTPUTS:
            shutil.copyfile(self.workdir / name, Path(folder) / name)


@dataclass
class TileRun:
    """One tile on the RTL: its values, the contract's, and its cycles."""

    result: object      #: (P, N) values the RTL returned
    expected: object    #: (P, N) values of the contract (accel.datapath)
    first_in: int       #: cycle of the first data beat (cycle 0 = reset release)
    last_out: int       #: cycle of the last output beat
    schedule_cycles: tuple[int, int]  #: (first_in, last_out) of the cycle model (accel.compile.schedule)
    total_cycles: int

    @property
    def cycles(self) -> int:
        return self.last_out - self.first_in + 1

    @property
    def ok(self) -> bool:
        """Values equal to the contract's and cycles equal to the schedule's."""
        import numpy as np

        return bool(np.array_equal(self.result, self.expected)) and \
            (self.first_in, self.last_out) == self.schedule_cycles


async def run_tile(dut, config, lut, act, codes, bias=None, shift=None, mult=None, *, lo: int = -128,
                   hi: int = 127, raw: bool = False, act_signed: bool = True,
                   workdir: str | os.PathLike | None = None) -> TileRun:
    """Reset, load ``lut``, send one tile, collect it: the whole round trip of :class:`CoreDriver` and
    :class:`OutputMonitor` for one tile (arguments as :meth:`CoreDriver.send_tile`)."""
    from ...compile import schedule

    driver = CoreDriver(dut, config, workdir=workdir)
    monitor = OutputMonitor(dut, config, workdir=workdir)
    await driver.reset()
    driver.set_layer(lo=lo, hi=hi, raw=raw, act_signed=act_signed)
    driver.load_lut(lut)
    driver.send_tile(act, codes, bias, shift, mult)
    (expected,) = driver.expected()
    plan = await driver.run()
    got = monitor.collect(plan)
    (first_in, last_out), = got.stamps
    model = schedule(plan)[0]
    return TileRun(got.results[0], expected, first_in, last_out, (model.first_in, model.last_out),
                   got.total_cycles)


def _check_range(method: str, name: str, values, lo: int, hi: int) -> None:
    if values.size and (values.min() < lo or values.max() > hi):
        raise ModelError(f"CoreDriver.{method}: {name} holds {int(values.min())}..{int(values.max())}; "
                         f"expected {lo}..{hi}")
