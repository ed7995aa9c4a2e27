"""The datapath arithmetic contract (v1.2), stated once as plain numpy int64 code.

v1.2 adds the average pool that excludes padding from its sum and divisor (ONNX
``count_include_pad=0``): a 16-bit multiplier and a shift per window size
(:func:`~accel.datapath.contract.avg_pool`); the vector unit's cycle count is unchanged (one
rescale per output either way).

Every executor — the numba engine, its fast backend, the gateware and the
fake-quant training model — is tested bit for bit against these functions.
They are written for clarity, not speed. :mod:`~accel.datapath.limits` holds
the contract's type ranges and field limits, :mod:`~accel.datapath.geometry`
the window sizes and the im2col order.
"""

from .contract import (
    accumulate,
    add,
    avg_pool,
    clamp,
    concat,
    conv2d,
    decode_weights,
    global_avg_pool,
    linear,
    matmul_requant,
    max_pool,
    quantize_input,
    requantize,
    rshift_round,
    saturate,
    wrap,
)
from .geometry import conv_gemm_groups, conv_output_size, im2col, window_counts
from .limits import (
    ADD_INPUT_SHIFT_MAX,
    ADD_SHIFT_MAX,
    DTYPE_RANGES,
    PE_TERMS,
    POOL_MULT_BITS,
    POOL_SHIFT_MAX,
    max_pool_padding_fits,
    pe_decodable,
)

__all__ = ["ADD_INPUT_SHIFT_MAX", "ADD_SHIFT_MAX", "DTYPE_RANGES", "POOL_MULT_BITS", "POOL_SHIFT_MAX",
           "accumulate", "add", "avg_pool", "clamp", "concat", "conv2d", "conv_gemm_groups", "window_counts",
           "conv_output_size", "decode_weights", "global_avg_pool", "im2col", "linear",
           "matmul_requant", "max_pool", "max_pool_padding_fits", "PE_TERMS", "pe_decodable", "quantize_input",
           "requantize",
           "rshift_round", "saturate", "wrap"]
