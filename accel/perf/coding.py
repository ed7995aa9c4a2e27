"""Zero-run-length + Exp-Golomb coding of 8-bit activation maps.

A map of ``n`` bytes (its length is known to both sides) is coded as tokens:
for each non-zero value, the number of zeros before it as an Exp-Golomb code
of order ``k``, then the value's 8 bits; trailing zeros end the stream with one
run code that reaches ``n``. ReLU maps are mostly zeros in runs, so the run
codes are short; a map without zeros costs one extra bit per value (k = 0).

:func:`encode` and :func:`decode` are the real coder (bits as a ``uint8`` 0/1
array); :func:`coded_bits` counts the same bits without building them, for
whole data sets.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exp_golomb_bits", "encode", "decode", "coded_bits"]


def exp_golomb_bits(value, k: int = 0) -> np.ndarray:
    """Length in bits of the order-``k`` Exp-Golomb code of each non-negative ``value``."""
    v = np.asarray(value, dtype=np.int64) + (1 << k)
    return 2 * _floor_log2(v) - k + 1


def _floor_log2(v: np.ndarray) -> np.ndarray:
    # Exact for integers (float log2 can round 2^m - 1 up to m).
    out = np.zeros(v.shape, dtype=np.int64)
    v = v.copy()
    for step in (32, 16, 8, 4, 2, 1):
        big = v >= (np.int64(1) << step)
        out += np.where(big, step, 0)
        v = np.where(big, v >> step, v)
    return out


def _eg_write(bits: list[int], value: int, k: int) -> None:
    v = value + (1 << k)
    width = v.bit_length()
    bits.extend([0] * (width - 1 - k))
    bits.extend((v >> i) & 1 for i in range(width - 1, -1, -1))


def _eg_read(bits: np.ndarray, pos: int, k: int) -> tuple[int, int]:
    zeros = 0
    while bits[pos + zeros] == 0:
        zeros += 1
    width = zeros + k + 1
    v = 0
    for b in bits[pos + zeros:pos + zeros + width]:
        v = (v << 1) | int(b)
    return v - (1 << k), pos + zeros + width


def encode(values, k: int = 0) -> np.ndarray:
    """The code of a flat map of 8-bit values (int8 or uint8) as an array of bits."""
    data = np.asarray(values).reshape(-1).astype(np.int64) & 0xFF
    bits: list[int] = []
    run = 0
    for v in data.tolist():
        if v == 0:
            run += 1
            continue
        _eg_write(bits, run, k)
        bits.extend((v >> i) & 1 for i in range(7, -1, -1))
        run = 0
    if run:
        _eg_write(bits, run, k)
    return np.array(bits, dtype=np.uint8)


def decode(bits, n: int, k: int = 0, signed: bool = True) -> np.ndarray:
    """The ``n`` values coded in ``bits`` (int8 when ``signed``, else uint8)."""
    bits = np.asarray(bits, dtype=np.uint8)
    out = np.zeros(n, dtype=np.int64)
    pos = i = 0
    while i < n:
        run, pos = _eg_read(bits, pos, k)
        i += run
        if i >= n:
            break
        v = 0
        for b in bits[pos:pos + 8]:
            v = (v << 1) | int(b)
        pos += 8
        out[i] = v
        i += 1
    if pos != len(bits):
        raise ValueError(f"coded stream has {len(bits) - pos} bits left after {n} values")
    out = out.astype(np.uint8)
    return out.view(np.int8) if signed else out


def coded_bits(maps, k: int = 0) -> np.ndarray:
    """Bits of :func:`encode` for each map of a batch (first axis), without building them."""
    maps = np.asarray(maps)
    flat = maps.reshape(maps.shape[0], -1)
    b, n = flat.shape
    nonzero = flat != 0
    out = np.zeros(b, dtype=np.int64)
    for i in range(b):
        idx = np.flatnonzero(nonzero[i])
        runs = np.diff(np.concatenate([[-1], idx])) - 1
        total = int(exp_golomb_bits(runs, k).sum()) + 8 * len(idx)
        tail = n - 1 - (idx[-1] if len(idx) else -1)
        if tail:
            total += int(exp_golomb_bits(np.array([tail]), k)[0])
        out[i] = total
    return out
