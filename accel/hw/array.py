"""Output-stationary systolic array of processing elements, with input skew and a drain chain."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Overflow, PeKind
from .params import MAX_ARRAY_SIDE, check_field, product_bits, silenced_on_error
from .pe import PE_LATENCY, PE_MAC_LATENCY, ProcessingElement, pe_control_layout
from .pekind import weight_shape

__all__ = ["SystolicArray", "array_capture_latency", "array_drain_cycles", "array_skew"]


def array_skew(row: int, col: int) -> int:
    """Cycles from a beat at the array inputs to PE ``(row, col)`` using it: one register per row and column."""
    return row + col


def array_capture_latency(rows: int, cols: int) -> int:
    """Cycles from the last beat of a tile at the inputs to ``done``: ``rows + cols + 2``.

    The beat reaches the last PE after :func:`array_skew` ``(rows - 1, cols - 1)``
    cycles, and that PE has captured it :data:`~accel.hw.pe.PE_MAC_LATENCY` cycles later.
    """
    return array_skew(rows - 1, cols - 1) + PE_MAC_LATENCY


def array_drain_cycles(rows: int) -> int:
    """Cycles of ``drain`` that bring out every row: one row per cycle."""
    return rows


class SystolicArray(wiring.Component):
    """``rows x cols`` processing elements, output-stationary.

    PE ``(i, j)`` accumulates output ``(i, j)``: activations of row ``i`` flow
    east along the row, decoded weights (and the bias) of column ``j`` flow south
    along the column. The array skews its inputs itself: a beat presented on
    ``act``/``control``/``weight``/``bias`` in cycle ``c`` reaches PE ``(i, j)``
    in cycle ``c + i + j`` (row ``i`` is delayed ``i`` registers, column ``j``
    ``j`` registers, then one register per hop). A new beat may enter every cycle.

    Results: each PE captures its sum when the ``last`` beat of a tile passes
    through it (:data:`~accel.hw.pe.PE_MAC_LATENCY` cycles after it reached the PE).
    ``done`` rises :attr:`capture_latency` cycles after the last beat
    entered, when every PE has captured. Then ``drain`` shifts the result
    registers of every column down one row per cycle; ``result`` shows the
    bottom row, so ``rows`` drain cycles give rows ``rows - 1, ..., 0``.

    Parameters
    ----------
    rows, cols : int
        Array size (1..64 each).
    act_bits, acc_bits : int
        Activation and accumulator widths (see :class:`ProcessingElement`).
    overflow : Overflow
        ``wrap`` or ``saturate``.
    bias_preload : bool
        PEs start from the bias, which flows down the columns with the weights
        (see :class:`ProcessingElement`); without it there is no ``bias`` input.
    pe_kind : PeKind
        The PEs' kind; ``weight`` carries its decoded weights (:func:`~accel.hw.pekind.weight_shape`).
    dsp : {None, "ecp5"}
        FPGA synthesis only: the PEs' DSP primitive (see :class:`ProcessingElement`).

    Members
    -------
    act : In(ArrayLayout(signed(act_bits + 1), rows))
        One activation per row (already sign- or zero-extended).
    control : In(pe_control_layout())
        Flags of the beat (the same for every row).
    weight : In(ArrayLayout(signed(8), cols))
        One decoded weight per column.
    bias : In(ArrayLayout(signed(acc_bits), cols))
        Bias per column, used with ``control.first`` (only with ``bias_preload``).
    drain : In(1)
        Shift the result registers down one row.
    result : Out(ArrayLayout(signed(acc_bits), cols))
        The bottom row's result registers.
    done : Out(1)
        The last beat of a tile has passed PE ``(rows - 1, cols - 1)``: all results are captured.
    done_next : Out(1)
        ``done`` one cycle ahead (what it will be in the next cycle), for registered drain control.
    """

    def __init__(self, *, rows: int, cols: int, act_bits: int, acc_bits: int,
                 overflow: Overflow | str = Overflow.WRAP, bias_preload: bool = True,
                 pe_kind: PeKind | str = PeKind.GENERAL, dsp: str | None = None):
        with silenced_on_error(self):
            self._rows = check_field("rows", rows, 1, MAX_ARRAY_SIDE)
            self._cols = check_field("cols", cols, 1, MAX_ARRAY_SIDE)
            self._act_bits = check_field("act_bits", act_bits, 1, 8)
            need = product_bits(self._act_bits)
            self._acc_bits = check_field("acc_bits", acc_bits, need, 32,
                                         f"the accumulator must hold one product: at least {need} bits")
            self._overflow = Overflow(overflow)
        self._bias_preload = bool(bias_preload)
        self._dsp = dsp
        self._pe_kind = PeKind(pe_kind)
        members = {
            "act": In(data.ArrayLayout(signed(self._act_bits + 1), self._rows)),
            "control": In(pe_control_layout()),
            "weight": In(data.ArrayLayout(weight_shape(self._pe_kind), self._cols)),
            "drain": In(1),
            "result": Out(data.ArrayLayout(signed(self._acc_bits), self._cols)),
            "done": Out(1), "done_next": Out(1),
        }
        if self._bias_preload:
            members["bias"] = In(data.ArrayLayout(signed(self._acc_bits), self._cols))
        super().__init__(members)

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    def skew(self, row: int, col: int) -> int:
        """Cycles from a beat at the inputs to PE ``(row, col)`` using it (:func:`array_skew`)."""
        return array_skew(row, col)

    @property
    def capture_latency(self) -> int:
        """Cycles from the last beat of a tile at the inputs to ``done`` (:func:`array_capture_latency`)."""
        return array_capture_latency(self._rows, self._cols)

    @property
    def drain_cycles(self) -> int:
        """Cycles of ``drain`` that bring out every row (:func:`array_drain_cycles`)."""
        return array_drain_cycles(self._rows)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self._rows, self._cols

        def delayed(value, cycles, name, reset_less=True):
            for stage in range(cycles):
                reg = Signal.like(value, name=f"{name}_skew{stage}", reset_less=reset_less)
                m.d.sync += reg.eq(value)
                value = reg
            return value

        pes = [[ProcessingElement(act_bits=self._act_bits, acc_bits=self._acc_bits, overflow=self._overflow,
                                  bias_preload=self._bias_preload, pe_kind=self._pe_kind, dsp=self._dsp)
                for _ in range(cols)] for _ in range(rows)]
        for i in range(rows):
            for j in range(cols):
                m.submodules[f"pe_{i}_{j}"] = pes[i][j]
        for i in range(rows):
            m.d.comb += [
                pes[i][0].act_in.eq(delayed(self.act[i], i, f"act{i}")),
                pes[i][0].control_in.eq(delayed(self.control, i, f"control{i}", reset_less=False)),
            ]
            for j in range(1, cols):
                m.d.comb += [pes[i][j].act_in.eq(pes[i][j - 1].act_out),
                             pes[i][j].control_in.eq(pes[i][j - 1].control_out)]
        for j in range(cols):
            m.d.comb += [
                pes[0][j].weight_in.eq(delayed(self.weight[j], j, f"weight{j}")),
                pes[0][j].result_in.eq(0),
                self.result[j].eq(pes[rows - 1][j].result),
            ]
            if self._bias_preload:
                m.d.comb += pes[0][j].bias_in.eq(delayed(self.bias[j], j, f"bias{j}"))
            for i in range(1, rows):
                m.d.comb += [pes[i][j].weight_in.eq(pes[i - 1][j].weight_out),
                             pes[i][j].result_in.eq(pes[i - 1][j].result)]
                if self._bias_preload:
                    m.d.comb += pes[i][j].bias_in.eq(pes[i - 1][j].bias_out)
        for i in range(rows):
            for j in range(cols):
                m.d.comb += pes[i][j].drain.eq(self.drain)
        # The corner PE's control_out shows the beat PE_LATENCY cycles on; its capture lands
        # PE_MAC_LATENCY cycles on: delay the flag by the difference.
        corner = pes[rows - 1][cols - 1].control_out
        corner_done = corner.valid & corner.last
        ahead = PE_MAC_LATENCY - PE_LATENCY - 1  # registers between corner_done and done_next
        m.d.comb += [self.done_next.eq(delayed(corner_done, ahead, "done_ahead", reset_less=False)),
                     self.done.eq(delayed(corner_done, ahead + 1, "done", reset_less=False))]
        return m
