"""Random test cases, one module for the suite: hypothesis strategies of layers and networks
(engine, fake-quant) and seeded random GEMM problems and configurations (gateware, cocotb, perf)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from accel.compile import GemmProblem
from accel.config import AcceleratorConfig, LutScope, PeKind, Requant
from accel.datapath import pe_decodable
from accel.ir import ModelBuilder


@st.composite
def configs(draw) -> AcceleratorConfig:
    requant = draw(st.sampled_from(["shift", "multiply_shift"]))
    return AcceleratorConfig(
        weight_bits=draw(st.sampled_from([4, 4, 4, 2, 3, 5, 8])),
        lut_scope=draw(st.sampled_from(["layer", "channel"])),
        acc_bits=draw(st.sampled_from([32, 32, 24, 20, 16, 12, 8])),
        overflow=draw(st.sampled_from(["wrap", "saturate"])),
        requant=requant,
        mult_bits=draw(st.sampled_from([16, 1, 8, 31])),
        rounding=draw(st.sampled_from(["half_up", "floor"])),
    )


def _values(rng, lo, hi, shape, extreme):
    """Uniform values, or mostly the extremes of the range when ``extreme``."""
    if extreme:
        return rng.choice(np.array([lo, hi, lo, lo, 0, hi]), size=shape)
    return rng.integers(lo, hi + 1, size=shape)


def mac_arrays(rng, cfg: AcceleratorConfig, n: int, codes_shape, extreme: bool):
    entries = cfg.lut_entries
    lut_rows = n if cfg.lut_scope.value == "channel" else 1
    lut = _values(rng, -128, 127, (lut_rows, entries), extreme).astype(np.int8)
    codes = rng.integers(0, entries, size=codes_shape).astype(np.uint8)
    bias = _values(rng, cfg.acc_min, cfg.acc_max, (n,), extreme and rng.random() < 0.5)
    if rng.random() < 0.5:  # realistic small biases most of the time
        bias = rng.integers(-(1 << min(cfg.acc_bits - 2, 12)), 1 << min(cfg.acc_bits - 2, 12), n)
    shift = rng.choice(np.array([0, 1, 2, 7, 12, 31, cfg.max_shift, rng.integers(0, cfg.max_shift + 1)]),
                       size=n)
    shift = np.minimum(shift, cfg.max_shift)
    mult = None
    if cfg.requant.value == "multiply_shift":
        mult = _values(rng, 0, (1 << cfg.mult_bits) - 1, (n,), extreme)
    return dict(codes=codes, lut=lut, bias=bias, shift=shift, mult=mult)


def random_points(rng, cfg: AcceleratorConfig, n: int, codes_shape, extreme: bool):
    """Extra rows of a multipoint layer (contract v1.3): 1..n+1 points on random channels (a channel may
    take several), random codes, shifts 0..16 (extreme: mostly the largest, so that lanes overflow)."""
    p = int(rng.integers(1, n + 2))
    codes = rng.integers(0, cfg.lut_entries, size=(p, *codes_shape[1:])).astype(np.uint8)
    channel = rng.integers(0, n, p).astype(np.int32)
    shift = _values(rng, 0, 16, (p,), extreme).astype(np.int32)
    return codes, channel, shift


def clamp_bounds(rng, out_dtype):
    if out_dtype == "uint8":
        return sorted(rng.integers(0, 256, 2)) if rng.random() < 0.3 else (0, 255)
    return sorted(rng.integers(-128, 128, 2)) if rng.random() < 0.3 else (-128, 127)


@st.composite
def conv_cases(draw):
    """(model, input) for one random conv2d layer, depthwise, grouped and multipoint included."""
    cfg = draw(configs())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extreme = draw(st.booleans())
    in_dtype = draw(st.sampled_from(["int8", "uint8"]))
    c = draw(st.integers(1, 6))
    groups = draw(st.sampled_from([g for g in range(1, c + 1) if c % g == 0]))
    n = groups * draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    padding = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - padding[0] - padding[2]), 8))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - padding[1] - padding[3]), 8))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    raw = draw(st.booleans())
    out_dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = clamp_bounds(rng, out_dtype)
    xlo, xhi = (-128, 127) if in_dtype == "int8" else (0, 255)
    b = ModelBuilder(cfg)
    x = b.input("x", (c, h, w), in_dtype)
    points = random_points(rng, cfg, n, (n, c // groups, kh, kw), extreme) if rng.random() < 0.3 else None
    y = b.conv2d("conv", x, **mac_arrays(rng, cfg, n, (n, c // groups, kh, kw), extreme), points=points,
                 stride=stride, padding=padding, dilation=(dh, dw), groups=groups,
                 pad_value=int(rng.integers(xlo, xhi + 1)) if rng.random() < 0.3 else 0,
                 lo=int(lo), hi=int(hi), raw=raw, dtype=out_dtype)
    model = b.build([y])
    batch = draw(st.integers(1, 3))
    xs = _values(rng, xlo, xhi, (batch, c, h, w), extreme).astype(in_dtype)
    return model, xs


@st.composite
def wide_conv_cases(draw):
    """(model, input) for one random convolution shaped for the engine's GEMM paths: 16 to 80 output channels
    (whole blocks of 16 take the rounding by convolutions) and reductions up to 64 x 3 x 3 (the 8-bit GEMM from
    256), with padding values, strides, dilation and every configuration (the default one half of the time)."""
    cfg = draw(configs()) if draw(st.booleans()) else AcceleratorConfig(
        rounding=draw(st.sampled_from(["half_up", "floor"])), lut_scope=draw(st.sampled_from(["layer", "channel"])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extreme = draw(st.booleans()) and draw(st.booleans())
    in_dtype = draw(st.sampled_from(["int8", "uint8"]))
    c = draw(st.sampled_from([1, 3, 16, 29, 32, 64, 64]))
    n = draw(st.sampled_from([16, 32, 64, 64, 80]))
    kh, kw = draw(st.sampled_from([(1, 1), (3, 3), (3, 3), (1, 3)]))
    dh, dw = draw(st.integers(1, 2)), 1
    padding = tuple(draw(st.integers(0, 1)) for _ in range(4))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - padding[0] - padding[2]), 6))
    w = draw(st.integers(max(1, kw - padding[1] - padding[3]), 6))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    raw = draw(st.booleans()) and draw(st.booleans())
    out_dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = clamp_bounds(rng, out_dtype)
    xlo, xhi = (-128, 127) if in_dtype == "int8" else (0, 255)
    arrays = mac_arrays(rng, cfg, n, (n, c, kh, kw), extreme)
    if draw(st.booleans()):  # weights of a quarter of the range: long reductions that stay below 2^24
        arrays["lut"] = (arrays["lut"] // 4).astype(np.int8)
    if draw(st.booleans()):
        arrays["bias"] = rng.integers(-(1 << min(cfg.acc_bits - 2, 12)), 1 << min(cfg.acc_bits - 2, 12), n)
    if draw(st.booleans()):  # shifts that spread the outputs over the clamp range, not just its ends
        bound = int(np.abs(arrays["lut"].astype(np.int64)).max()) * max(abs(xlo), xhi) * c * kh * kw
        arrays["shift"] = np.clip(rng.integers(-2, 3, n) + bound.bit_length() - 8, 0, cfg.max_shift)
    b = ModelBuilder(cfg)
    x = b.input("x", (c, h, w), in_dtype)
    y = b.conv2d("conv", x, **arrays, stride=stride, padding=padding, dilation=(dh, dw),
                 pad_value=int(rng.integers(xlo, xhi + 1)) if rng.random() < 0.3 else 0,
                 lo=int(lo), hi=int(hi), raw=raw, dtype=out_dtype)
    model = b.build([y])
    xs = _values(rng, xlo, xhi, (draw(st.integers(1, 3)), c, h, w), extreme).astype(in_dtype)
    return model, xs


@st.composite
def linear_cases(draw):
    cfg = draw(configs())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    extreme = draw(st.booleans())
    in_dtype = draw(st.sampled_from(["int8", "uint8"]))
    k = draw(st.sampled_from([1, 2, 3, 7, 16, 33, 100, 257]))
    n = draw(st.integers(1, 12))
    raw = draw(st.booleans())
    out_dtype = draw(st.sampled_from(["int8", "uint8"]))
    lo, hi = clamp_bounds(rng, out_dtype)
    xlo, xhi = (-128, 127) if in_dtype == "int8" else (0, 255)
    b = ModelBuilder(cfg)
    x = b.input("x", (k,), in_dtype)
    points = random_points(rng, cfg, n, (n, k), extreme) if rng.random() < 0.3 else None
    y = b.linear("fc", x, **mac_arrays(rng, cfg, n, (n, k), extreme), lo=int(lo), hi=int(hi), raw=raw,
                 dtype=out_dtype, points=points)
    model = b.build([y])
    xs = _values(rng, xlo, xhi, (draw(st.integers(1, 4)), k), extreme).astype(in_dtype)
    return model, xs


def pool_add_concat_case(seed: int, rounding: str, dtype: str):
    """(model, input): max and average pool, residual add, concat, global pool, flatten and reshape."""
    rng = np.random.default_rng(seed)
    cfg = AcceleratorConfig(rounding=rounding)
    lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
    c, h, w = (int(v) for v in rng.integers(1, 7, 3))
    b = ModelBuilder(cfg)
    x = b.input("x", (c, h + 2, w + 2), dtype)
    k = int(rng.integers(1, 4))
    pad = [int(v) for v in rng.integers(0, k, 4)]
    stride = [int(v) for v in rng.integers(1, 3, 2)]
    mp = b.max_pool("mp", x, kernel=(k, k), stride=stride, padding=pad)
    ap = b.avg_pool("ap", x, kernel=(k, k), stride=stride, padding=pad, pad_value=int(rng.integers(lo, hi + 1)),
                    mult=int(rng.integers(0, 1 << 16)), shift=int(rng.integers(0, 24)), lo=lo, hi=hi)
    s = b.add("add", mp, ap, shift_a=int(rng.integers(0, 4)), shift_b=int(rng.integers(0, 4)),
              shift=int(rng.integers(0, 6)), lo=lo, hi=hi, dtype=dtype)
    cat = b.concat("cat", [s, mp], axis=1)
    gap = b.global_avg_pool("gap", cat, mult=int(rng.integers(0, 1 << 16)), shift=int(rng.integers(0, 30)),
                            lo=lo, hi=hi)
    flat = b.flatten("flat", gap)
    r = b.reshape("r", flat, (2 * c, 1))
    model = b.build([r, s])
    xs = rng.integers(lo, hi + 1, (int(rng.integers(1, 4)), c, h + 2, w + 2)).astype(dtype)
    return model, xs


# Random GEMM problems for the gateware tests (Amaranth, cocotb and the cycle model).
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
