"""Tiling of matrix products onto the ``rows x cols`` array.

A :class:`TilePlan` cuts each :class:`~accel.compile.lower.GemmProblem` into
tiles of ``rows`` pixels by ``cols`` channels (the whole reduction streams
through the array), column blocks outer and pixel blocks inner so that a
per-channel LUT is loaded once per column block; :func:`split_plan` cuts a plan
into jobs that fit the harness memories. The memory images of a plan are
:mod:`accel.compile.images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import AcceleratorConfig, LutScope
from ..datapath import pe_decodable
from ..errors import ModelError
from ..hw.params import DEPTH_BITS
from .lower import GemmProblem

__all__ = ["Tile", "TilePlan", "plan_tiles", "split_plan"]


@dataclass(frozen=True)
class Tile:
    """One tile: pixels ``row0 .. row0 + rows - 1`` by channels ``col0 .. col0 + cols - 1`` of a problem."""

    problem: int
    row0: int
    col0: int
    depth: int
    lut_load: bool  #: LUT beats precede this tile


@dataclass
class TilePlan:
    """Tiles of one or more problems of one layer, in the order the core runs them."""

    config: AcceleratorConfig
    problems: list[GemmProblem]
    tiles: list[Tile] = field(default_factory=list)

    @property
    def output_beats(self) -> int:
        return len(self.tiles) * self.config.rows

    @property
    def data_beats(self) -> int:
        return sum(t.depth for t in self.tiles)

    @property
    def control_beats(self) -> int:
        return len(self.tiles) + sum(self.config.lut_entries for t in self.tiles if t.lut_load)


def plan_tiles(problems: list[GemmProblem], config: AcceleratorConfig) -> TilePlan:
    """Cut ``problems`` into tiles; a LUT load starts the plan and every change of table.

    Raises
    ------
    ModelError
        A reduction longer than the core's tile depth counter (``2**16 - 1``), or an empty one; a LUT
        value that the config's PE kind cannot decode (:func:`accel.datapath.pe_decodable`).
    """
    plan = TilePlan(config, list(problems))
    rows, cols = config.rows, config.cols
    loaded = None  # (problem, col0) whose LUT rows are in the decoders, or "shared" table identity
    for p, prob in enumerate(problems):
        if not 1 <= prob.depth < (1 << DEPTH_BITS):
            raise ModelError(f"layer {prob.name!r}: reduction of {prob.depth} does not fit a tile "
                             f"(1..{(1 << DEPTH_BITS) - 1})")
        undecodable = ~pe_decodable(prob.lut, config.pe_kind)
        if undecodable.any():
            value = int(prob.lut[undecodable][0])
            raise ModelError(f"layer {prob.name!r}: field 'lut': value {value} cannot be decoded by the "
                             f"config's {config.pe_kind.value!r} PEs (pe_kind 'shift': 0 or +-2^e; "
                             f"'shift_add': at most two powers of two); quantize for this pe_kind")
        per_channel = prob.lut.shape[0] > 1
        if per_channel and config.lut_scope is not LutScope.CHANNEL:
            raise ModelError(f"layer {prob.name!r}: field 'lut': one table per channel needs "
                             f"lut_scope 'channel'")
        for col0 in range(0, prob.channels_out, cols):
            key = (p, col0) if per_channel else ("shared", prob.lut.tobytes())
            for row0 in range(0, prob.pixels, rows):
                plan.tiles.append(Tile(p, row0, col0, prob.depth, lut_load=key != loaded))
                loaded = key
    return plan


def split_plan(plan: TilePlan, *, max_tiles: int, max_data: int, max_control: int) -> list[TilePlan]:
    """Split a plan into jobs that fit the harness memories; each job starts with a LUT load."""
    jobs: list[TilePlan] = []
    current: TilePlan | None = None
    e = plan.config.lut_entries
    for tile in plan.tiles:
        cost_ctrl = 1 + (e if tile.lut_load else 0)
        if (current is None or len(current.tiles) + 1 > max_tiles
                or current.data_beats + tile.depth > max_data
                or current.control_beats + cost_ctrl > max_control):
            current = TilePlan(plan.config, plan.problems)
            jobs.append(current)
            tile = Tile(tile.problem, tile.row0, tile.col0, tile.depth, lut_load=True)
        current.tiles.append(tile)
    return jobs
