"""GOP/s of the engine's numba MAC kernel (the path left for saturating accumulators that can overflow).

A 3x3 conv, 32 -> 32 channels on 16x16, batch 32, uint8 inputs, 16-bit accumulator, for both overflow
modes, 2 threads; median of 5 runs after a warm-up (compilation). Prints one line per mode.

Usage: ``python bench/numba_mac.py``
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("NUMBA_NUM_THREADS", "2")
ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from accel.config import AcceleratorConfig  # noqa: E402
from accel.engine import Engine  # noqa: E402
from accel.ir import ModelBuilder  # noqa: E402


def conv_model(overflow: str, rng: np.random.Generator):
    cfg = AcceleratorConfig(acc_bits=16, overflow=overflow)
    b = ModelBuilder(cfg)
    x = b.input("x", (32, 16, 16), "uint8")
    lut = rng.integers(-128, 128, (32, cfg.lut_entries)).astype(np.int8)
    y = b.conv2d("conv", x, codes=rng.integers(0, cfg.lut_entries, (32, 32, 3, 3)).astype(np.uint8), lut=lut,
                 bias=rng.integers(-1000, 1000, 32), shift=np.full(32, 6), padding=(1, 1, 1, 1))
    return b.build([y])


def main() -> int:
    rng = np.random.default_rng(0)
    xs = rng.integers(0, 256, (32, 32, 16, 16)).astype(np.uint8)
    ops = 2 * 32 * 32 * 9 * 16 * 16 * 32
    for overflow in ("saturate", "wrap"):
        engine = Engine(conv_model(overflow, rng), "reference")
        engine.run(xs)
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            engine.run(xs)
            times.append(time.perf_counter() - t0)
        print(f"numba MAC kernel, {overflow}: {ops / np.median(times) / 1e9:.2f} GOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
