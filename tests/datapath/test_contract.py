"""Golden values of the datapath contract, worked out by hand from DESIGN.md."""

import numpy as np
import pytest

from accel import datapath as dp
from accel.config import AcceleratorConfig


@pytest.mark.parametrize("value, shift, rounding, expected", [
    (5, 1, "half_up", 3),      # 2.5 -> 3
    (-5, 1, "half_up", -2),    # -2.5 -> -2 (half up, towards +inf)
    (-6, 2, "half_up", -1),    # -1.5 -> -1
    (7, 0, "half_up", 7),      # shift 0 is the identity
    (5, 1, "floor", 2),
    (-5, 1, "floor", -3),      # arithmetic shift floors towards -inf
    (2**31 - 1, 31, "half_up", 1),
    (-(2**31), 31, "half_up", -1),
    (2**30, 31, "half_up", 1),  # exactly one half rounds up
    (2**30 - 1, 31, "half_up", 0),
])
def test_rshift_round(value, shift, rounding, expected):
    assert dp.rshift_round(value, shift, rounding) == expected


def test_wrap_and_saturate_16_bits():
    v = np.array([32767, 32768, -32769, 65536 + 5, -128 * -128 * 3])
    assert dp.wrap(v, 16).tolist() == [32767, -32768, 32767, 5, -16384]
    assert dp.saturate(v, 16).tolist() == [32767, 32767, -32768, 32767, 32767]


def test_saturate_is_per_addition_in_k_order():
    # bias 100, products +200, -200 in an 8-bit accumulator: 100 -> 127 (sat) -> -73.
    acc = dp.accumulate(np.array([[1, 1]]), np.array([[200, -200]]), np.array([100]), 8, "saturate")
    assert acc.tolist() == [[-73]]
    # wrap is order-free: 100 + 200 - 200 = 100.
    assert dp.accumulate(np.array([[1, 1]]), np.array([[200, -200]]), np.array([100]), 8, "wrap").tolist() == [[100]]


def test_extreme_products_and_requantize():
    cfg = AcceleratorConfig()
    codes = np.zeros((1, 4), np.uint8)
    lut = np.full((1, 16), -128)
    x = np.full((1, 4), -128)
    # 4 * 16384 = 65536; >> 9 with half_up = 128 -> clamped to 127.
    assert dp.linear(x, codes, lut, [0], [9], 1, -128, 127, cfg).tolist() == [[127]]
    assert dp.linear(x, codes, lut, [0], [0], 1, -128, 127, cfg, raw=True).tolist() == [[65536]]


def test_multiply_shift_uses_full_width_product():
    cfg = AcceleratorConfig(requant="multiply_shift", mult_bits=31)
    acc = np.array([[2**31 - 1]])
    out = dp.requantize(acc, [61], [2**31 - 1], -128, 127, cfg)
    # (2^31-1)^2 / 2^61 = 1.99999... -> rounds to 2
    assert out.tolist() == [[2]]


def test_decode_weights_per_channel_lut():
    codes = np.array([[0, 1], [1, 0]])
    lut = np.array([[10, 20], [-1, -2]])
    assert dp.decode_weights(codes, lut).tolist() == [[10, 20], [-2, -1]]


def test_quantize_input_rounds_half_up_and_clamps():
    assert dp.quantize_input([0.5, -0.5, 0.25, 10.0, -10.0], 1).tolist() == [1, -1, 1, 20, -20]
    assert dp.quantize_input([100.0, -100.0], 4).tolist() == [127, -128]


def test_conv2d_padding_uses_pad_value():
    cfg = AcceleratorConfig()
    x = np.zeros((1, 1, 1, 1))
    codes = np.zeros((1, 1, 3, 3), np.uint8)
    lut = np.ones((1, 16))
    out = dp.conv2d(x, codes, lut, [0], [0], 1, -128, 127, cfg, padding=(1, 1, 1, 1), pad_value=2)
    assert out.tolist() == [[[[16]]]]  # 8 padded positions x 2


def test_max_pool_padding_limit():
    assert dp.max_pool_padding_fits((2, 3), (1, 2, 1, 2))
    assert not dp.max_pool_padding_fits((2, 3), (2, 0, 0, 0))
    assert not dp.max_pool_padding_fits((2, 3), (0, 0, 0, 3))
    with pytest.raises(ValueError, match=r"max_pool padding \(0, 0, 2, 0\) must be smaller than the kernel"):
        dp.max_pool(np.zeros((1, 1, 3, 3)), (2, 2), (1, 1), (0, 0, 2, 0))


def test_conv_gemm_groups_im2col_order():
    # x[c, h, w] = 100 c + 10 h + w: each patch column names the element it holds.
    x = (100 * np.arange(4)[:, None, None] + 10 * np.arange(2)[None, :, None] + np.arange(3)[None, None, :])[None]
    cols = dp.im2col(x, (2, 2), (1, 1), (0, 0, 0, 0), (1, 1), 0)
    groups = list(dp.conv_gemm_groups(cols, 6, 2))
    assert [sl for sl, _ in groups] == [slice(0, 3), slice(3, 6)]
    first, second = (patch for _, patch in groups)
    assert first.shape == second.shape == (2, 8)  # 1 x 2 output pixels, (2 channels, 2 rows, 2 columns)
    assert first[1].tolist() == [1, 2, 11, 12, 101, 102, 111, 112]  # c, then kernel row, then kernel column
    assert second[0].tolist() == [200, 201, 210, 211, 300, 301, 310, 311]


def test_multipoint_lanes_join_their_channel_by_shift_and_add():
    """Contract v1.3 by hand: acc[n] = acc_0[n] + sum_p (acc_p << s_p) over the points of channel n."""
    cfg = AcceleratorConfig()
    x = np.array([[1, 2, 3]])
    codes = np.array([[1, 1, 1], [2, 2, 2]])      # T = [0, 1, -1, ...]: rows (1, 1, 1) and (-1, -1, -1)
    lut = np.array([[0, 1, -1] + [0] * 13])
    points = (np.array([[1, 0, 0], [0, 2, 0], [1, 1, 1]]), np.array([0, 0, 1]), np.array([3, 1, 2]))
    acc = dp.linear(x, codes, lut, [10, 20], 0, 1, -128, 127, cfg, raw=True, points=points)
    # channel 0: 10 + 6 + (1 << 3) + (-2 << 1) = 20; channel 1: 20 - 6 + (6 << 2) = 38
    assert acc.tolist() == [[20, 38]]
    assert dp.linear(x, codes, lut, [10, 20], [1, 2], 1, -128, 127, cfg, points=points).tolist() == [[10, 10]]
    # the equivalent ordinary layer has the shifted rows folded in
    w = dp.effective_weights(codes, lut, points)
    assert w.tolist() == [[1 + 8, 1 - 2, 1], [3, 3, 3]]


@pytest.mark.parametrize("overflow, expected", [("wrap", [-32768 + 100]), ("saturate", [32767])])
def test_multipoint_combination_wraps_or_saturates(overflow, expected):
    """16-bit accumulator: 100 + (1 << 15) leaves the range; the shifted lane alone (2^15) does too."""
    acc = dp.combine_points(np.array([100]), np.array([[1]]), [0], [15], 16, overflow)
    assert acc.tolist() == expected
    # saturate clamps the shifted lane before the sum: -1 << 16 -> -32768, then 100 - 32768
    assert dp.combine_points(np.array([100]), np.array([[-1]]), [0], [16], 16, "saturate").tolist() == [-32668]
