"""Argument types shared by the commands: a bad value is argparse's one-line error, exit 2."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "column_fraction"]


def _parse(text: str, kind: type, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {what} {text!r}") from None


def _int(text: str) -> int:
    return _parse(text, int, "integer")


def positive_int(text: str) -> int:
    """An integer >= 1 (counts of images, calibration samples, levels)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: expected a positive integer (1 or more)")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (random seeds: numpy refuses negative ones)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: expected an integer of 0 or more")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (learning rates, clock constraints); ``nan`` is refused."""
    value = _parse(text, float, "number")
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value}: expected a number above 0")
    return value


def non_negative_float(text: str) -> float:
    """A number of 0 or more (penalty weights); ``nan`` is refused."""
    value = _parse(text, float, "number")
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"{value}: expected a number of 0 or more")
    return value


def column_fraction(text: str) -> float:
    """Extra array columns per output channel (``--multipoint``): above 0, at most 4."""
    value = _parse(text, float, "number")
    if not 0 < value <= 4:
        raise argparse.ArgumentTypeError(f"{value}: expected a fraction of output channels above 0 and at most 4 "
                                         "(0.1: one extra column per ten channels)")
    return value
