"""Exact cycle schedule of a tile plan on the GEMM core fed without bubbles.

The harness (``accel/rtlsim/hdl/accel_harness.v``) feeds the core's streams from
memories with no bubble: control beats (LUT, tile) in order, data beats in
order. Under that feeding the core's timing (:class:`~accel.hw.timing.CoreTiming`)
fixes every cycle, and the RTL is held to these numbers exactly:

* a LUT load (``2 ** weight_bits`` beats) starts when no tile is held: at cycle
  0 of a job, or the cycle after the previous tile's last data beat; the tile
  beat follows it, and the first data beat the cycle after;
* without a LUT load, the next tile's first data beat follows the previous
  tile's last data beat directly;
* data beats go one per cycle, except that the last beat of a tile waits until
  ``min_last_interval`` cycles have passed since the previous last beat;
* a tile of depth 1 has one beat: its first beat is its last and waits too;
* the last output beat comes ``output_latency`` cycles after the last data beat.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..hw.timing import CoreTiming
from .tiling import TilePlan

__all__ = ["TileCycles", "schedule"]


@dataclass(frozen=True)
class TileCycles:
    """Cycle numbers (from reset release, cycle 0) of one tile."""

    first_in: int   #: first data beat accepted
    last_in: int    #: last data beat accepted
    last_out: int   #: last output beat

    @property
    def cycles(self) -> int:
        """First input to last output, both counted."""
        return self.last_out - self.first_in + 1


def schedule(plan: TilePlan, timing: CoreTiming | None = None) -> list[TileCycles]:
    """Per-tile cycles of one job (a plan that starts with a LUT load).

    Example
    -------
    >>> import numpy as np
    >>> from accel.config import AcceleratorConfig
    >>> from accel.compile import GemmProblem, plan_tiles
    >>> cfg = AcceleratorConfig()  # 8x8
    >>> prob = GemmProblem("fc", np.ones((16, 72), int), np.zeros((8, 72), np.uint8), np.zeros((1, 16), int),
    ...                    np.zeros(8, int), np.zeros(8, int), None, -128, 127, False, True, slice(0, 8))
    >>> [(c.first_in, c.last_out, c.cycles) for c in schedule(plan_tiles([prob], cfg))]
    [(17, 119, 103), (89, 191, 103)]
    """
    timing = timing or CoreTiming.from_config(plan.config)
    out: list[TileCycles] = []
    prev_last: int | None = None
    for tile in plan.tiles:
        if tile.lut_load:
            start = 0 if prev_last is None else prev_last + 1
            first = start + timing.lut_load_cycles + 1
        else:
            if prev_last is None:
                raise ValueError("a job must start with a LUT load")
            first = prev_last + 1
        last = first + tile.depth - 1
        if prev_last is not None:
            last = max(last, prev_last + timing.min_last_interval)
        if tile.depth == 1:  # its only beat is the last one, and waits with it
            first = last
        out.append(TileCycles(first, last, last + timing.output_latency))
        prev_last = last
    return out
