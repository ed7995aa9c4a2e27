"""A small residual network in the IR, used by several tests."""

import numpy as np

from accel.config import AcceleratorConfig
from accel.ir import ModelBuilder


def small_resnet(config: AcceleratorConfig | None = None, seed: int = 0, channels: int = 8):
    cfg = config or AcceleratorConfig()
    rng = np.random.default_rng(seed)

    def mac(n, shape):
        return dict(codes=rng.integers(0, cfg.lut_entries, (n,) + shape).astype(np.uint8),
                    lut=rng.integers(-90, 90, (1, cfg.lut_entries)), bias=rng.integers(-500, 500, n),
                    shift=rng.integers(6, 10, n),
                    mult=rng.integers(1, 1 << 12, n) if cfg.requant.value == "multiply_shift" else None)

    c = channels
    b = ModelBuilder(cfg, metadata={"name": "small_resnet"})
    x = b.input("image", (1, 12, 12), "int8", exponent=7)
    h = b.conv2d("stem", x, **mac(c, (1, 3, 3)), padding=(1, 1, 1, 1), lo=0, hi=127, dtype="int8")
    r = b.conv2d("block.conv1", h, **mac(c, (c, 3, 3)), padding=(1, 1, 1, 1), lo=0, hi=255)
    r = b.conv2d("block.dw", r, **mac(c, (1, 3, 3)), padding=(1, 1, 1, 1), groups=c, lo=0, hi=127, dtype="int8")
    h = b.add("block.add", h, r, shift_a=1, shift=1, lo=0, hi=127, dtype="int8")
    h = b.max_pool("pool", h, kernel=(2, 2))
    p = b.avg_pool("avg", h, kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1), mult=7282, shift=16,
                   lo=0, hi=127)
    h = b.concat("cat", [h, p])
    h = b.global_avg_pool("gap", h, mult=1, shift=5, lo=0, hi=127)
    h = b.flatten("flatten", h)
    logits = b.linear("fc", h, **mac(10, (2 * c,)), raw=True)
    return b.build([logits])
