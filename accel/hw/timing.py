"""Cycle timing of the GEMM core as plain numbers, for software that must not elaborate gateware.

:class:`~accel.hw.core.GemmCore` reads its latency properties from here; the numbers
come from the same functions that the components use for their own latencies
(:func:`~accel.hw.array.array_capture_latency`, :func:`~accel.hw.requant.requant_latency`, ...),
and the tests hold the simulated core to them cycle for cycle.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import AcceleratorConfig
from .array import array_capture_latency, array_drain_cycles
from .decoder import DECODER_LATENCY
from .requant import requant_latency

__all__ = ["CoreTiming"]


@dataclass(frozen=True)
class CoreTiming:
    """Latencies of :class:`~accel.hw.core.GemmCore` for one configuration (all in cycles).

    * ``input_latency``: decoder stage, data beat accepted -> array input (the decoder's latency, 1);
    * ``capture_latency``: last beat at the array input -> every PE captured (``rows + cols + 2``);
    * ``drain_cycles``: cycles that shift the results out (``rows``);
    * ``requant_latency``: requantizer pipeline (5 for ``shift``, 6 for ``multiply_shift``);
    * ``lut_load_cycles``: LUT beats of a full load (``2 ** weight_bits``).

    Example
    -------
    >>> from accel.config import AcceleratorConfig
    >>> t = CoreTiming.from_config(AcceleratorConfig())  # 8x8, requant "shift"
    >>> t.min_last_interval, t.output_latency, t.tile_cycles(72)
    (26, 31, 103)
    """

    rows: int
    cols: int
    input_latency: int
    capture_latency: int
    drain_cycles: int
    requant_latency: int
    lut_load_cycles: int

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> "CoreTiming":
        """The latencies of the core's components for ``config`` (the components' own functions)."""
        return cls(rows=config.rows, cols=config.cols, input_latency=DECODER_LATENCY,
                   capture_latency=array_capture_latency(config.rows, config.cols),
                   drain_cycles=array_drain_cycles(config.rows),
                   requant_latency=requant_latency(config.requant),
                   lut_load_cycles=config.lut_entries)

    @property
    def min_last_interval(self) -> int:
        """Least cycles between the last data beats of consecutive tiles (``2 * rows + cols + 2``)."""
        return self.input_latency + self.capture_latency + self.drain_cycles - 1

    @property
    def output_latency(self) -> int:
        """Cycles from a tile's last data beat to its last output beat."""
        return self.min_last_interval + self.requant_latency

    def tile_cycles(self, depth: int) -> int:
        """First data beat to last output beat, both counted, of a tile that does not wait."""
        return depth + self.output_latency
