"""Cycles of each layer: the GEMM core exactly as the RTL runs it, and the vector unit.

Conv and linear layers are lowered and tiled exactly as ``accel rtl verify``
runs them (:func:`accel.compile.lower_layer`, :func:`accel.compile.plan_tiles`)
and timed by the cycle schedule the RTL is held to (:func:`accel.compile.schedule`):
a layer is one job from an idle core, cycle 0 the first LUT beat, until its last
output beat, LUT loads per column block (per-channel tables) and bias/shift
tile beats included. Cycles do not depend on the data, so the layer is lowered
on a zero input of batch 1.

The other layers run on a vector unit of ``vector_lanes`` element operations
per cycle with a pipeline of ``vector_latency`` cycles; flatten and reshape
only rename a buffer (no cycles).

A multipoint layer (contract v1.3) costs twice: its extra points are extra array columns (more
column tiles, priced by the schedule like any column), and the vector unit's epilogue reads every
raw accumulator column, shift-adds the extra ones onto their channels and requantizes
(:func:`point_epilogue_work`), after the array (no overlap is assumed).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..compile import GemmProblem, TilePlan, lower_layer, plan_tiles, schedule
from ..config import AcceleratorConfig
from ..hw.timing import CoreTiming
from ..ir import MAC_OPS, Layer, Model

__all__ = ["ArrayWork", "VectorWork", "plan_cycles", "shape_problems", "array_work", "vector_work",
           "point_epilogue_work"]


def plan_cycles(plan: TilePlan, *, lut_loads: bool = True) -> int:
    """Cycles of one job (cycle 0 = its first control beat, through its last output beat).

    ``lut_loads=False`` prices a core without weight LUTs (plain int8 weights):
    the same schedule with zero-length table loads.
    """
    timing = CoreTiming.from_config(plan.config)
    if not lut_loads:
        timing = dataclasses.replace(timing, lut_load_cycles=0)
    return schedule(plan, timing)[-1].last_out + 1


def shape_problems(model: Model, layer: Layer) -> list[GemmProblem]:
    """The matrix products of a conv2d/linear layer for one sample (zero activations)."""
    info = model.tensors[layer.inputs[0]]
    return lower_layer(model, layer, np.zeros((1, *info.shape), dtype=np.int64))


@dataclass(frozen=True)
class ArrayWork:
    """What a conv/linear layer costs on the GEMM core for one sample."""

    cycles: int          #: first LUT beat to last output beat
    tiles: int
    data_beats: int      #: one per reduction step per tile (``rows`` activations, ``cols`` codes)
    lut_loads: int       #: table loads (``2 ** weight_bits`` beats of ``cols`` entries each)
    macs: int            #: useful multiply-accumulates
    issued_macs: int     #: PE operations, padding lanes of partial tiles included
    outputs: int         #: output values that leave the array (padding lanes included)
    col_blocks: int      #: column blocks summed over the layer's groups
    pixel_blocks: int    #: pixel blocks of one group
    padding_slots: int   #: activation slots fed zeros because a tile has fewer pixels than rows

    @property
    def utilization(self) -> float:
        return self.macs / self.issued_macs if self.issued_macs else 0.0


def array_work(model: Model, layer: Layer, config: AcceleratorConfig, *, lut_loads: bool = True) -> ArrayWork:
    """Cycles and event counts of ``layer`` on the core of ``config`` (``config`` may differ from the
    model's in array size, clock, buffers and energy)."""
    problems = shape_problems(model, layer)
    plan = plan_tiles(problems, config)
    rows, cols = config.rows, config.cols
    col_blocks = sum(-(-p.channels_out // cols) for p in problems)
    pixel_blocks = -(-problems[0].pixels // rows)
    padding = sum((pixel_blocks * rows - p.pixels) * p.depth * -(-p.channels_out // cols) for p in problems)
    return ArrayWork(
        cycles=plan_cycles(plan, lut_loads=lut_loads), tiles=len(plan.tiles), data_beats=plan.data_beats,
        lut_loads=sum(t.lut_load for t in plan.tiles),
        macs=sum(p.pixels * p.depth * p.channels_out for p in problems),
        issued_macs=plan.data_beats * rows * cols, outputs=plan.output_beats * cols,
        col_blocks=col_blocks, pixel_blocks=pixel_blocks, padding_slots=padding)


@dataclass(frozen=True)
class VectorWork:
    """What a non-MAC layer costs on the vector unit for one sample."""

    cycles: int
    element_ops: int   #: adds, compares, window-sum steps or copies
    reads: int         #: activation values read
    requants: int      #: outputs rescaled (add, average pools)


def vector_work(model: Model, layer: Layer, config: AcceleratorConfig) -> VectorWork:
    """Element operations of an add, pool or concat, at ``vector_lanes`` per cycle plus the latency."""
    if layer.op in MAC_OPS:
        raise ValueError(f"layer {layer.name!r}: {layer.op} runs on the MAC array")
    out = math.prod(model.tensors[layer.output].shape)
    in_elems = math.prod(model.tensors[layer.inputs[0]].shape)
    requants = 0
    if layer.op in ("flatten", "reshape"):
        ops = reads = 0
    elif layer.op == "add":
        ops, reads, requants = out, 2 * out, out
    elif layer.op in ("max_pool", "avg_pool"):
        ops = reads = out * math.prod(layer.attrs["kernel"])
        requants = out if layer.op == "avg_pool" else 0
    elif layer.op == "global_avg_pool":
        ops, reads, requants = in_elems, in_elems, out
    else:  # concat: a copy of every element into the joined map
        ops = reads = out
    cycles = -(-ops // config.vector_lanes) + config.vector_latency if ops else 0
    return VectorWork(cycles, ops, reads, requants)


def point_epilogue_work(model: Model, layer: Layer, config: AcceleratorConfig) -> VectorWork | None:
    """The vector unit's epilogue of a multipoint conv/linear layer for one sample (None for an ordinary
    layer): it reads the ``N + P`` raw accumulator columns of every output pixel, does one shift-and-add
    per extra column and one requantization per output (none for a raw layer)."""
    if layer.points is None:
        return None
    out = model.tensors[layer.output].shape
    pixels = math.prod(out[1:])
    n, p = out[0], layer.n_points
    reads = pixels * (n + p)
    requants = 0 if layer.attrs["raw"] else pixels * n
    return VectorWork(-(-reads // config.vector_lanes) + config.vector_latency, pixels * p, reads, requants)
