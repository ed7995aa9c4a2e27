"""A bus-ready top level: the GEMM core behind AXI4-Stream in/out and an AXI4-Lite register block.

Protocol (docs/RTL.md has the diagram and the register map):

* ``s_axis`` carries frames of ``bus_bits``-bit words. A frame starts with a header word
  (bits ``[31:28]`` opcode, ``[15:0]`` count): opcode :data:`OP_LUT` is followed by ``count``
  LUT beats; opcode :data:`OP_TILE` by one tile beat and then ``depth`` data beats (``depth``
  is the tile beat's own field). Each beat is the core's payload (:mod:`accel.hw.core`
  layouts) split into ``ceil(width / bus_bits)`` words, least significant word first.
  ``tlast`` on input is not used: the header says how long a frame is.
* ``m_axis`` returns every output row of the core (its ``values``: ``cols`` signed
  ``acc_bits``-bit lanes) as ``ceil(cols * acc_bits / bus_bits)`` words, least significant
  first, rows ``rows - 1`` down to 0 per tile; ``tlast`` marks the last word of a tile.
  An output FIFO of ``out_fifo_rows`` rows absorbs back-pressure: a tile enters the core
  only when the FIFO has room reserved for all of its rows, so no output is ever lost,
  whatever ``tready`` does.
* ``s_axil`` (AXI4-Lite, 32-bit data) holds the layer settings, the number of tiles of a
  job, start/done/busy and cycle counters (:data:`REGISTERS`). Input words are accepted only
  while a job runs (after ``START``, until its last tile has left ``m_axis``).
"""

from __future__ import annotations

import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig
from ..errors import ConfigError
from .core import GemmCore, beat_layout, layer_layout, lut_layout, output_layout, tile_layout
from .params import DEPTH_BITS, check_buildable, silenced_on_error

__all__ = ["AxiTop", "AXI_TOP_NAME", "BUS_BITS", "OP_LUT", "OP_TILE", "REGISTERS", "ID_VALUE", "words_per_beat"]

#: Module name of the exported AXI top level.
AXI_TOP_NAME = "accel_axi_top"
#: Stream data widths the top level builds.
BUS_BITS = (32, 64)
#: Header opcodes (bits [31:28] of a frame's first word).
OP_LUT = 0x1
OP_TILE = 0x2
#: Value of the read-only ID register ("ACC", version 1).
ID_VALUE = 0x41434301
#: AXI4-Lite register map: name -> (byte offset, access, meaning).
REGISTERS = {
    "ID": (0x00, "RO", "0x41434301 ('ACC', version 1)"),
    "ARRAY": (0x04, "RO", "rows [15:0], cols [31:16]"),
    "WIDTHS": (0x08, "RO", "weight_bits [7:0], act_bits [15:8], acc_bits [23:16], bus_bits [31:24]"),
    "CTRL": (0x0C, "WO", "bit 0 START: clear the counters and run a job of TILES tiles (ignored while busy)"),
    "STATUS": (0x10, "RO", "bit 0 busy (a job runs), bit 1 done (sticky until START), bit 2 header error "
                           "(sticky until START), bit 3 core busy"),
    "LAYER": (0x14, "RW", "bit 0 act_signed, bit 1 raw (accumulators out, no requantization)"),
    "CLAMP_LO": (0x18, "RW", "lower clamp bound (signed 10 bits, read sign-extended; reset -128)"),
    "CLAMP_HI": (0x1C, "RW", "upper clamp bound (signed 10 bits, read sign-extended; reset 127)"),
    "TILES": (0x20, "RW", "tiles of the job; done when that many tiles have left m_axis"),
    "CYCLES": (0x24, "RO", "cycles from START to done"),
    "OUT_STALLS": (0x28, "RO", "cycles of the job with m_axis_tvalid high and m_axis_tready low"),
    "TILES_DONE": (0x2C, "RO", "tiles whose last output word has left m_axis"),
}
_ADDR_BITS = 6
_HEADER, _LUT, _TILE, _DATA = range(4)


def words_per_beat(width: int, bus_bits: int) -> int:
    """Stream words that carry one ``width``-bit payload."""
    return -(-width // bus_bits)


class AxiTop(wiring.Component):
    """:class:`~accel.hw.core.GemmCore` with AXI4-Stream input/output and AXI4-Lite control.

    Throughput is set by the bus: a data beat of the 8x8 default (96 bits) takes 3 words at
    32 bits, 2 at 64; the core itself takes one beat per cycle. Cycles of a job are counted
    in ``CYCLES``; the core's own timing (:class:`~accel.hw.timing.CoreTiming`) is unchanged
    inside.

    Parameters
    ----------
    config : AcceleratorConfig
        The core's configuration.
    bus_bits : {32, 64}
        Width of ``s_axis_tdata`` and ``m_axis_tdata``.
    out_fifo_rows : int, optional
        Output rows the FIFO holds (default ``2 * rows``; at least ``rows``).

    Members
    -------
    s_axis_tdata, s_axis_tvalid, s_axis_tready, s_axis_tlast
        Input stream (frames, see the module docstring).
    m_axis_tdata, m_axis_tvalid, m_axis_tready, m_axis_tlast
        Output stream; ``tlast`` on the last word of each tile.
    s_axil_*
        AXI4-Lite slave (``awaddr``/``araddr`` 6 bits, 32-bit data, ``wstrb`` honoured,
        responses always OKAY; unknown addresses read 0 and ignore writes).
    irq : Out(1)
        The job is done (``STATUS.done``).
    """

    def __init__(self, config: AcceleratorConfig, *, bus_bits: int = 32, out_fifo_rows: int | None = None,
                 dsp: str | None = None):
        with silenced_on_error(self):
            check_buildable(config)
            if bus_bits not in BUS_BITS:
                raise ConfigError(f"bus_bits: the AXI top builds {' or '.join(map(str, BUS_BITS))}-bit "
                                  f"streams, got {bus_bits!r}")
            rows = config.rows
            fifo_rows = 2 * rows if out_fifo_rows is None else operator.index(out_fifo_rows)
            if fifo_rows < rows:
                raise ConfigError(f"out_fifo_rows: must hold one tile ({rows} rows), got {fifo_rows}")
        self._config = config
        self._dsp = dsp
        self._bus_bits = bus_bits
        self._fifo_rows = fifo_rows
        w = bus_bits
        super().__init__({
            "s_axis_tdata": In(w), "s_axis_tvalid": In(1), "s_axis_tready": Out(1), "s_axis_tlast": In(1),
            "m_axis_tdata": Out(w), "m_axis_tvalid": Out(1), "m_axis_tready": In(1), "m_axis_tlast": Out(1),
            "s_axil_awaddr": In(_ADDR_BITS), "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
            "s_axil_wdata": In(32), "s_axil_wstrb": In(4), "s_axil_wvalid": In(1), "s_axil_wready": Out(1),
            "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
            "s_axil_araddr": In(_ADDR_BITS), "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
            "s_axil_rdata": Out(32), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1), "s_axil_rready": In(1),
            "irq": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def bus_bits(self) -> int:
        return self._bus_bits

    @property
    def out_fifo_rows(self) -> int:
        return self._fifo_rows

    def beat_words(self) -> dict[str, int]:
        """Stream words per beat: ``lut``, ``tile``, ``data`` (input) and ``out`` (the values of one output row)."""
        cfg, w = self._config, self._bus_bits
        return {"lut": words_per_beat(lut_layout(cfg).size, w), "tile": words_per_beat(tile_layout(cfg).size, w),
                "data": words_per_beat(beat_layout(cfg).size, w),
                "out": words_per_beat(output_layout(cfg)["values"].shape.size, w)}

    def elaborate(self, platform):
        m = Module()
        cfg, w = self._config, self._bus_bits
        core = m.submodules.core = GemmCore(cfg, dsp=self._dsp)
        words = self.beat_words()
        running = Signal()
        done = Signal()
        header_error = Signal()

        # --- AXI4-Lite registers -------------------------------------------------------------
        layer_flags = Signal(2)
        clamp_bits = layer_layout()["lo"].shape.width
        clamp_lo = Signal(signed(clamp_bits), init=-128)
        clamp_hi = Signal(signed(clamp_bits), init=127)
        tiles = Signal(32)
        cycles = Signal(32)
        out_stalls = Signal(32)
        tiles_done = Signal(32)
        start = Signal()
        writable = {"LAYER": layer_flags, "CLAMP_LO": clamp_lo, "CLAMP_HI": clamp_hi, "TILES": tiles}
        status = Cat(running, done, header_error, core.busy)
        readable = {
            "ID": Const(ID_VALUE, 32), "ARRAY": Const(cfg.rows | cfg.cols << 16, 32),
            "WIDTHS": Const(cfg.weight_bits | cfg.act_bits << 8 | cfg.acc_bits << 16 | w << 24, 32),
            "STATUS": status, "CYCLES": cycles, "OUT_STALLS": out_stalls, "TILES_DONE": tiles_done,
            **writable}
        self._axil(m, writable, readable, start)
        m.d.comb += [core.layer.act_signed.eq(layer_flags[0]), core.layer.raw.eq(layer_flags[1]),
                     core.layer.lo.eq(clamp_lo), core.layer.hi.eq(clamp_hi), self.irq.eq(done)]

        # --- Output: FIFO with space reserved per tile, serialized onto m_axis ---------------
        out_w = output_layout(cfg).size
        rows = cfg.rows
        out_fifo = m.submodules.out_fifo = fifo.SyncFIFOBuffered(width=out_w, depth=self._fifo_rows)
        m.d.comb += [out_fifo.w_data.eq(core.out.payload.as_value()), out_fifo.w_en.eq(core.out.valid)]
        n_out = words["out"]
        out_word = Signal(range(max(n_out, 2)))
        values = output_layout(cfg)["values"]  # sent; `row` is not (rows come in a fixed order)
        padded = Cat(out_fifo.r_data[values.offset:values.offset + values.shape.size],
                     Const(0, n_out * w - values.shape.size))
        row_bits = output_layout(cfg)["row"]
        row_of_word = out_fifo.r_data[row_bits.offset:row_bits.offset + row_bits.shape.width]
        last_word = out_word == n_out - 1
        out_fire = self.m_axis_tvalid & self.m_axis_tready
        row_sent = out_fire & last_word
        tile_sent = row_sent & (row_of_word == 0)
        m.d.comb += [self.m_axis_tvalid.eq(out_fifo.r_rdy),
                     self.m_axis_tdata.eq(padded.word_select(out_word, w)),
                     self.m_axis_tlast.eq(last_word & (row_of_word == 0)),
                     out_fifo.r_en.eq(row_sent)]
        with m.If(out_fire):
            m.d.sync += out_word.eq(Mux(last_word, 0, out_word + 1))
        # Rows promised to the FIFO: those of every tile let into the core, less those sent.
        reserved = Signal(range(self._fifo_rows + 1))
        room = Signal(init=1)  # a register: reserved <= fifo_rows - rows, after this cycle's updates
        tile_fire = core.tile.valid & core.tile.ready
        reserved_next = reserved + Mux(tile_fire, rows, 0) - row_sent
        m.d.sync += [reserved.eq(reserved_next), room.eq(reserved_next <= self._fifo_rows - rows)]

        # --- Input: header, then beats assembled from words ----------------------------------
        max_words = max(words["lut"], words["tile"], words["data"])
        state = Signal(range(4))
        word_idx = Signal(range(max(max_words, 2)))
        left = Signal(DEPTH_BITS + 1)  # beats left in the frame
        slots = [Signal(w, name=f"slot{i}") for i in range(max_words)]
        # The beat with the current word in its slot: what is handed over when the word completes it.
        merged = Cat(*[Mux(word_idx == i, self.s_axis_tdata, slots[i]) for i in range(max_words)])
        beat = Signal(max_words * w)
        pending = Signal()  # `beat` waits for the core
        pending_kind = Signal(range(4))
        n_words = Mux(state == _LUT, words["lut"], Mux(state == _TILE, words["tile"], words["data"]))
        final = word_idx == n_words - 1
        core_fire = Signal()
        m.d.comb += [
            core.lut.valid.eq(pending & (pending_kind == _LUT)),
            core.tile.valid.eq(pending & (pending_kind == _TILE) & room),
            core.data.valid.eq(pending & (pending_kind == _DATA)),
            core.lut.payload.eq(beat[:lut_layout(cfg).size]),
            core.tile.payload.eq(beat[:tile_layout(cfg).size]),
            core.data.payload.eq(beat[:beat_layout(cfg).size]),
            core_fire.eq((core.lut.valid & core.lut.ready) | tile_fire | (core.data.valid & core.data.ready)),
            self.s_axis_tready.eq(running & ((state == _HEADER) | ~final | ~pending | core_fire)),
        ]
        in_fire = self.s_axis_tvalid & self.s_axis_tready
        completes = Signal()
        m.d.comb += completes.eq(in_fire & (state != _HEADER) & final)
        with m.If(completes):
            m.d.sync += [beat.eq(merged), pending.eq(1), pending_kind.eq(state), word_idx.eq(0)]
        with m.Elif(core_fire):
            m.d.sync += pending.eq(0)
        # A word that does not complete a beat is taken whenever the stream runs (tready does not wait for
        # the core then): its enables are written without the handover logic (core_fire, pending) that
        # only the final word needs, which kept the word slots' 300 enables behind the core's handshake.
        word_taken = Signal()
        m.d.comb += word_taken.eq(self.s_axis_tvalid & running & (state != _HEADER) & ~final)
        with m.If(word_taken):
            m.d.sync += word_idx.eq(word_idx + 1)
            for i, slot in enumerate(slots):
                with m.If(word_idx == i):
                    m.d.sync += slot.eq(self.s_axis_tdata)
        header_op = self.s_axis_tdata[28:32]
        header_count = self.s_axis_tdata[:16]
        depth = merged[:DEPTH_BITS]
        with m.Switch(state):
            with m.Case(_HEADER):
                with m.If(in_fire):
                    with m.If(header_op == OP_LUT):
                        with m.If(header_count != 0):
                            m.d.sync += [state.eq(_LUT), left.eq(header_count)]
                    with m.Elif(header_op == OP_TILE):
                        m.d.sync += state.eq(_TILE)
                    with m.Else():
                        m.d.sync += header_error.eq(1)
            with m.Case(_LUT):
                with m.If(completes):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.d.sync += state.eq(_HEADER)
            with m.Case(_TILE):
                with m.If(completes):  # depth 0 means 2**16 beats, as in the core
                    m.d.sync += [state.eq(_DATA), left.eq(Mux(depth == 0, 1 << DEPTH_BITS, depth))]
            with m.Case(_DATA):
                with m.If(completes):
                    m.d.sync += left.eq(left - 1)
                    with m.If(left == 1):
                        m.d.sync += state.eq(_HEADER)

        # --- Job control and counters --------------------------------------------------------
        # Tiles still to send, and whether that is one, as registers: no counter compare lies in
        # front of `running` (which gates the input stream).
        tiles_left = Signal(32)
        one_left = Signal()
        with m.If(start & ~running):
            m.d.sync += [cycles.eq(0), out_stalls.eq(0), tiles_done.eq(0), header_error.eq(0),
                         running.eq(tiles != 0), done.eq(tiles == 0), tiles_left.eq(tiles), one_left.eq(tiles == 1)]
        with m.Elif(running):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(self.m_axis_tvalid & ~self.m_axis_tready):
                m.d.sync += out_stalls.eq(out_stalls + 1)
            with m.If(tile_sent):
                m.d.sync += [tiles_done.eq(tiles_done + 1), tiles_left.eq(tiles_left - 1),
                             one_left.eq(tiles_left == 2)]
                with m.If(one_left):
                    m.d.sync += [running.eq(0), done.eq(1)]
        return m

    def _axil(self, m, writable, readable, start):
        """AXI4-Lite slave: a write takes address and data together, a read answers the cycle after."""
        offsets = {name: REGISTERS[name][0] >> 2 for name in REGISTERS}
        bvalid, rvalid = Signal(), Signal()
        rdata = Signal(32)
        take_write = Signal()
        m.d.comb += [
            take_write.eq(self.s_axil_awvalid & self.s_axil_wvalid & ~bvalid),
            self.s_axil_awready.eq(take_write), self.s_axil_wready.eq(take_write),
            self.s_axil_bvalid.eq(bvalid), self.s_axil_bresp.eq(0),
            self.s_axil_arready.eq(~rvalid),
            self.s_axil_rvalid.eq(rvalid), self.s_axil_rdata.eq(rdata), self.s_axil_rresp.eq(0),
        ]
        with m.If(take_write):
            m.d.sync += bvalid.eq(1)
        with m.Elif(self.s_axil_bready):
            m.d.sync += bvalid.eq(0)
        word = self.s_axil_awaddr[2:]
        strb, wdata = self.s_axil_wstrb, self.s_axil_wdata
        m.d.comb += start.eq(take_write & (word == offsets["CTRL"]) & strb[0] & wdata[0])
        for name, reg in writable.items():
            width = len(reg)
            merged = Cat(*[Mux(strb[b], wdata[8 * b:8 * b + 8], reg[8 * b:8 * b + 8]) for b in range(4)])
            with m.If(take_write & (word == offsets[name])):
                m.d.sync += reg.eq(merged[:width])
        with m.If(self.s_axil_arvalid & ~rvalid):
            m.d.sync += [rvalid.eq(1), rdata.eq(0)]
            with m.Switch(self.s_axil_araddr[2:]):
                for name, value in readable.items():
                    with m.Case(offsets[name]):
                        m.d.sync += rdata.eq(value)  # signed registers read sign-extended
        with m.Elif(self.s_axil_rready):
            m.d.sync += rvalid.eq(0)
