"""Processing element: one activation x weight product per cycle into an accumulator."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Overflow
from .params import LUT_VALUE_BITS, check_field, product_bits, silenced_on_error

__all__ = ["PE_LATENCY", "pe_control_layout", "ProcessingElement"]

#: Cycles from a beat at a PE's inputs to it leaving at its outputs (one register per hop).
PE_LATENCY = 1


def pe_control_layout() -> data.StructLayout:
    """Flags that travel with an activation: a beat is ``valid``, the ``first``/``last`` of its tile."""
    return data.StructLayout({"valid": 1, "first": 1, "last": 1})


class ProcessingElement(wiring.Component):
    """Output-stationary MAC cell of the systolic array.

    Each cycle with ``control_in.valid`` it adds ``act_in * weight_in`` to its
    accumulator; with ``control_in.first`` the accumulator starts from
    ``bias_in`` instead (the bias preload: ``acc = bias + w * x``). In
    ``saturate`` mode the sum is clamped to the ``acc_bits`` range after every
    addition, in ``wrap`` mode it wraps (two's complement). With
    ``control_in.last`` the final sum is also captured into ``result``, which is
    otherwise a stage of the column's drain chain: with ``drain`` it takes
    ``result_in`` (the result of the PE above). A capture wins over a drain.
    Activations, control, weights and bias are passed on registered (one cycle
    per hop); the accumulator updates at the end of the cycle that sees the beat.

    Parameters
    ----------
    act_bits : int
        Activation width; ``act_in`` is ``act_bits + 1`` bits signed so that both
        int8 and uint8 activations fit.
    acc_bits : int
        Accumulator width, at least one product (``act_bits + 8``).
    overflow : Overflow
        ``wrap`` or ``saturate``.
    bias_preload : bool
        Start the accumulator from the bias (needed for ``saturate``, where the
        bias comes first). Without it the sum starts from 0 and the bias is
        added after the array (exact for ``wrap``, whose sum is order-free),
        and the PE has no bias ports or register.

    Members
    -------
    act_in, act_out : In/Out(signed(act_bits + 1))
        Activation from the west, passed east.
    control_in, control_out : In/Out(pe_control_layout())
        Beat flags, travelling with the activation.
    weight_in, weight_out : In/Out(signed(8))
        Decoded weight from the north, passed south.
    bias_in, bias_out : In/Out(signed(acc_bits))
        Bias of the column, used with ``first``, passed south (only with ``bias_preload``).
    result_in : In(signed(acc_bits))
        The drain chain from the PE above.
    drain : In(1)
        Shift the drain chain down one row.
    result : Out(signed(acc_bits))
        Captured result (or the drained value from above).
    acc : Out(signed(acc_bits))
        The running accumulator.
    """

    def __init__(self, *, act_bits: int, acc_bits: int, overflow: Overflow | str = Overflow.WRAP,
                 bias_preload: bool = True):
        with silenced_on_error(self):
            self._act_bits = check_field("act_bits", act_bits, 1, 8)
            need = product_bits(self._act_bits)
            self._acc_bits = check_field("acc_bits", acc_bits, need, 32,
                                         f"the accumulator must hold one product: at least {need} bits")
            self._overflow = Overflow(overflow)
        self._bias_preload = bool(bias_preload)
        act = signed(self._act_bits + 1)
        acc = signed(self._acc_bits)
        members = {
            "act_in": In(act), "act_out": Out(act),
            "control_in": In(pe_control_layout()), "control_out": Out(pe_control_layout()),
            "weight_in": In(signed(LUT_VALUE_BITS)), "weight_out": Out(signed(LUT_VALUE_BITS)),
            "result_in": In(acc), "drain": In(1), "result": Out(acc),
            "acc": Out(acc),
        }
        if self._bias_preload:
            members.update({"bias_in": In(acc), "bias_out": Out(acc)})
        super().__init__(members)

    @property
    def acc_bits(self) -> int:
        return self._acc_bits

    @property
    def overflow(self) -> Overflow:
        return self._overflow

    @property
    def bias_preload(self) -> bool:
        """Whether the accumulator starts from ``bias_in`` (else from 0, the bias added after the PE)."""
        return self._bias_preload

    @property
    def latency(self) -> int:
        """Cycles from a beat at the inputs to it leaving at the outputs (and to ``acc``): :data:`PE_LATENCY`."""
        return PE_LATENCY

    def elaborate(self, platform):
        m = Module()
        lo, hi = -(1 << (self._acc_bits - 1)), (1 << (self._acc_bits - 1)) - 1
        product = Signal(signed(self._act_bits + 1 + LUT_VALUE_BITS))
        total = Signal(signed(self._acc_bits + 2))
        following = Signal(signed(self._acc_bits))
        m.d.comb += [
            product.eq(self.act_in * self.weight_in),
            total.eq(Mux(self.control_in.first, self.bias_in if self._bias_preload else 0, self.acc) + product),
        ]
        if self._overflow is Overflow.WRAP:
            m.d.comb += following.eq(total[:self._acc_bits].as_signed())
        else:
            with m.If(total > hi):
                m.d.comb += following.eq(hi)
            with m.Elif(total < lo):
                m.d.comb += following.eq(lo)
            with m.Else():
                m.d.comb += following.eq(total)
        # Data registers have no reset (only the control flags do): this halves the logic a
        # simulator evaluates per PE and cycle, and a tile's first beat overwrites them anyway.
        acc = Signal.like(self.acc, reset_less=True, name="acc_reg")
        result = Signal.like(self.result, reset_less=True, name="result_reg")
        act_out = Signal.like(self.act_out, reset_less=True, name="act_reg")
        weight_out = Signal.like(self.weight_out, reset_less=True, name="weight_reg")
        with m.If(self.control_in.valid):
            m.d.sync += acc.eq(following)
        with m.If(self.control_in.valid & self.control_in.last):
            m.d.sync += result.eq(following)
        with m.Elif(self.drain):
            m.d.sync += result.eq(self.result_in)
        m.d.sync += [
            act_out.eq(self.act_in),
            self.control_out.eq(self.control_in),
            weight_out.eq(self.weight_in),
        ]
        m.d.comb += [self.acc.eq(acc), self.result.eq(result), self.act_out.eq(act_out),
                     self.weight_out.eq(weight_out)]
        if self._bias_preload:
            bias_out = Signal.like(self.bias_out, reset_less=True, name="bias_reg")
            m.d.sync += bias_out.eq(self.bias_in)
            m.d.comb += self.bias_out.eq(bias_out)
        return m
