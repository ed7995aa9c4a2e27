"""Byte streams of a tile plan for the AXI top level (:class:`accel.hw.axi_top.AxiTop`), and back.

The AXI top takes the same beats as the core (:func:`~accel.compile.images.pack_job` builds
them), framed: a header word (opcode in bits ``[31:28]``, count in ``[15:0]``) before each run
of LUT beats and before each tile, every beat split into ``bus_bits``-bit words, least
significant first. AXI4-Stream carries words as little-endian bytes, so a frame here is
``bytes``: what a stream source sends and a sink receives.
"""

from __future__ import annotations

import numpy as np

from ..hw.axi_top import OP_LUT, OP_TILE, words_per_beat
from .images import CoreLayout, hex_to_bits, pack_job, pack_outputs
from .tiling import TilePlan

__all__ = ["axi_input_frames", "axi_output_frames", "axi_output_bits", "axi_layer_registers"]


def _beat_bytes(bits: np.ndarray, bus_bits: int) -> list[bytes]:
    """Each row of a bit matrix (LSB first) as whole ``bus_bits``-bit words of little-endian bytes."""
    n, width = bits.shape
    padded = np.zeros((n, words_per_beat(width, bus_bits) * bus_bits), dtype=np.uint8)
    padded[:, :width] = bits
    packed = np.packbits(padded, axis=1, bitorder="little")
    return [row.tobytes() for row in packed]


def _header(op: int, count: int, bus_bits: int) -> bytes:
    return ((op << 28) | count).to_bytes(bus_bits // 8, "little")


def axi_input_frames(plan: TilePlan, bus_bits: int) -> list[bytes]:
    """The input frames of ``plan``: one per run of LUT beats, one per tile (header, tile beat, data beats)."""
    layout = CoreLayout.from_config(plan.config)
    image = pack_job(plan)
    ctrl = hex_to_bits(image.control, image.control_width)
    data = hex_to_bits(image.data, image.data_width)
    luts = _beat_bytes(ctrl[:, :layout.lut_width], bus_bits)
    tile_beats = _beat_bytes(ctrl[:, :layout.tile_width], bus_bits)
    beats = _beat_bytes(data[:, :layout.beat_width], bus_bits)
    frames: list[bytes] = []
    pending_luts: list[bytes] = []
    tiles = iter(plan.tiles)
    pos = 0
    for row, is_tile in enumerate(ctrl[:, -1]):
        if not is_tile:
            pending_luts.append(luts[row])
            continue
        if pending_luts:
            frames.append(_header(OP_LUT, len(pending_luts), bus_bits) + b"".join(pending_luts))
            pending_luts = []
        depth = next(tiles).depth
        frames.append(_header(OP_TILE, 0, bus_bits) + tile_beats[row] + b"".join(beats[pos:pos + depth]))
        pos += depth
    return frames


def _value_bits(plan: TilePlan) -> tuple[int, int]:
    off, w, count = CoreLayout.from_config(plan.config).output_fields["values"]
    return off, w * count


def axi_output_frames(plan: TilePlan, expected: list[np.ndarray], bus_bits: int) -> list[bytes]:
    """The output frames (one per tile, ``tlast`` on its last word) the AXI top must return."""
    off, width = _value_bits(plan)
    rows = _beat_bytes(pack_outputs(plan, expected)[:, off:off + width], bus_bits)
    r = plan.config.rows
    return [b"".join(rows[t * r:(t + 1) * r]) for t in range(len(plan.tiles))]


def axi_output_bits(plan: TilePlan, frames: list[bytes], bus_bits: int) -> np.ndarray:
    """The core's output beats (bit matrix, for :func:`~accel.compile.images.unpack_outputs`) from
    the frames the AXI top returned; the ``row`` field, which the stream does not carry, follows
    from the order (bottom row first)."""
    cfg = plan.config
    layout = CoreLayout.from_config(cfg)
    off, width = _value_bits(plan)
    r_off, r_w, _ = layout.output_fields["row"]
    row_bytes = words_per_beat(width, bus_bits) * bus_bits // 8
    if len(frames) != len(plan.tiles) or any(len(f) != row_bytes * cfg.rows for f in frames):
        raise ValueError(f"expected {len(plan.tiles)} frames of {row_bytes * cfg.rows} bytes, got "
                         f"{[len(f) for f in frames]}")
    raw = np.frombuffer(b"".join(frames), dtype=np.uint8).reshape(-1, row_bytes)
    bits = np.zeros((raw.shape[0], layout.output_width), dtype=np.uint8)
    bits[:, off:off + width] = np.unpackbits(raw, axis=1, bitorder="little")[:, :width]
    row = np.tile(np.arange(cfg.rows)[::-1], len(plan.tiles))
    bits[:, r_off:r_off + r_w] = (row[:, None] >> np.arange(r_w)) & 1
    return bits


def axi_layer_registers(plan: TilePlan) -> dict[str, int]:
    """Values of the AXI top's layer registers (``LAYER``, ``CLAMP_LO``, ``CLAMP_HI``, ``TILES``) for ``plan``."""
    p = plan.problems[plan.tiles[0].problem]
    return {"LAYER": int(p.act_signed) | int(p.raw) << 1, "CLAMP_LO": int(p.lo) & 0xFFFFFFFF,
            "CLAMP_HI": int(p.hi) & 0xFFFFFFFF, "TILES": len(plan.tiles)}
