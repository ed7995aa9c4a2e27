"""Requantizer lane: per-channel shift (or multiply then shift), rounding, clamp."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..config import Requant, Rounding
from .params import check_field, silenced_on_error

__all__ = ["CLAMP_BITS", "Requantizer", "requant_latency"]

#: Width of the clamp bounds ``lo``/``hi``: int8 and uint8 ranges fit in signed 10 bits.
CLAMP_BITS = 10


def requant_latency(requant: Requant | str) -> int:
    """Pipeline stages of a :class:`Requantizer`: [multiply,] rounding shift, clamp."""
    return 3 if Requant(requant) is Requant.MULTIPLY_SHIFT else 2


class Requantizer(wiring.Component):
    """One output lane: ``y = clamp(rshift_round(acc [* mult], shift), lo, hi)``, or ``acc`` when ``raw``.

    Fully pipelined: one value per cycle, :attr:`latency` cycles (2 for ``shift``,
    3 for ``multiply_shift``). ``shift``, ``mult``, ``lo``, ``hi`` and ``raw`` are
    sampled with ``acc``; ``valid_in`` travels with the value to ``valid_out``.
    ``half_up`` rounding adds ``2^(shift-1)`` before the arithmetic shift (the
    addition is wide enough never to overflow); ``floor`` shifts only.

    Parameters
    ----------
    acc_bits : int
        Accumulator width.
    requant : Requant
        ``shift`` or ``multiply_shift``.
    mult_bits : int
        Unsigned multiplier width (``multiply_shift`` only).
    shift_bits : int
        Width of the shift amount.
    rounding : Rounding
        ``half_up`` or ``floor``.

    Members
    -------
    acc : In(signed(acc_bits))
    valid_in : In(1)
    shift : In(unsigned(shift_bits))
    mult : In(unsigned(mult_bits))
        Ignored for ``requant = "shift"``.
    lo, hi : In(signed(10))
        Clamp bounds.
    raw : In(1)
        Emit ``acc`` unchanged.
    value : Out(signed(acc_bits))
    valid_out : Out(1)
    """

    def __init__(self, *, acc_bits: int, requant: Requant | str = Requant.SHIFT, mult_bits: int = 16,
                 shift_bits: int = 5, rounding: Rounding | str = Rounding.HALF_UP):
        with silenced_on_error(self):
            self._acc_bits = check_field("acc_bits", acc_bits, 2, 32)
            self._requant = Requant(requant)
            self._mult_bits = check_field("mult_bits", mult_bits, 1, 31)
            self._shift_bits = check_field("shift_bits", shift_bits, 1, 6)
            self._rounding = Rounding(rounding)
        super().__init__({
            "acc": In(signed(self._acc_bits)), "valid_in": In(1),
            "shift": In(unsigned(self._shift_bits)), "mult": In(unsigned(self._mult_bits)),
            "lo": In(signed(CLAMP_BITS)), "hi": In(signed(CLAMP_BITS)), "raw": In(1),
            "value": Out(signed(self._acc_bits)), "valid_out": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from ``acc`` to ``value`` (:func:`requant_latency`)."""
        return requant_latency(self._requant)

    def elaborate(self, platform):
        m = Module()
        multiply = self._requant is Requant.MULTIPLY_SHIFT
        scaled_bits = self._acc_bits + (self._mult_bits + 1 if multiply else 0)

        # Stage: optional multiply.
        # Data registers have no reset (only `valid` has): less logic per cycle in simulation.
        scaled = Signal(signed(scaled_bits), reset_less=True)
        shift = Signal(unsigned(self._shift_bits), reset_less=True)
        keep = [self.acc, self.valid_in, self.lo, self.hi, self.raw]
        if multiply:
            stage = [Signal.like(v, name=f"m_{i}", reset_less=i != 1) for i, v in enumerate(keep)]
            m.d.sync += [scaled.eq(self.acc * self.mult), shift.eq(self.shift)]
            m.d.sync += [s.eq(v) for s, v in zip(stage, keep)]
            keep = stage
        else:
            m.d.comb += [scaled.eq(self.acc), shift.eq(self.shift)]

        # Stage: rounding right shift.
        # Operands are extended to one width explicitly (Verilator -Wall WIDTH lint).
        # scaled + 2^(shift-1) for the largest shift the port can carry, without overflow.
        wide = signed(max(scaled_bits, (1 << self._shift_bits) - 1) + 1)
        scaled_wide = Signal(wide)
        shifted = Signal(wide, reset_less=True)
        m.d.comb += scaled_wide.eq(scaled)
        if self._rounding is Rounding.HALF_UP:
            # 2^(shift-1) for shift > 0, else 0.
            half = Signal(wide)
            rounded = Signal(wide)
            m.d.comb += [half.eq(((Const(1, 1) << shift) >> 1)[:len(half)]),
                         rounded.eq(scaled_wide + half)]
            m.d.sync += shifted.eq(rounded >> shift)
        else:
            m.d.sync += shifted.eq(scaled_wide >> shift)
        stage = [Signal.like(v, name=f"s_{i}", reset_less=i != 1) for i, v in enumerate(keep)]
        m.d.sync += [s.eq(v) for s, v in zip(stage, keep)]
        acc, valid, lo, hi, raw = stage

        # Stage: clamp (or pass the raw accumulator).
        lo_wide, hi_wide = Signal(wide), Signal(wide)
        m.d.comb += [lo_wide.eq(lo), hi_wide.eq(hi)]
        clamped = Mux(shifted > hi_wide, hi_wide, Mux(shifted < lo_wide, lo_wide, shifted))
        m.d.sync += [self.value.eq(Mux(raw, acc, clamped)), self.valid_out.eq(valid)]
        return m
