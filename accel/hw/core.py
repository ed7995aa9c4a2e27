"""The GEMM core: weight decoders, the systolic array and the requantizers behind stream interfaces."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..config import AcceleratorConfig, Overflow, Requant
from .array import SystolicArray
from .decoder import WeightDecoder
from .params import DEPTH_BITS, LUT_VALUE_BITS, check_buildable, shift_bits, silenced_on_error
from .requant import CLAMP_BITS, Requantizer
from .timing import CoreTiming

__all__ = ["lut_layout", "tile_layout", "beat_layout", "output_layout", "layer_layout", "GemmCore"]


def lut_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One LUT beat: entry ``index`` of every column's decoder gets ``values[column]``."""
    return data.StructLayout({"index": unsigned(config.weight_bits),
                              "values": data.ArrayLayout(signed(LUT_VALUE_BITS), config.cols)})


def tile_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One tile beat: reduction ``depth`` (beats that follow) and per-column bias, shift, multiplier."""
    fields = {"depth": unsigned(DEPTH_BITS),
              "bias": data.ArrayLayout(signed(config.acc_bits), config.cols),
              "shift": data.ArrayLayout(unsigned(shift_bits(config)), config.cols)}
    if config.requant is Requant.MULTIPLY_SHIFT:
        fields["mult"] = data.ArrayLayout(unsigned(config.mult_bits), config.cols)
    return data.StructLayout(fields)


def beat_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One reduction step ``k`` of a tile: an activation per row and a weight code per column."""
    return data.StructLayout({"act": data.ArrayLayout(unsigned(config.act_bits), config.rows),
                              "codes": data.ArrayLayout(unsigned(config.weight_bits), config.cols)})


def output_layout(config: AcceleratorConfig) -> data.StructLayout:
    """One output beat: the requantized (or raw) values of array row ``row``, one per column."""
    return data.StructLayout({"values": data.ArrayLayout(signed(config.acc_bits), config.cols),
                              "row": unsigned(max(1, (config.rows - 1).bit_length()))})


def layer_layout() -> data.StructLayout:
    """Settings that hold for a whole layer: activation signedness, raw output, clamp bounds."""
    return data.StructLayout({"act_signed": 1, "raw": 1, "lo": signed(CLAMP_BITS), "hi": signed(CLAMP_BITS)})


class GemmCore(wiring.Component):
    """Tiles of ``out[i, j] = requant(bias[j] + sum_k T_j[codes[k, j]] * act[k, i])`` on the array.

    A tile is one ``tile`` beat (reduction ``depth`` and the per-column bias,
    shift, multiplier) followed by ``depth`` ``data`` beats (``act`` of every
    row, ``codes`` of every column, ``k`` ascending). It returns ``rows`` beats
    on ``out``, bottom row first (``row = rows - 1, ..., 0``). ``lut`` beats load
    the decoders; they are accepted only between tiles (no tile held), so a LUT
    change takes effect exactly at a tile boundary. ``layer`` must hold still
    while tiles are in flight.

    Timing (cycles, exact; :attr:`timing` has them as plain numbers, which the schedule of
    :mod:`accel.compile.schedule` reads):

    * the data beats of a tile are accepted one per cycle; the tile beat of the
      next tile is accepted together with the last data beat of the current one,
      so consecutive tiles stream without a bubble;
    * the last data beat of a tile waits until :attr:`min_last_interval`
      (``2 * rows + cols + 2``) cycles have passed since the previous tile's
      last beat (its results must have left the drain chain);
    * the last output beat of a tile comes :attr:`output_latency`
      (``2 * rows + cols + 2 + requant latency``) cycles after its last data beat;
      so a tile of depth ``K`` that does not wait takes
      :meth:`tile_cycles` ``= K + 2 * rows + cols + 2 + requant latency`` cycles,
      first data beat to last output beat, both counted.

    ``out`` has no back-pressure (``always_ready``): the consumer takes every beat.

    Bias: with ``overflow = "saturate"`` the PEs start from the bias (it flows
    down the columns with the weights), as the contract clamps after every
    addition, bias first; with ``wrap`` the sum is order-free, so the PEs start
    from 0 and each output lane adds the bias once after the array.

    Parameters
    ----------
    config : AcceleratorConfig
        Array size, widths and modes. Checked by :func:`~accel.hw.params.check_buildable`.
    dsp : {None, "ecp5"}
        FPGA synthesis only: the PEs instantiate the family's DSP primitive for their product
        register (see :class:`~accel.hw.pe.ProcessingElement`); same function and cycles.

    Members
    -------
    lut : In(stream.Signature(lut_layout(config)))
    tile : In(stream.Signature(tile_layout(config)))
    data : In(stream.Signature(beat_layout(config)))
    out : Out(stream.Signature(output_layout(config), always_ready=True))
    layer : In(layer_layout())
    busy : Out(1)
        A tile is held, in the array, or draining.
    """

    def __init__(self, config: AcceleratorConfig, *, dsp: str | None = None):
        with silenced_on_error(self):
            self._config = check_buildable(config)
        self._dsp = dsp
        self._timing = CoreTiming.from_config(config)
        super().__init__({
            "lut": In(stream.Signature(lut_layout(config))),
            "tile": In(stream.Signature(tile_layout(config))),
            "data": In(stream.Signature(beat_layout(config))),
            "out": Out(stream.Signature(output_layout(config), always_ready=True)),
            "layer": In(layer_layout()),
            "busy": Out(1),
        })

    @property
    def config(self) -> AcceleratorConfig:
        return self._config

    @property
    def timing(self) -> CoreTiming:
        """All latencies as plain numbers (see :class:`~accel.hw.timing.CoreTiming`)."""
        return self._timing

    @property
    def input_latency(self) -> int:
        """Cycles from a data beat accepted to it entering the array (the decoder stage): 1."""
        return self._timing.input_latency

    @property
    def requant_latency(self) -> int:
        return self._timing.requant_latency

    @property
    def min_last_interval(self) -> int:
        """Least cycles between the last data beats of consecutive tiles: ``2 * rows + cols + 2``."""
        return self._timing.min_last_interval

    @property
    def output_latency(self) -> int:
        """Cycles from the last data beat of a tile to its last output beat."""
        return self._timing.output_latency

    def tile_cycles(self, depth: int) -> int:
        """Cycles of a tile that does not wait, first data beat to last output beat inclusive."""
        return self._timing.tile_cycles(depth)

    def elaborate(self, platform):
        m = Module()
        cfg = self._config
        rows, cols = cfg.rows, cfg.cols
        # Saturating sums need the bias first, inside the PEs; wrapping sums are order-free, so the
        # bias is added once per output after the array (no bias register in the 64 PEs).
        preload = cfg.overflow is Overflow.SATURATE
        array = SystolicArray(rows=cfg.rows, cols=cfg.cols, act_bits=cfg.act_bits, acc_bits=cfg.acc_bits,
                              overflow=cfg.overflow, bias_preload=preload, pe_kind=cfg.pe_kind, dsp=self._dsp)
        requants = [Requantizer(acc_bits=cfg.acc_bits, requant=cfg.requant, mult_bits=cfg.mult_bits,
                                shift_bits=shift_bits(cfg), rounding=cfg.rounding) for _ in range(cols)]
        m.submodules.array = array
        decoders = [WeightDecoder(weight_bits=cfg.weight_bits, pe_kind=cfg.pe_kind) for _ in range(cols)]
        for j, dec in enumerate(decoders):
            m.submodules[f"decoder_{j}"] = dec
        for j, rq in enumerate(requants):
            m.submodules[f"requant_{j}"] = rq

        # Feeding: one tile held at a time; its data beats are counted down from its depth. The flags
        # `first` and `is_last` are registers (set from the count before it reaches them), so that no
        # counter's carry chain lies in front of the ready/enable logic.
        held = Signal()
        feed = Signal(tile_layout(cfg))
        remaining = Signal(DEPTH_BITS)  # data beats after the next one (wraps like the depth field)
        first = Signal()
        is_last = Signal()
        interval = self.min_last_interval
        since_last = Signal(range(interval + 1), init=interval)
        # since_last == interval, as a register: no counter comparison in front of the enables
        # that data_fire/last_fire drive (hundreds of parameter registers).
        interval_met = Signal(init=1)
        data_fire = Signal()
        last_fire = Signal()
        tile_fire = Signal()
        # data.ready == held & (~is_last | interval_met), kept as a register of its own (computed from the
        # next values of the three): the handshake loop (ready -> fire -> tile ready -> the next state)
        # then starts at one register instead of passing through the ready logic.
        data_ready = Signal()
        # remaining == 1 and interval about to be met, also as registers (no counter compare in the loop).
        next_is_last = Signal()  # the next data beat's successor is the last one: remaining == 1
        interval_next = Signal()  # interval_met rises next cycle unless a last beat fires
        m.d.comb += [
            self.data.ready.eq(data_ready),
            data_fire.eq(self.data.valid & data_ready),
            last_fire.eq(data_fire & is_last),
            self.tile.ready.eq(~held | last_fire),
            tile_fire.eq(self.tile.valid & self.tile.ready),
            self.lut.ready.eq(~held),
        ]
        held_next, is_last_next, interval_met_next = Signal(), Signal(), Signal()
        m.d.comb += [
            held_next.eq(tile_fire | (held & ~last_fire)),
            is_last_next.eq(Mux(tile_fire, self.tile.payload.depth == 1, Mux(data_fire, next_is_last, is_last))),
            interval_met_next.eq(Mux(last_fire, int(interval == 1), interval_met | interval_next)),
        ]
        m.d.sync += [held.eq(held_next), is_last.eq(is_last_next), interval_met.eq(interval_met_next),
                     data_ready.eq(held_next & (~is_last_next | interval_met_next))]
        # A tile beat is taken only with no tile held or with the held tile's last data beat.
        with m.If(tile_fire):
            depth = self.tile.payload.depth
            m.d.sync += [first.eq(1), remaining.eq(depth - 1), next_is_last.eq(depth == 2)]
        with m.Elif(data_fire):
            m.d.sync += [remaining.eq(remaining - 1), next_is_last.eq(remaining == 2), first.eq(0)]
        with m.If(last_fire):
            m.d.sync += [since_last.eq(1), interval_next.eq(int(interval == 2))]
        with m.Elif(~interval_met):
            m.d.sync += [since_last.eq(since_last + 1), interval_next.eq(since_last == interval - 2)]

        # Decoder stage (input_latency = 1): decode codes, extend activations, register the beat.
        lut_fire = self.lut.valid & self.lut.ready
        for j, dec in enumerate(decoders):
            m.d.comb += [dec.write.valid.eq(lut_fire), dec.write.payload.index.eq(self.lut.payload.index),
                         dec.write.payload.value.eq(self.lut.payload.values[j]),
                         dec.code.eq(self.data.payload.codes[j]),
                         array.weight[j].eq(dec.weight)]
        act = Signal(data.ArrayLayout(signed(cfg.act_bits + 1), rows), reset_less=True)
        for i in range(rows):
            raw_act = self.data.payload.act[i]
            m.d.sync += act[i].eq(Mux(self.layer.act_signed, raw_act.as_signed(), raw_act))
        m.d.sync += [
            array.control.valid.eq(data_fire),
            array.control.first.eq(first),
            array.control.last.eq(is_last),
        ]
        m.d.comb += array.act.eq(act)
        # The tile's parameters: the payload is copied every cycle (no enable), and the copy is taken
        # into `feed` one cycle after the tile beat, under a registered enable: no input-to-enable path
        # drives the hundreds of parameter registers. `feed` holds the tile from 2 cycles after its tile
        # beat (when its first beat reaches the array, at the earliest) until 2 cycles after the next one
        # (that is, after its own last beat: the next tile beat comes with it at the earliest).
        staged = Signal(tile_layout(cfg), reset_less=True)
        take = Signal()
        m.d.sync += [staged.eq(self.tile.payload), take.eq(tile_fire)]
        with m.If(take):
            m.d.sync += feed.eq(staged)
        if preload:
            m.d.comb += array.bias.eq(feed.bias)

        # Requantization parameters of the tile whose last beat went in, taken the cycle after it (a
        # registered enable), from `feed`, which holds that tile until then; used by its drain, which
        # starts capture_latency + 1 >= 3 cycles after the last beat.
        rq_shift = Signal(data.ArrayLayout(unsigned(shift_bits(cfg)), cols))
        rq_bias = None if preload else Signal(data.ArrayLayout(signed(cfg.acc_bits), cols))
        rq_mult = (Signal(data.ArrayLayout(unsigned(cfg.mult_bits), cols))
                   if cfg.requant is Requant.MULTIPLY_SHIFT else None)
        last_taken = Signal()
        m.d.sync += last_taken.eq(last_fire)
        with m.If(last_taken):
            m.d.sync += rq_shift.eq(feed.shift)
            if rq_bias is not None:
                m.d.sync += rq_bias.eq(feed.bias)
            if rq_mult is not None:
                m.d.sync += rq_mult.eq(feed.mult)

        # Drain: rows cycles from `done`, bottom row first, through the requantizers.
        draining = Signal()
        drained = Signal(range(max(rows, 2)))
        active = Signal()  # a register: it drives every PE's drain mux (rows * cols * acc_bits loads)
        row = Signal(output_layout(cfg)["row"].shape)
        finishing = Signal()  # the drain's last row goes out this cycle
        m.d.comb += [finishing.eq(drained == rows - 1) if rows > 1 else finishing.eq(1),
                     array.drain.eq(active), row.eq(rows - 1 - Mux(array.done, 0, drained))]
        # active == done | draining, computed one cycle ahead (done_next, and draining's next value).
        m.d.sync += active.eq(array.done_next | array.done | (draining & ~finishing)
                              if rows > 1 else array.done_next)
        if rows > 1:
            with m.If(array.done):
                m.d.sync += [draining.eq(1), drained.eq(1)]
            with m.Elif(draining):
                m.d.sync += drained.eq(drained + 1)
                with m.If(drained == rows - 1):
                    m.d.sync += draining.eq(0)
        for j, rq in enumerate(requants):
            m.d.comb += rq.acc.eq(array.result[j])
            if not preload:  # the lane adds it: wrap(bias + wrap(sum)) == wrap(bias + sum)
                m.d.comb += rq.bias.eq(rq_bias[j])
            m.d.comb += [rq.valid_in.eq(active), rq.shift.eq(rq_shift[j]),
                         rq.lo.eq(self.layer.lo), rq.hi.eq(self.layer.hi), rq.raw.eq(self.layer.raw),
                         self.out.payload.values[j].eq(rq.value)]
            if rq_mult is not None:
                m.d.comb += rq.mult.eq(rq_mult[j])
        out_row = row
        for stage in range(self.requant_latency):
            reg = Signal.like(row, name=f"row_d{stage}")
            m.d.sync += reg.eq(out_row)
            out_row = reg
        m.d.comb += [self.out.payload.row.eq(out_row), self.out.valid.eq(requants[0].valid_out)]

        # Busy: a tile is held, or beats are in the array, or the drain/requant pipeline is not empty.
        pending = Signal(range(rows * cols + 2 * rows + cols + 64))
        flight = self.input_latency + array.capture_latency + array.drain_cycles + self.requant_latency
        with m.If(data_fire):
            m.d.sync += pending.eq(flight)
        with m.Elif(pending != 0):
            m.d.sync += pending.eq(pending - 1)
        m.d.comb += self.busy.eq(held | (pending != 0))
        return m
