"""What the gateware can build: checks on an :class:`AcceleratorConfig` before elaboration.

:func:`check_buildable` raises :class:`~accel.errors.ConfigError` naming the field
for a configuration that is valid as a description but that the gateware cannot
build (for example an accumulator narrower than one product). Every component
constructor runs the checks of its own parameters with the same messages.
"""

from __future__ import annotations

import operator

from ..config import AcceleratorConfig, Requant
from ..errors import ConfigError

__all__ = ["LUT_VALUE_BITS", "MAX_ARRAY_SIDE", "DEPTH_BITS", "product_bits", "shift_bits",
           "check_field", "check_buildable", "mark_unelaborated", "silenced_on_error"]

#: Width of a LUT entry: decoded weights are signed int8.
LUT_VALUE_BITS = 8
#: Largest array side the gateware elaborates (the configuration allows more).
MAX_ARRAY_SIDE = 64
#: Width of the tile depth counter: the longest reduction one tile streams through is 2**16 - 1.
DEPTH_BITS = 16


def check_field(name: str, value, lo: int, hi: int, why: str = "") -> int:
    """``operator.index(value)`` checked against ``lo..hi``; :class:`ConfigError` naming ``name``."""
    try:
        value = operator.index(value)
    except TypeError:
        raise ConfigError(f"config.{name}: expected an integer, got {value!r}") from None
    if not lo <= value <= hi:
        reason = f" ({why})" if why else ""
        raise ConfigError(f"config.{name}: the gateware cannot build {value}, allowed {lo}..{hi}{reason}")
    return value


def product_bits(act_bits: int) -> int:
    """Signed width of one activation x weight product.

    An ``act_bits`` activation (signed, or unsigned and zero-extended by one bit)
    times a signed int8 weight needs ``act_bits + LUT_VALUE_BITS`` bits: the
    extreme ``-128 * 255 = -32640`` for uint8 fits in 16.
    """
    return act_bits + LUT_VALUE_BITS


def shift_bits(config: AcceleratorConfig) -> int:
    """Width of a per-channel shift amount (``0..max_shift``)."""
    return max(1, config.max_shift.bit_length())


def check_buildable(config: AcceleratorConfig) -> AcceleratorConfig:
    """Reject a configuration the gateware cannot build, naming the field.

    Raises
    ------
    ConfigError
        ``rows``/``cols`` outside ``1..MAX_ARRAY_SIDE``; ``weight_bits`` above 8
        (a LUT index wider than the int8 codes memory images hold);
        ``acc_bits`` narrower than one product (``act_bits + 8``).
    """
    if not isinstance(config, AcceleratorConfig):
        raise ConfigError(f"config: expected an AcceleratorConfig, got {type(config).__name__}")
    check_field("rows", config.rows, 1, MAX_ARRAY_SIDE, "array rows")
    check_field("cols", config.cols, 1, MAX_ARRAY_SIDE, "array columns")
    check_field("weight_bits", config.weight_bits, 1, LUT_VALUE_BITS,
                "a weight code indexes a LUT of signed int8 entries; codes are at most 8 bits")
    check_field("act_bits", config.act_bits, 1, 8, "activations are int8 or uint8")
    need = product_bits(config.act_bits)
    check_field("acc_bits", config.acc_bits, need, 32,
                f"the accumulator must hold one {config.act_bits}-bit x int8 product: "
                f"at least {need} bits")
    if config.requant is Requant.MULTIPLY_SHIFT:
        check_field("mult_bits", config.mult_bits, 1, 31)
    return config



def mark_unelaborated(component):
    """Tell Amaranth that ``component`` is meant never to be elaborated (built only to read its
    properties, or rejected by its parameter checks), so it raises no ``UnusedElaboratable`` warning.

    The one place that touches Amaranth's internals: Amaranth 0.5 (checked on 0.5.10,
    ``amaranth/_unused.py``) has no public way to silence a single object; its ``MustUse`` base
    reads the private class attribute ``_MustUse__silence`` when the object is collected.
    Re-check this on an Amaranth upgrade (the warning comes back if the name changes).
    """
    component._MustUse__silence = True
    return component


class silenced_on_error:
    """Context for a component's parameter checks: a component whose checks fail is not
    reported by Amaranth as an unused elaboratable (the :class:`ConfigError` says what is wrong)."""

    def __init__(self, component):
        self._component = component

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None and issubclass(kind, ConfigError):
            mark_unelaborated(self._component)
        return False
