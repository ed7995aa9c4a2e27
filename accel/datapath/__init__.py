"""The datapath arithmetic contract (v1.3), stated once as plain numpy int64 code.

v1.3 adds multipoint layers (Liu et al.): a conv/linear layer may carry extra weight-code rows
(``point_codes``, through the same LUT as their channel) that the array computes as ordinary extra
columns, each into its own ``acc_bits`` accumulator (bias 0, the layer's overflow rule). Before
requantization, for each extra row ``p`` in file order, channel ``n = point_channel[p]`` takes
``acc[n] = acc[n] + (acc_p << point_shift[p])`` (``point_shift`` 0..16) in ``acc_bits`` two's
complement: under ``wrap`` both the shifted value and the sum wrap (order-free, the exact sum of
all lanes wrapped once); under ``saturate`` the shifted value is clamped to the accumulator range,
then the sum (:func:`~accel.datapath.contract.combine_points`). Then the channel requantizes (or
emits ``acc`` raw) as before. The combination is the vector unit's shift-and-add.

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
    combine_points,
    concat,
    conv2d,
    decode_weights,
    effective_weights,
    global_avg_pool,
    linear,
    matmul_requant,
    max_pool,
    point_weights,
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
    POINT_SHIFT_MAX,
    POOL_MULT_BITS,
    POOL_SHIFT_MAX,
    max_pool_padding_fits,
    pe_decodable,
)

__all__ = ["ADD_INPUT_SHIFT_MAX", "ADD_SHIFT_MAX", "DTYPE_RANGES", "POINT_SHIFT_MAX", "POOL_MULT_BITS",
           "POOL_SHIFT_MAX", "combine_points", "effective_weights", "point_weights",
           "accumulate", "add", "avg_pool", "clamp", "concat", "conv2d", "conv_gemm_groups", "window_counts",
           "conv_output_size", "decode_weights", "global_avg_pool", "im2col", "linear",
           "matmul_requant", "max_pool", "max_pool_padding_fits", "PE_TERMS", "pe_decodable", "quantize_input",
           "requantize",
           "rshift_round", "saturate", "wrap"]
