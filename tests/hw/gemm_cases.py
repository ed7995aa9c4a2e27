"""Random GEMM problems for the gateware tests (shared by the Amaranth and cocotb suites)."""

from __future__ import annotations

import numpy as np

from accel.compile import GemmProblem
from accel.config import AcceleratorConfig, LutScope, PeKind, Requant
from accel.datapath import pe_decodable

CLAMPS = [(-128, 127), (0, 255), (0, 127), (0, 48)]  # int8, uint8, ReLU, ReLU6 at exponent 3


def random_lut(rng, config: AcceleratorConfig, rows: int, kind: str = "random") -> np.ndarray:
    """Random LUT values that the config's PEs decode (``accel.datapath.pe_decodable``)."""
    e = config.lut_entries
    values = np.arange(-128, 128)
    values = values[pe_decodable(values, config.pe_kind)]
    if kind == "extreme":  # the largest magnitudes the PE decodes, both signs
        return rng.choice([-128, int(values.max())], (rows, e))
    if kind == "min":
        return np.full((rows, e), -128)
    if config.pe_kind is PeKind.GENERAL:
        return rng.integers(-128, 128, (rows, e))
    return rng.choice(values, (rows, e))


def random_problem(rng, config: AcceleratorConfig, *, pixels: int, depth: int, channels: int,
                   signed: bool = True, lut: str = "random", raw: bool = False, clamp=None,
                   bias_scale: float = 1.0, name: str = "gemm") -> GemmProblem:
    """A problem of random activations, codes, LUT, bias and shifts within the config's ranges."""
    lo_a, hi_a = config.act_range(signed)
    act = rng.integers(lo_a, hi_a + 1, (pixels, depth))
    if rng.random() < 0.3:  # extreme activations exercise the product and overflow corners
        act = rng.choice([lo_a, hi_a], (pixels, depth))
    codes = rng.integers(0, config.lut_entries, (channels, depth)).astype(np.uint8)
    lut_rows = channels if config.lut_scope is LutScope.CHANNEL and rng.random() < 0.7 else 1
    table = random_lut(rng, config, lut_rows, lut)
    span = int((1 << (config.acc_bits - 1)) * bias_scale)
    bias = rng.integers(max(config.acc_min, -span), min(config.acc_max, span) + 1, channels)
    shift = rng.integers(0, min(config.max_shift, 31) + 1, channels)
    shift[: min(channels, 3)] = [0, 31 if config.max_shift >= 31 else config.max_shift, 1][: min(channels, 3)]
    mult = rng.integers(0, 1 << config.mult_bits, channels) if config.requant is Requant.MULTIPLY_SHIFT else None
    if mult is not None:
        shift = rng.integers(0, config.max_shift + 1, channels)
    lo, hi = clamp or CLAMPS[rng.integers(0, len(CLAMPS))]
    return GemmProblem(name, act, codes, table, bias, shift, mult, lo, hi, raw, signed, slice(0, channels))


def random_config(rng, rows: int, cols: int) -> AcceleratorConfig:
    acc_bits = int(rng.choice([16, 18, 20, 24, 32]))
    return AcceleratorConfig(
        rows=rows, cols=cols, acc_bits=acc_bits,
        weight_bits=int(rng.choice([2, 3, 4, 4, 4, 8])),
        overflow=str(rng.choice(["wrap", "saturate"])),
        requant=str(rng.choice(["shift", "shift", "multiply_shift"])),
        mult_bits=int(rng.choice([8, 16])),
        rounding=str(rng.choice(["half_up", "floor"])),
        lut_scope=str(rng.choice(["layer", "channel"])))
