"""Argument types shared by the commands: a bad value is argparse's one-line error, exit 2."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "non_negative_int"]


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid integer {text!r}") from None


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
