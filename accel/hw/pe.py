"""Processing element: one activation x weight product per cycle into an accumulator."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..config import Overflow, PeKind
from .params import LUT_VALUE_BITS, check_field, product_bits, silenced_on_error
from .pekind import pe_product, weight_shape

__all__ = ["PE_LATENCY", "PE_MAC_LATENCY", "DSP_FAMILIES", "pe_control_layout", "ProcessingElement"]

#: FPGA families whose DSP primitive a PE can instantiate for synthesis (``dsp=``).
DSP_FAMILIES = ("ecp5",)

#: Cycles from a beat at a PE's inputs to it leaving at its outputs (one register per hop).
PE_LATENCY = 1

#: Cycles from a beat at a PE's inputs to its product in ``acc`` (and a captured ``result``):
#: the operands registered (the DSP's input registers on an FPGA; the registers that pass them on
#: elsewhere), the product registered (the DSP's output register), a second product register in
#: the fabric, then the accumulator. On an ECP5-85k each register takes one part off the cycle:
#: the route into the DSP column, the multiplier's array, the route from the DSP column to the
#: accumulator's slices (up to 4 ns), the accumulator's 32-bit carry chain.
PE_MAC_LATENCY = 4


def pe_control_layout() -> data.StructLayout:
    """Flags that travel with an activation: a beat is ``valid``, the ``first``/``last`` of its tile."""
    return data.StructLayout({"valid": 1, "first": 1, "last": 1})


class ProcessingElement(wiring.Component):
    """Output-stationary MAC cell of the systolic array.

    Each beat with ``control_in.valid`` adds ``act_in * weight_in`` to its
    accumulator; with ``control_in.first`` the accumulator starts from
    ``bias_in`` instead (the bias preload: ``acc = bias + w * x``). In
    ``saturate`` mode the sum is clamped to the ``acc_bits`` range after every
    addition, in ``wrap`` mode it wraps (two's complement). With
    ``control_in.last`` the final sum is also captured into ``result``, which is
    otherwise a stage of the column's drain chain: with ``drain`` it takes
    ``result_in`` (the result of the PE above). A capture wins over a drain.
    Activations, control, weights and bias are passed on registered (one cycle
    per hop, :attr:`latency`). The product is computed from the registered operands,
    registered twice, and the accumulator adds it, with the beat's control and bias
    (two registers behind those that pass them on): ``acc`` and a captured
    ``result`` show a beat :attr:`mac_latency` (4) cycles after it was at the inputs.

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
    pe_kind : PeKind
        ``general`` multiplies; ``shift`` and ``shift_add`` shift (and add) the activation
        by the decoded weight's exponents (:mod:`accel.hw.pekind`); same timing.
    dsp : {None, "ecp5"}
        For FPGA synthesis only (general PEs): build the operand and product registers as the input
        and output registers of the family's DSP primitive (ECP5 ``MULT18X18D`` with ``REG_INPUTA``,
        ``REG_INPUTB`` and ``REG_OUTPUT``), which yosys does not infer; the multiplier's array then
        lies between registers inside the DSP. The function and timing are those of the portable
        registers (simulation uses ``dsp=None``).

    Members
    -------
    act_in, act_out : In/Out(signed(act_bits + 1))
        Activation from the west, passed east.
    control_in, control_out : In/Out(pe_control_layout())
        Beat flags, travelling with the activation.
    weight_in, weight_out : In/Out(weight_shape(pe_kind))
        Decoded weight from the north, passed south (``signed(8)`` for the general PE).
    bias_in, bias_out : In/Out(signed(acc_bits))
        Bias of the column, used with ``first``, passed south (only with ``bias_preload``).
        Without it, ``first`` is not needed: the last beat of a tile leaves the accumulator at 0.
    result_in : In(signed(acc_bits))
        The drain chain from the PE above.
    drain : In(1)
        Shift the drain chain down one row.
    result : Out(signed(acc_bits))
        Captured result (or the drained value from above).
    acc : Out(signed(acc_bits))
        The running accumulator (0 after a tile's last beat without ``bias_preload``; at reset, too).
    """

    def __init__(self, *, act_bits: int, acc_bits: int, overflow: Overflow | str = Overflow.WRAP,
                 bias_preload: bool = True, pe_kind: PeKind | str = PeKind.GENERAL, dsp: str | None = None):
        if dsp is not None and dsp not in DSP_FAMILIES:
            self._MustUse__silence = True  # never elaborated: the error says why
            raise ValueError(f"dsp: {dsp!r} is not a DSP family the PE can instantiate; expected None or "
                             f"one of {', '.join(DSP_FAMILIES)}")
        self._dsp = dsp
        self._pe_kind = PeKind(pe_kind)
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
            "weight_in": In(weight_shape(self._pe_kind)), "weight_out": Out(weight_shape(self._pe_kind)),
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

    @property
    def mac_latency(self) -> int:
        """Cycles from a beat at the inputs to its sum in ``acc`` or a captured ``result``: :data:`PE_MAC_LATENCY`."""
        return PE_MAC_LATENCY

    def elaborate(self, platform):
        m = Module()
        lo, hi = -(1 << (self._acc_bits - 1)), (1 << (self._acc_bits - 1)) - 1
        # Data registers have no reset (only the control flags do): this halves the logic a
        # simulator evaluates per PE and cycle, and a tile's first beat overwrites them anyway.
        # Without the bias preload the accumulator is cleared by the last beat of each tile (and by reset), so
        # that a tile's first beat adds to 0 with no selection in front of the carry chain.
        acc = Signal.like(self.acc, reset_less=self._bias_preload, name="acc_reg")
        result = Signal.like(self.result, reset_less=True, name="result_reg")
        act_out = Signal.like(self.act_out, reset_less=True, name="act_reg")
        weight_out = Signal.like(self.weight_out, reset_less=True, name="weight_reg")
        product = Signal(signed(self._act_bits + 1 + LUT_VALUE_BITS), reset_less=True, name="product_reg")
        if self._dsp == "ecp5" and self._pe_kind is PeKind.GENERAL:
            m.submodules.multiplier = _ecp5_registered_multiply(self.act_in, self.weight_in, product)
        else:  # the operands' registers are those that pass them on
            m.d.sync += product.eq(pe_product(act_out, weight_out, self._pe_kind))
        m.d.sync += [
            act_out.eq(self.act_in),
            self.control_out.eq(self.control_in),
            weight_out.eq(self.weight_in),
        ]
        m.d.comb += [self.acc.eq(acc), self.result.eq(result), self.act_out.eq(act_out),
                     self.weight_out.eq(weight_out)]
        # The product's second register (in the fabric, next to the accumulator), and the beat's control
        # (and bias) two cycles behind the registers that pass them on, to meet it.
        fabric_product = Signal.like(product, reset_less=True, name="fabric_product_reg")
        product_beat = Signal(pe_control_layout(), name="product_beat_reg")
        beat = Signal(pe_control_layout(), name="beat_reg")
        m.d.sync += [fabric_product.eq(product), product_beat.eq(self.control_out), beat.eq(product_beat)]
        # Accumulate stage: the beat's control and bias three cycles on meet its product.
        total = Signal(signed(self._acc_bits + 2))
        following = Signal(signed(self._acc_bits))
        if self._bias_preload:
            bias_out = Signal.like(self.bias_out, reset_less=True, name="bias_reg")
            product_bias = Signal.like(self.bias_out, reset_less=True, name="product_bias_reg")
            start = Signal.like(self.bias_out, reset_less=True, name="beat_bias_reg")
            m.d.sync += [bias_out.eq(self.bias_in), product_bias.eq(bias_out), start.eq(product_bias)]
            m.d.comb += [self.bias_out.eq(bias_out), total.eq(Mux(beat.first, start, acc) + fabric_product)]
        else:
            m.d.comb += total.eq(acc + fabric_product)
        if self._overflow is Overflow.WRAP:
            m.d.comb += following.eq(total[:self._acc_bits].as_signed())
        else:
            with m.If(total > hi):
                m.d.comb += following.eq(hi)
            with m.Elif(total < lo):
                m.d.comb += following.eq(lo)
            with m.Else():
                m.d.comb += following.eq(total)
        with m.If(beat.valid):
            m.d.sync += acc.eq(following if self._bias_preload else Mux(beat.last, 0, following))
        with m.If(beat.valid & beat.last):
            m.d.sync += result.eq(following)
        with m.Elif(self.drain):
            m.d.sync += result.eq(self.result_in)
        return m


def _ecp5_registered_multiply(a, b, product):
    """ECP5 ``MULT18X18D``: ``product`` = ``a * b`` (signed), the operands and the product registered in the DSP
    (``REG_INPUTA``, ``REG_INPUTB``, ``REG_OUTPUT``): two cycles."""
    from amaranth.hdl import ClockSignal, Instance

    a18, b18, p36 = Signal(signed(18)), Signal(signed(18)), Signal(signed(36))
    ports = {f"i_A{i}": a18[i] for i in range(18)}
    ports.update({f"i_B{i}": b18[i] for i in range(18)})
    ports.update({f"i_C{i}": 0 for i in range(18)})
    ports.update({f"o_P{i}": p36[i] for i in range(36)})
    inst = Instance("MULT18X18D", p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
                    p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
                    p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
                    p_GSR="DISABLED", i_CLK0=ClockSignal(), i_CE0=1, i_RST0=0, i_SIGNEDA=1, i_SIGNEDB=1,
                    i_SOURCEA=0, i_SOURCEB=0, **ports)
    m = Module()
    m.submodules.dsp = inst
    m.d.comb += [a18.eq(a), b18.eq(b), product.eq(p36[:len(product)].as_signed())]
    return m
