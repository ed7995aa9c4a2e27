"""Weight decoder: a run-time loadable LUT of signed int8 registers."""

from __future__ import annotations

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..config import PeKind
from .params import LUT_VALUE_BITS, check_field, silenced_on_error
from .pekind import encode_weight, weight_shape

__all__ = ["DECODER_LATENCY", "lut_write_layout", "WeightDecoder"]

#: Cycles from ``code`` to ``weight``: the LUT is a synchronous read port.
DECODER_LATENCY = 1


def lut_write_layout(weight_bits: int) -> data.StructLayout:
    """Payload of one LUT write: entry ``index`` gets ``value``."""
    return data.StructLayout({"index": unsigned(weight_bits), "value": signed(LUT_VALUE_BITS)})


class WeightDecoder(wiring.Component):
    """Decodes ``weight_bits``-bit weight codes into signed int8 weights through a LUT.

    The LUT is ``2 ** weight_bits`` entries of a small memory (initially 0) written at run time
    through ``write``. A code presented on ``code`` in cycle ``c`` gives its
    weight on ``weight`` in cycle ``c + 1`` (:attr:`latency` is 1), one code per
    cycle. A write in cycle ``c`` is seen by codes from cycle ``c + 1`` on.

    Parameters
    ----------
    weight_bits : int
        Width of a code, 1..8.
    pe_kind : PeKind
        The PEs the weights go to: the table stores each int8 value in their encoding
        (:func:`~accel.hw.pekind.encode_weight`, applied on write).

    Members
    -------
    write : In(stream.Signature(lut_write_layout(weight_bits), always_ready=True))
        LUT writes, one entry per beat.
    code : In(unsigned(weight_bits))
        The code to decode.
    weight : Out(weight_shape(pe_kind))
        ``T[code]`` of the previous cycle (``signed(8)`` for the general PE).
    """

    def __init__(self, *, weight_bits: int, pe_kind: PeKind | str = PeKind.GENERAL):
        with silenced_on_error(self):
            self._weight_bits = check_field("weight_bits", weight_bits, 1, LUT_VALUE_BITS,
                                            "a LUT index wider than an int8 code")
            self._pe_kind = PeKind(pe_kind)
        super().__init__({
            "write": In(stream.Signature(lut_write_layout(self._weight_bits), always_ready=True)),
            "code": In(unsigned(self._weight_bits)),
            "weight": Out(weight_shape(self._pe_kind)),
        })

    @property
    def weight_bits(self) -> int:
        return self._weight_bits

    @property
    def entries(self) -> int:
        """Number of LUT registers, ``2 ** weight_bits``."""
        return 1 << self._weight_bits

    @property
    def latency(self) -> int:
        """Cycles from ``code`` to ``weight``: :data:`DECODER_LATENCY`."""
        return DECODER_LATENCY

    def elaborate(self, platform):
        m = Module()
        # A memory rather than an array of registers keeps the Verilog of 256-entry tables small.
        m.submodules.table = table = Memory(shape=weight_shape(self._pe_kind), depth=self.entries, init=[])
        write = table.write_port()
        read = table.read_port(domain="sync")  # not transparent: a write shows from the next cycle
        m.d.comb += [
            write.en.eq(self.write.valid),
            write.addr.eq(self.write.payload.index),
            write.data.eq(encode_weight(m, self.write.payload.value, self._pe_kind)),
            read.addr.eq(self.code),
            self.weight.eq(read.data),
        ]
        return m
