"""Tiling of matrix products onto the ``rows x cols`` array, and the memory images that feed it.

A :class:`TilePlan` cuts each :class:`~accel.compile.lower.GemmProblem` into
tiles of ``rows`` pixels by ``cols`` channels (the whole reduction streams
through the array), column blocks outer and pixel blocks inner so that a
per-channel LUT is loaded once per column block. :func:`pack_job` turns a plan
into the words of the core's ``lut``/``tile``/``data`` streams (bit layouts
from :mod:`accel.hw.core`); :func:`unpack_outputs` turns output beats back into
``(P, N)`` results. The testbench, the CLI and the performance model share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import AcceleratorConfig, LutScope
from ..errors import ModelError
from ..hw.params import DEPTH_BITS
from .lower import GemmProblem

__all__ = ["Tile", "TilePlan", "JobImage", "plan_tiles", "split_plan", "pack_job", "unpack_outputs",
           "field_offsets", "words_to_hex", "hex_to_bits"]


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
        A reduction longer than the core's tile depth counter (``2**16 - 1``), or an empty one.
    """
    plan = TilePlan(config, list(problems))
    rows, cols = config.rows, config.cols
    loaded = None  # (problem, col0) whose LUT rows are in the decoders, or "shared" table identity
    for p, prob in enumerate(problems):
        if not 1 <= prob.depth < (1 << DEPTH_BITS):
            raise ModelError(f"layer {prob.name!r}: reduction of {prob.depth} does not fit a tile "
                             f"(1..{(1 << DEPTH_BITS) - 1})")
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


def field_offsets(layout, prefix: str = "") -> dict[str, tuple[int, int, int]]:
    """``name -> (offset, element width, count)`` of the leaves of an Amaranth data layout."""
    from amaranth.hdl import Shape
    from amaranth.lib import data

    out: dict[str, tuple[int, int, int]] = {}
    for name, fld in layout:
        shape = fld.shape
        key = f"{prefix}{name}"
        if isinstance(shape, data.ArrayLayout):
            out[key] = (fld.offset, Shape.cast(shape.elem_shape).width, shape.length)
        elif isinstance(shape, data.StructLayout):
            for sub, (off, w, c) in field_offsets(shape, f"{key}.").items():
                out[sub] = (fld.offset + off, w, c)
        else:
            out[key] = (fld.offset, Shape.cast(shape).width, 1)
    return out


def _bits(n: int, width: int, leaves) -> np.ndarray:
    """(n, width) bit matrix, LSB first, from (offset, bits, values[n]) leaves (two's complement)."""
    bits = np.zeros((n, width), dtype=np.uint8)
    for offset, w, values in leaves:
        v = np.asarray(values, dtype=np.int64).reshape(n)
        bits[:, offset:offset + w] = (v[:, None] >> np.arange(w, dtype=np.int64)) & 1
    return bits


def words_to_hex(bits: np.ndarray) -> bytes:
    """``$readmemh`` text (one word per line, most significant digit first) of a bit matrix."""
    n, width = bits.shape
    digits = max(1, -(-width // 4))
    padded = np.zeros((n, digits * 4), dtype=np.uint8)
    padded[:, :width] = bits
    nibbles = padded.reshape(n, digits, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nibbles[:, ::-1]]
    lines = np.concatenate([chars, np.full((n, 1), ord("\n"), dtype=np.uint8)], axis=1)
    return lines.tobytes()


def hex_to_bits(text: str | bytes, width: int) -> np.ndarray:
    """Bit matrix (n, width), LSB first, of ``$writememh`` text (``//`` comments and x/z refused)."""
    if isinstance(text, bytes):
        text = text.decode("ascii")
    lines = [ln.strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("//")]
    digits = max(1, -(-width // 4))
    if not lines:
        return np.zeros((0, width), dtype=np.uint8)
    buf = np.frombuffer("".join(ln.rjust(digits, "0")[-digits:] for ln in lines).encode("ascii"),
                        dtype=np.uint8).reshape(len(lines), digits)
    table = np.full(256, 255, dtype=np.uint8)
    for i, ch in enumerate(b"0123456789abcdef"):
        table[ch] = i
        table[ord(chr(ch).upper())] = i
    nib = table[buf]
    if (nib == 255).any():
        raise ValueError("output words hold x/z or non-hex digits")
    bits = (nib[:, ::-1, None] >> np.arange(4, dtype=np.uint8)) & 1
    return bits.reshape(len(lines), digits * 4)[:, :width]


@dataclass
class JobImage:
    """The harness memory images of one job (one run from reset to ``done``)."""

    head: bytes      #: counts and layer settings
    control: bytes   #: LUT and tile beats, each with a kind bit on top (1 = tile)
    data: bytes      #: data beats, each with a first-of-tile bit on top
    n_control: int
    n_data: int
    n_out: int
    n_tiles: int
    control_width: int
    data_width: int
    out_width: int


def pack_job(plan: TilePlan) -> JobImage:
    """Memory images for the harness from a plan (one job: every tile of ``plan``)."""
    from ..hw.core import beat_layout, layer_layout, lut_layout, output_layout, tile_layout

    cfg = plan.config
    rows, cols, e = cfg.rows, cfg.cols, cfg.lut_entries
    lut_f, tile_f, beat_f = field_offsets(lut_layout(cfg)), field_offsets(tile_layout(cfg)), \
        field_offsets(beat_layout(cfg))
    lut_w, tile_w, beat_w = lut_layout(cfg).size, tile_layout(cfg).size, beat_layout(cfg).size
    ctrl_w = max(lut_w, tile_w)
    probs = plan.problems
    first = probs[plan.tiles[0].problem]
    if any((p.lo, p.hi, p.raw, p.act_signed) != (first.lo, first.hi, first.raw, first.act_signed)
           for p in probs):
        raise ModelError(f"layer {first.name!r}: the problems of one job must share lo, hi, raw and "
                         f"activation signedness")

    # Control stream: [LUT beats] tile beat, ...
    order = []
    for t in plan.tiles:
        if t.lut_load:
            for index in range(e):
                order.append((0, t, index))
        order.append((1, t, None))
    n_ctrl = len(order)
    ctrl_leaves: list = []
    kind = np.array([k for k, _, _ in order], dtype=np.int64)
    ctrl_leaves.append((ctrl_w, 1, kind))
    # LUT payload (kind 0) and tile payload (kind 1) share the low bits; build both then select.
    idx = np.array([i if k == 0 else 0 for k, _, i in order], dtype=np.int64)
    lut_vals = np.zeros((n_ctrl, cols), dtype=np.int64)
    depth = np.zeros(n_ctrl, dtype=np.int64)
    bias = np.zeros((n_ctrl, cols), dtype=np.int64)
    shift = np.zeros((n_ctrl, cols), dtype=np.int64)
    mult = np.zeros((n_ctrl, cols), dtype=np.int64)
    for r, (k, t, i) in enumerate(order):
        p = probs[t.problem]
        chans = np.arange(t.col0, min(t.col0 + cols, p.channels_out))
        m = len(chans)
        if k == 0:
            # A shared table goes to every column (padding columns included); per-channel
            # tables to their columns, zeros to the padding columns of the block.
            if p.lut.shape[0] > 1:
                lut_vals[r, :m] = p.lut[chans, i]
            else:
                lut_vals[r, :] = p.lut[0, i]
        else:
            depth[r] = t.depth
            bias[r, :m] = p.bias[chans]
            shift[r, :m] = p.shift[chans]
            if p.mult is not None:
                mult[r, :m] = p.mult[chans]
    is_lut = kind == 0
    lut_bits = _bits(n_ctrl, ctrl_w, [(lut_f["index"][0], lut_f["index"][1], idx)]
                     + [(lut_f["values"][0] + j * 8, 8, lut_vals[:, j]) for j in range(cols)])
    tile_leaves = [(tile_f["depth"][0], tile_f["depth"][1], depth)]
    for name, vals in (("bias", bias), ("shift", shift), ("mult", mult)):
        if name in tile_f:
            off, w, _ = tile_f[name]
            tile_leaves += [(off + j * w, w, vals[:, j]) for j in range(cols)]
    tile_bits = _bits(n_ctrl, ctrl_w, tile_leaves)
    ctrl_bits = np.where(is_lut[:, None], lut_bits, tile_bits)
    ctrl_bits = np.concatenate([ctrl_bits, kind[:, None].astype(np.uint8)], axis=1)

    # Data stream: per tile, depth beats of rows activations and cols codes.
    n_data = plan.data_beats
    act_mask = (1 << cfg.act_bits) - 1
    acts = np.zeros((n_data, rows), dtype=np.int64)
    codes = np.zeros((n_data, cols), dtype=np.int64)
    first_flag = np.zeros(n_data, dtype=np.int64)
    pos = 0
    for t in plan.tiles:
        p = probs[t.problem]
        r1, c1 = min(t.row0 + rows, p.pixels), min(t.col0 + cols, p.channels_out)
        acts[pos:pos + t.depth, :r1 - t.row0] = p.act[t.row0:r1].T & act_mask
        codes[pos:pos + t.depth, :c1 - t.col0] = p.codes[t.col0:c1].T
        first_flag[pos] = 1
        pos += t.depth
    a_off, a_w, _ = beat_f["act"]
    c_off, c_w, _ = beat_f["codes"]
    data_bits = _bits(n_data, beat_w + 1, [(a_off + i * a_w, a_w, acts[:, i]) for i in range(rows)]
                      + [(c_off + j * c_w, c_w, codes[:, j]) for j in range(cols)]
                      + [(beat_w, 1, first_flag)])

    lay_f = field_offsets(layer_layout())
    layer_word = _bits(1, layer_layout().size, [
        (lay_f["act_signed"][0], 1, [int(first.act_signed)]), (lay_f["raw"][0], 1, [int(first.raw)]),
        (lay_f["lo"][0], lay_f["lo"][1], [first.lo]), (lay_f["hi"][0], lay_f["hi"][1], [first.hi])])
    head_vals = [n_ctrl, n_data, plan.output_beats, len(plan.tiles)]
    head = "".join(f"{v:08x}\n" for v in head_vals).encode() + words_to_hex(
        np.pad(layer_word, ((0, 0), (0, 32 - layer_word.shape[1]))))
    return JobImage(head=head, control=words_to_hex(ctrl_bits), data=words_to_hex(data_bits),
                    n_control=n_ctrl, n_data=n_data, n_out=plan.output_beats, n_tiles=len(plan.tiles),
                    control_width=ctrl_w + 1, data_width=beat_w + 1, out_width=output_layout(cfg).size)


def unpack_outputs(plan: TilePlan, out_bits: np.ndarray) -> list[np.ndarray]:
    """Per problem, the (P, N) results from the output beats (bit matrix, one row per beat).

    Each tile returns ``rows`` beats, bottom row first; ``row`` in the payload says which.
    """
    from ..hw.core import output_layout

    cfg = plan.config
    rows, cols = cfg.rows, cfg.cols
    f = field_offsets(output_layout(cfg))
    v_off, v_w, _ = f["values"]
    r_off, r_w, _ = f["row"]
    if out_bits.shape[0] != plan.output_beats:
        raise ValueError(f"expected {plan.output_beats} output beats, got {out_bits.shape[0]}")
    weights = (np.int64(1) << np.arange(v_w, dtype=np.int64))
    values = np.stack([out_bits[:, v_off + j * v_w: v_off + (j + 1) * v_w].astype(np.int64) @ weights
                       for j in range(cols)], axis=1)
    values = np.where(values >= (1 << (v_w - 1)), values - (1 << v_w), values)
    row = out_bits[:, r_off:r_off + r_w].astype(np.int64) @ (np.int64(1) << np.arange(r_w, dtype=np.int64))
    results = [np.zeros((p.pixels, p.channels_out), dtype=np.int64) for p in plan.problems]
    for n, t in enumerate(plan.tiles):
        p = plan.problems[t.problem]
        beats = slice(n * rows, (n + 1) * rows)
        r_idx = t.row0 + row[beats]
        keep = r_idx < p.pixels
        c1 = min(t.col0 + cols, p.channels_out)
        results[t.problem][r_idx[keep], t.col0:c1] = values[beats][keep, :c1 - t.col0]
    return results
