"""The datapath arithmetic contract (v1), stated once as plain numpy int64 code.

Every executor — the numba engine, its fast backend, the gateware and the
fake-quant training model — is tested bit for bit against these functions.
They are written for clarity, not speed.
"""

from .contract import (
    POOL_MULT_BITS,
    accumulate,
    add,
    avg_pool,
    clamp,
    concat,
    conv2d,
    conv_output_size,
    decode_weights,
    global_avg_pool,
    im2col,
    linear,
    matmul_requant,
    max_pool,
    quantize_input,
    requantize,
    rshift_round,
    saturate,
    wrap,
)

__all__ = ["POOL_MULT_BITS", "accumulate", "add", "avg_pool", "clamp", "concat", "conv2d",
           "conv_output_size", "decode_weights", "global_avg_pool", "im2col", "linear",
           "matmul_requant", "max_pool", "quantize_input", "requantize", "rshift_round",
           "saturate", "wrap"]
