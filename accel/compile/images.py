"""Memory images of a tile plan for the core's streams, and the inverse for its output beats.

:class:`CoreLayout` holds the bit layouts of the core's stream payloads
(:mod:`accel.hw.core`) for one configuration, computed once. :func:`pack_job`
turns a plan into the words of the ``lut``/``tile``/``data`` streams;
:func:`pack_outputs` gives the output beats a plan must produce (what the
testbench's checker compares) and :func:`unpack_outputs` turns output beats back
into ``(P, N)`` results. Words travel as ``$readmemh``/``$writememh`` text.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

import numpy as np

from .. import datapath
from ..config import AcceleratorConfig
from ..errors import ModelError
from .tiling import TilePlan

__all__ = ["CoreLayout", "JobImage", "pack_job", "pack_outputs", "unpack_outputs", "field_offsets", "pack_bits",
           "words_to_hex", "hex_to_bits"]

#: ``field name -> (bit offset, element width, element count)`` of a payload layout.
FieldMap = Mapping[str, tuple[int, int, int]]


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


@dataclass(frozen=True)
class CoreLayout:
    """The bit layouts of the core's stream payloads for one configuration (widths without flag bits).

    Build it with :meth:`from_config` (cached per configuration); the packers,
    the harness parameters and the testbench read it instead of re-deriving the
    layouts of :mod:`accel.hw.core`.
    """

    lut_width: int
    tile_width: int
    beat_width: int
    output_width: int
    layer_width: int
    lut_fields: FieldMap
    tile_fields: FieldMap
    beat_fields: FieldMap
    output_fields: FieldMap
    layer_fields: FieldMap

    @property
    def control_width(self) -> int:
        """Width of a control word's payload (LUT and tile beats share it; the kind bit sits above)."""
        return max(self.lut_width, self.tile_width)

    @classmethod
    def from_config(cls, config: AcceleratorConfig) -> CoreLayout:
        return _core_layout(config)


@functools.lru_cache(maxsize=32)
def _core_layout(config: AcceleratorConfig) -> CoreLayout:
    from ..hw.core import beat_layout, layer_layout, lut_layout, output_layout, tile_layout

    layouts = {"lut": lut_layout(config), "tile": tile_layout(config), "beat": beat_layout(config),
               "output": output_layout(config), "layer": layer_layout()}
    return CoreLayout(**{f"{k}_width": v.size for k, v in layouts.items()},
                      **{f"{k}_fields": MappingProxyType(field_offsets(v)) for k, v in layouts.items()})


def pack_bits(n: int, width: int, leaves) -> np.ndarray:
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
    cfg = plan.config
    layout = CoreLayout.from_config(cfg)
    rows, cols, e = cfg.rows, cfg.cols, cfg.lut_entries
    lut_f, tile_f, beat_f = layout.lut_fields, layout.tile_fields, layout.beat_fields
    ctrl_w, beat_w = layout.control_width, layout.beat_width
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
    lut_bits = pack_bits(n_ctrl, ctrl_w, [(lut_f["index"][0], lut_f["index"][1], idx)]
                     + [(lut_f["values"][0] + j * 8, 8, lut_vals[:, j]) for j in range(cols)])
    tile_leaves = [(tile_f["depth"][0], tile_f["depth"][1], depth)]
    for name, vals in (("bias", bias), ("shift", shift), ("mult", mult)):
        if name in tile_f:
            off, w, _ = tile_f[name]
            tile_leaves += [(off + j * w, w, vals[:, j]) for j in range(cols)]
    tile_bits = pack_bits(n_ctrl, ctrl_w, tile_leaves)
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
    data_bits = pack_bits(n_data, beat_w + 1, [(a_off + i * a_w, a_w, acts[:, i]) for i in range(rows)]
                      + [(c_off + j * c_w, c_w, codes[:, j]) for j in range(cols)]
                      + [(beat_w, 1, first_flag)])

    lay_f = layout.layer_fields
    layer_word = pack_bits(1, layout.layer_width, [
        (lay_f["act_signed"][0], 1, [int(first.act_signed)]), (lay_f["raw"][0], 1, [int(first.raw)]),
        (lay_f["lo"][0], lay_f["lo"][1], [first.lo]), (lay_f["hi"][0], lay_f["hi"][1], [first.hi])])
    head_vals = [n_ctrl, n_data, plan.output_beats, len(plan.tiles)]
    head = "".join(f"{v:08x}\n" for v in head_vals).encode() + words_to_hex(
        np.pad(layer_word, ((0, 0), (0, 32 - layer_word.shape[1]))))
    return JobImage(head=head, control=words_to_hex(ctrl_bits), data=words_to_hex(data_bits),
                    n_control=n_ctrl, n_data=n_data, n_out=plan.output_beats, n_tiles=len(plan.tiles),
                    control_width=ctrl_w + 1, data_width=beat_w + 1, out_width=layout.output_width)


def _padded_contract(plan: TilePlan, prob_index: int) -> np.ndarray:
    """The contract's results of a problem padded to whole tiles, as the core computes them:
    padded pixels have zero activations; padded channels zero codes, bias, shift and multiplier,
    and a zero LUT row (per-channel tables) or the shared table."""
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


def pack_outputs(plan: TilePlan, expected: list[np.ndarray]) -> np.ndarray:
    """The output beats (bit matrix) the core must return for ``plan``: the inverse of :func:`unpack_outputs`.

    ``expected`` (per problem, (P, N)) fills the real lanes; the contract fills the
    padding lanes of partial tiles, so that every lane is checked.
    """
    cfg = plan.config
    layout = CoreLayout.from_config(cfg)
    v_off, v_w, _ = layout.output_fields["values"]
    r_off, r_w, _ = layout.output_fields["row"]
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
    return pack_bits(n, layout.output_width, leaves)


def unpack_outputs(plan: TilePlan, out_bits: np.ndarray) -> list[np.ndarray]:
    """Per problem, the (P, N) results from the output beats (bit matrix, one row per beat).

    Each tile returns ``rows`` beats, bottom row first; ``row`` in the payload says which.
    """
    cfg = plan.config
    rows, cols = cfg.rows, cfg.cols
    f = CoreLayout.from_config(cfg).output_fields
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
