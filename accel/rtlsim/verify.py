"""Run a model's conv/linear layers on the RTL and compare them with the engine, bit for bit.

The engine (:func:`accel.engine.run_model`) gives every tensor of the network
on the inputs; each conv2d/linear layer is lowered (im2col), tiled, and run on
the exported Verilog under Verilator or Icarus with the layer's *engine* input,
so layers are checked independently. A mismatch names the layer, output
channel, pixel (batch item, row, column), the expected and the got value.

A multipoint layer (contract v1.3) runs its extra points as ordinary array columns in raw mode:
each column's accumulators are compared with the contract's, then the RTL's columns go through the
vector unit's epilogue (shift-and-add, requantization; :class:`accel.compile.PointEpilogue`) and the
result is compared with the engine's layer output. The epilogue itself is numpy, not RTL.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..compile import lower_layer, plan_tiles
from ..errors import DataError, ModelError
from ..ir import MAC_OPS, Model
from ..report.files import write_json
from .build import build_simulation
from .jobs import run_jobs

__all__ = ["Mismatch", "LayerReport", "model_inputs", "verify_model", "write_cycles"]


@dataclass
class Mismatch:
    """One differing output value."""

    layer: str
    channel: int | str  #: the layer channel, or "point P of channel N" for a multipoint extra column
    pixel: tuple[int, ...]  #: (batch item, row, column) for conv, (batch item,) for linear
    expected: int
    got: int

    def __str__(self) -> str:
        return (f"layer {self.layer!r}: channel {self.channel}, pixel {self.pixel}: "
                f"expected {self.expected}, got {self.got}")


@dataclass
class LayerReport:
    """The RTL run of one layer against the engine."""

    layer: str
    op: str
    outputs: int            #: output values compared
    mismatches: int
    checker_mismatches: int  #: output beats the cocotb checker found different, padding lanes included
    cycles: int             #: RTL cycles, reset release to last output, summed over the layer's jobs
    tiles: int
    schedule_cycles: int    #: the same from the cycle schedule (accel.compile.schedule)
    cycles_exact: bool      #: every tile's first-in/last-out cycle equals the schedule's
    run_s: float            #: wall-clock seconds the design ran (reset release to done), summed over jobs
    wall_s: float           #: the same with loading memories and reading back
    first: list[Mismatch] = field(default_factory=list)
    tile_cycles: list[tuple[int, int, int]] = field(default_factory=list)  #: (depth, first_in, last_out)
    waves: str | None = None  #: waveform file of the run (with ``waves``)

    @property
    def ok(self) -> bool:
        return self.mismatches == 0 and self.checker_mismatches == 0

    def to_dict(self) -> dict:
        d = asdict(self)
        d["first"] = [str(m) for m in self.first]
        d.pop("tile_cycles")
        if d["waves"] is None:
            d.pop("waves")
        return d


def model_inputs(model: Model, data: str | os.PathLike | None, images: int, seed: int = 0) -> np.ndarray:
    """Integer inputs for ``model``: ``images`` test images of a bundled/.npz data set quantized with the
    input exponent, or (``data=None`` and no bundled set fits) seeded random integers of the input type."""
    from ..data import bundled_for_shape, load_dataset
    from ..datapath import quantize_input

    info = model.tensors[model.inputs[0]]
    name = data if data is not None else bundled_for_shape(info.shape)
    lo, hi = info.range
    if name is None:
        rng = np.random.default_rng(seed)
        return rng.integers(lo, hi + 1, (images, *info.shape)).astype(info.dtype)
    ds = load_dataset(name, "test")
    x = ds.x[:images]
    if tuple(x.shape[1:]) != tuple(info.shape):
        raise DataError(f"{name}: images of shape {tuple(x.shape[1:])} do not fit the model input "
                        f"{info.name!r} of shape {info.shape}")
    return quantize_input(x, info.exponent or 0, lo, hi).astype(info.dtype)


def _engine_problem_outputs(model, layer, out: np.ndarray, problems) -> list[np.ndarray]:
    """The engine's layer output cut into the (P, N_g) outputs of each product."""
    out = np.asarray(out, dtype=np.int64)
    if layer.op == "linear":
        flat = out.reshape(out.shape[0], -1)
    else:
        b, n, oh, ow = out.shape
        flat = out.transpose(0, 2, 3, 1).reshape(b * oh * ow, n)
    return [flat[:, p.channels] for p in problems]


def _expected_problem_results(model, layer, out: np.ndarray, problems) -> list[np.ndarray]:
    """What the array must emit per product: the engine's outputs, or for a multipoint product (raw
    accumulators of its channels and extra columns, which the engine never shows) the contract's."""
    engine = _engine_problem_outputs(model, layer, out, problems)
    return [e if p.epilogue is None else p.expected(model.config) for p, e in zip(problems, engine)]


def _pixel(model, layer, p_index: int) -> tuple[int, ...]:
    shape = model.tensors[layer.output].shape
    if layer.op == "linear":
        return (int(p_index),)
    oh, ow = shape[1], shape[2]
    return (int(p_index // (oh * ow)), int(p_index // ow % oh), int(p_index % ow))


def verify_model(model: Model, inputs: np.ndarray, *, layers: list[str] | None = None, sim: str = "verilator",
                 waves: bool = False, cache: str | os.PathLike | None = None,
                 work: str | os.PathLike | None = None, max_report: int = 5) -> list[LayerReport]:
    """Run the conv/linear layers of ``model`` on the RTL with ``inputs``; compare with the engine.

    Parameters
    ----------
    model : Model
    inputs : ndarray
        Integer inputs (batch first) of the model's input type.
    layers : list of str, optional
        Layer names to run (default: every conv2d and linear layer).
    sim : {"verilator", "icarus"}
    waves : bool
        Record waveforms (FST under Icarus, VCD under Verilator) in the run folder.
    cache : path, optional
        Cache folder for simulator builds and run folders (default :func:`accel.rtlsim.build.cache_dir`).
    work : path, optional
        Folder to hold this run's private folder (kept afterwards; default: the cache's ``runs/``).

    Raises
    ------
    ModelError
        A named layer does not exist or does not run on the MAC array.
    """
    from ..engine import run_model

    mac = [layer for layer in model.layers if layer.op in MAC_OPS]
    if layers:
        by_name = {layer.name: layer for layer in model.layers}
        for name in layers:
            if name not in by_name:
                raise ModelError(f"layer {name!r}: no such layer; layers on the array: "
                                 f"{', '.join(lay.name for lay in mac)}")
            if by_name[name].op not in MAC_OPS:
                raise ModelError(f"layer {name!r} ({by_name[name].op}): only {', '.join(MAC_OPS)} layers "
                                 f"run on the MAC array")
        mac = [by_name[name] for name in layers]
    if not mac:
        raise ModelError("model: no conv2d or linear layer to run on the MAC array")
    tensors = run_model(model, inputs, return_all=True)
    tensors.update({name: inputs for name in model.inputs})
    build = build_simulation(model.config, sim, waves=waves, cache=cache)
    jobs, per_layer = [], []
    for layer in mac:
        problems = lower_layer(model, layer, tensors[layer.inputs[0]])
        plan = plan_tiles(problems, model.config)
        expected = _expected_problem_results(model, layer, tensors[layer.output], problems)
        jobs.append((layer.name, plan, expected))
        per_layer.append((layer, plan, expected, _engine_problem_outputs(model, layer, tensors[layer.output],
                                                                         problems)))
    results = run_jobs(build, jobs, work=work)
    reports = []
    cursor = 0
    for layer, plan, expected, engine_out in per_layer:
        # Job results of this layer: consecutive, covering its tiles.
        mine, tiles = [], 0
        while tiles < len(plan.tiles):
            mine.append(results[cursor])
            tiles += len(results[cursor].plan.tiles)
            cursor += 1
        got = _merge(plan, mine)
        n_out, n_bad, first = 0, 0, []
        for prob, exp, res, eng in zip(plan.problems, expected, got, engine_out):
            # A multipoint product: the array's raw columns against the contract, then the RTL's columns
            # through the vector unit's epilogue against the engine's layer output.
            pairs = [(exp, res)] if prob.epilogue is None else [(exp, res), (eng, prob.outputs(model.config, res))]
            for want, have in pairs:
                diff = np.argwhere(have != want)
                n_out += want.size
                n_bad += len(diff)
                for p, c in diff[:max(0, max_report - len(first))]:
                    first.append(Mismatch(layer.name, _channel_name(prob, int(c)), _pixel(model, layer, p),
                                          int(want[p, c]), int(have[p, c])))
        exact = all([(c.first_in, c.last_out) for c in r.tile_cycles]
                    == [(c.first_in, c.last_out) for c in r.expected_cycles] for r in mine)
        tile_cycles = [(t.depth, c.first_in, c.last_out) for r in mine for t, c in zip(r.plan.tiles, r.tile_cycles)]
        reports.append(LayerReport(
            layer.name, layer.op, n_out, n_bad, sum(r.checker_mismatches for r in mine),
            sum(r.total_cycles for r in mine), len(plan.tiles),
            sum(r.expected_cycles[-1].last_out + 1 for r in mine), exact, sum(r.run_s for r in mine),
            sum(r.wall_s for r in mine), first,
            tile_cycles, str(mine[0].waves) if mine[0].waves else None))
    return reports


def _channel_name(prob, column: int) -> int | str:
    """The layer channel of an array column, or "point P of channel N" for a multipoint extra column."""
    if prob.epilogue is None or column < prob.epilogue.channels:
        return prob.channels.start + column
    p = column - prob.epilogue.channels
    return f"point {p} of channel {prob.channels.start + int(prob.epilogue.point_channel[p])}"


def _merge(plan, job_results) -> list[np.ndarray]:
    """Per-problem results of a plan from the results of its jobs (each job covers some tiles)."""
    out = [np.zeros((p.pixels, p.channels_out), dtype=np.int64) for p in plan.problems]
    for r in job_results:
        for prob_index, part in enumerate(r.results()):
            touched = {(t.row0, t.col0) for t in r.plan.tiles if t.problem == prob_index}
            for row0, col0 in touched:
                rs = slice(row0, row0 + plan.config.rows)
                cs = slice(col0, col0 + plan.config.cols)
                out[prob_index][rs, cs] = part[rs, cs]
    return out


def write_cycles(reports: list[LayerReport], path: str | os.PathLike, *, config=None, sim: str = "",
                 overwrite: bool = False) -> Path:
    """Write the per-tile cycles (first input to last output) of every layer as JSON (atomically;
    an existing file is replaced only with ``overwrite``)."""
    data = {"simulator": sim, "config": config.to_dict() if config is not None else None,
            "definition": "cycles of a tile = last output beat - first data beat + 1 (cycle 0 = reset release)",
            "layers": [{"layer": r.layer, "op": r.op, "total_cycles": r.cycles, "schedule_cycles": r.schedule_cycles,
                        "cycles_exact": r.cycles_exact,
                        "tiles": [{"depth": d, "first_in": f, "last_out": o, "cycles": o - f + 1}
                                  for d, f, o in r.tile_cycles]} for r in reports]}
    return write_json(path, data, overwrite=overwrite, indent=1)
