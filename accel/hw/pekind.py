"""PE kinds: how a LUT value is stored in the decoder and turned into a product in the PE.

The LUT values are int8 weights for every kind (the contract is unchanged); the kinds
differ in the hardware that multiplies (:class:`~accel.config.PeKind`):

* ``general``: the decoder stores the int8 value, the PE multiplies;
* ``shift``: the decoder stores ``sign``, ``zero`` and the exponent ``e`` of ``+-2^e``, the
  PE shifts the activation and negates it;
* ``shift_add``: the decoder stores ``sign`` and up to two exponents ``a > b`` (``+-(2^a + 2^b)``),
  the PE adds two shifted activations and negates the sum.

The decoder encodes a value when the LUT is written (not when a code is read), so the data
path sees no encoder. A value that the kind cannot decode (``accel.datapath.pe_decodable``)
is refused by the compiler before it reaches the hardware.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from ..config import PeKind
from .params import LUT_VALUE_BITS

__all__ = ["weight_shape", "encode_weight", "pe_product"]

_EXP = unsigned(3)  # exponents 0..7: |int8| <= 2^7


def weight_shape(pe_kind: PeKind | str):
    """Shape of a decoded weight as it flows down a column for ``pe_kind``."""
    kind = PeKind(pe_kind)
    if kind is PeKind.GENERAL:
        return signed(LUT_VALUE_BITS)
    if kind is PeKind.SHIFT:
        return data.StructLayout({"sign": 1, "zero": 1, "exp": _EXP})
    return data.StructLayout({"sign": 1, "a_en": 1, "a": _EXP, "b_en": 1, "b": _EXP})


def _highest_bit(m: Module, value, name: str) -> Signal:
    """Index of the highest set bit of ``value`` (0 for 0): a priority encoder."""
    index = Signal(_EXP, name=name)
    for bit in range(len(value)):
        with m.If(value[bit]):
            m.d.comb += index.eq(bit)
    return index


def encode_weight(m: Module, value, pe_kind: PeKind | str):
    """The ``weight_shape(pe_kind)`` encoding of the int8 ``value`` (combinational, in ``m``)."""
    kind = PeKind(pe_kind)
    if kind is PeKind.GENERAL:
        return value
    code = Signal(weight_shape(kind))
    magnitude = Signal(unsigned(LUT_VALUE_BITS))  # |-128| = 128 fits in 8 unsigned bits
    m.d.comb += [magnitude.eq(Mux(value < 0, -value, value)), code.sign.eq(value < 0)]
    top = _highest_bit(m, magnitude, "top_bit")
    if kind is PeKind.SHIFT:
        m.d.comb += [code.exp.eq(top), code.zero.eq(magnitude == 0)]
        return code
    rest = Signal(unsigned(LUT_VALUE_BITS))
    m.d.comb += rest.eq(magnitude & ~(Const(1, LUT_VALUE_BITS) << top)[:LUT_VALUE_BITS])
    m.d.comb += [code.a.eq(top), code.a_en.eq(magnitude != 0),
                 code.b.eq(_highest_bit(m, rest, "next_bit")), code.b_en.eq(rest != 0)]
    return code


def pe_product(act, weight, pe_kind: PeKind | str):
    """``act * w`` for the decoded ``weight`` of ``pe_kind``: a multiply, a shift, or two shifts and an add."""
    kind = PeKind(pe_kind)
    if kind is PeKind.GENERAL:
        return act * weight
    if kind is PeKind.SHIFT:
        shifted = act << weight.exp
        return Mux(weight.zero, 0, Mux(weight.sign, -shifted, shifted))
    total = Mux(weight.a_en, act << weight.a, 0) + Mux(weight.b_en, act << weight.b, 0)
    return Mux(weight.sign, -total, total)
