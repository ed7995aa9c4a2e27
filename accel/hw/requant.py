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
#: Width in which the clamp compares a value (the bounds and the bounds minus one fit).
_NEAR_BITS = CLAMP_BITS + 2


def requant_latency(requant: Requant | str) -> int:
    """Pipeline stages of a :class:`Requantizer`: bias, [multiply,] coarse shift, fine shift, round, clamp."""
    return 6 if Requant(requant) is Requant.MULTIPLY_SHIFT else 5


class Requantizer(wiring.Component):
    """One output lane: ``y = clamp(rshift_round(s [* mult], shift), lo, hi)`` with ``s = wrap(acc + bias)``,
    or ``s`` when ``raw``.

    Fully pipelined: one value per cycle, :attr:`latency` cycles (5 for ``shift``,
    6 for ``multiply_shift``), one carry chain or half a barrel shifter per stage so that
    the lane keeps up with the array's clock: the bias addition (``acc_bits``
    wrapping: the wrap-mode core adds the bias here, after the order-free sum),
    the optional multiply, the shift (by its high bits, then its low 2 bits), the rounding
    and the clamp's compares, the clamp. ``bias``, ``shift``,
    ``mult``, ``lo``, ``hi`` and ``raw`` are sampled with ``acc``; ``valid_in``
    travels with the value to ``valid_out``. ``half_up`` rounding uses
    ``rshift_round(v, s) = (v >> s) + bit s-1 of v`` (the contract's
    ``(v + 2^(s-1)) >> s`` without its wide addition before the shift);
    ``floor`` shifts only.

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
    bias : In(signed(acc_bits))
        Added to ``acc`` (wrapping) first; 0 where the PEs started from the bias.
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
            "acc": In(signed(self._acc_bits)), "bias": In(signed(self._acc_bits)), "valid_in": In(1),
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
        wide = signed(max(scaled_bits, (1 << self._shift_bits) - 1) + 2)

        def stage(name, values: dict) -> dict:
            """Register ``values`` for the next stage. Data registers have no reset (only ``valid``
            has): less logic per cycle in simulation."""
            regs = {k: Signal.like(v, name=f"{name}_{k}", reset_less=k != "valid") for k, v in values.items()}
            m.d.sync += [regs[k].eq(v) for k, v in values.items()]
            return regs

        # Stage: bias (wrapping at acc_bits, as the contract's wrap-mode sum). The biased accumulator
        # travels on with the parameters (a raw output emits it); so do lo - 1 and hi - 1, for the clamp.
        lo_less, hi_less = Signal(signed(_NEAR_BITS)), Signal(signed(_NEAR_BITS))
        m.d.comb += [lo_less.eq(self.lo - 1), hi_less.eq(self.hi - 1)]
        p = stage("b", {"shift": self.shift, "mult": self.mult, "valid": self.valid_in, "raw": self.raw,
                        "lo": self.lo, "hi": self.hi, "lo_less": lo_less, "hi_less": hi_less,
                        "biased": (self.acc + self.bias)[:self._acc_bits].as_signed()})

        # Stage: optional multiply.
        scaled = Signal(signed(scaled_bits))
        if multiply:
            product = Signal(signed(scaled_bits), reset_less=True)
            m.d.sync += product.eq(p["biased"] * p["mult"])
            m.d.comb += scaled.eq(product)
            p = stage("m", p)
        else:
            m.d.comb += scaled.eq(p["biased"])

        # Stages: shift, in two steps (a barrel shifter of 5 levels is too deep for one cycle at 150 MHz on
        # ECP5): by the shift's high bits, then by its low 2 bits. twice = (scaled << 1) >> shift: its top
        # bits are scaled >> shift (floor) and its bit 0 is bit shift-1 of scaled (0 for shift = 0), the
        # rounding increment of half_up. Operands are extended to one width explicitly (Verilator -Wall WIDTH lint).
        twice_in = Signal(wide)
        coarse = Signal(wide, reset_less=True)
        twice = Signal(wide, reset_less=True)
        m.d.comb += twice_in.eq(scaled)
        fine_bits = min(2, self._shift_bits)
        m.d.sync += coarse.eq((twice_in << 1)[:len(twice_in)].as_signed() >> (p["shift"] >> fine_bits << fine_bits))
        p = stage("h", p)
        m.d.sync += twice.eq(coarse >> p["shift"][:fine_bits])
        p = stage("s", p)

        # Stage: round, and compare for the clamp in parallel (no carry chain after another):
        # y = floor + r with r in {0, 1}, so y > hi iff floor > hi - r, and y < lo iff floor < lo - r.
        floor = Signal(wide)
        m.d.comb += floor.eq(twice[1:].as_signed())
        up = twice[0] if self._rounding is Rounding.HALF_UP else Const(0, 1)
        # The bounds fit in _NEAR_BITS signed bits: a floor outside that range is beyond both (by its
        # sign), one inside compares on its low bits only (short carry chains, no wide comparator).
        low = floor[:_NEAR_BITS].as_signed()
        top = floor[_NEAR_BITS - 1:]
        # Each compare is the sign of one subtraction (operands in _NEAR_BITS + 1 signed bits: no overflow), so
        # it is a carry chain straight into its register, with no logic after the chain.
        def less(a, b):
            return (a.as_signed() - b.as_signed())[_NEAR_BITS]

        p = stage("r", {**p, "rounded": (floor + up)[:len(floor)].as_signed(), "up": up, "negative": floor[-1],
                        "near": (top == 0) | (top == (1 << len(top)) - 1),
                        "gt_hi": less(p["hi"], low), "gt_hi_less": less(p["hi_less"], low),
                        "lt_lo": less(low, p["lo"]), "lt_lo_less": less(low, p["lo_less"])})

        # Stage: clamp (or pass the biased accumulator): the compare that applies, then one level of selection.
        above = Mux(p["near"], Mux(p["up"], p["gt_hi_less"], p["gt_hi"]), ~p["negative"])
        below = Mux(p["near"], Mux(p["up"], p["lt_lo_less"], p["lt_lo"]), p["negative"])
        clamped = Mux(above, p["hi"], Mux(below, p["lo"], p["rounded"]))
        m.d.sync += [self.value.eq(Mux(p["raw"], p["biased"], clamped)), self.valid_out.eq(p["valid"])]
        return m
