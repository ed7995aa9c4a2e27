"""Weight quantization: LUT families, exponents, codes, the multiply_shift baseline, bad input."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.errors import ConfigError, ModelImportError
from accel.frontend.lut import (
    DEFAULT_FAMILY,
    FAMILIES,
)
from accel.frontend.metrics import signal_noise_energy, sqnr_db
from accel.frontend.onnx_import import import_onnx
from accel.frontend.weights import MAX_EXPONENT_SPREAD, WeightQuant, quantize_weights
from accel.frontend.workflow import MODELS_DIR


def weight_sqnr(w, approx):
    return sqnr_db(*signal_noise_energy(w, approx))


USER = np.array([-100, -50, -20, -6, 0, 6, 20, 50, 100], np.int8)


def conv_weights(seed=0, shape=(8, 4, 3, 3)):
    """Bell-shaped weights with long tails and channel scales spread over a factor of 20."""
    rng = np.random.default_rng(seed)
    w = rng.laplace(size=shape) * 0.05
    return w * np.geomspace(0.2, 4.0, shape[0]).reshape((-1,) + (1,) * (len(shape) - 1))


def check_invariants(q: WeightQuant, w: np.ndarray, bits: int, n_levels: int, power_of_two: bool = True):
    n = w.shape[0]
    entries = 1 << bits
    assert q.codes.shape == w.shape and q.codes.dtype == np.uint8
    assert int(q.codes.max()) < entries
    assert q.lut.dtype == np.int8 and q.lut.shape in ((1, entries), (n, entries))
    assert q.step.shape == (n,) and q.step.dtype == np.float64 and np.all(q.step > 0)
    if power_of_two:
        assert np.array_equal(np.ldexp(1.0, -q.exponent), q.step)
    for r in range(q.lut.shape[0]):
        assert np.unique(q.lut[r]).size <= n_levels
    # dequantize is lut[row, codes] * step
    rows = np.zeros(n, int) if q.lut.shape[0] == 1 else np.arange(n)
    flat = q.codes.reshape(n, -1)
    want = q.lut.astype(np.float64)[rows[:, None], flat] * q.step[:, None]
    assert np.array_equal(q.dequantize(), want.reshape(w.shape))
    # every weight took its nearest level of its table
    scaled = w.reshape(n, -1) / q.step[:, None]
    for i in range(n):
        lv = np.unique(q.lut[rows[i]]).astype(np.float64)
        err = np.abs(scaled[i] - q.lut[rows[i]][flat[i]])
        best = np.abs(scaled[i][:, None] - lv[None, :]).min(axis=1)
        assert np.all(err <= best + 1e-9)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("granularity", ["layer", "channel"])
@pytest.mark.parametrize("lut_scope", ["layer", "channel"])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_every_family_scope_and_width(family, granularity, lut_scope, bits):
    w = conv_weights(bits)
    user = {2: np.array([-64, 0, 32, 64], np.int8), 3: USER[[0, 1, 2, 4, 6, 7, 8]]}.get(bits, USER)
    levels = 4 if bits == 2 else None
    q = quantize_weights(w, family=family, weight_bits=bits, granularity=granularity, lut_scope=lut_scope,
                         levels=levels, user_lut=user if family == "user" else None, name="conv1")
    check_invariants(q, w, bits, levels or (1 << bits))
    assert q.lut.shape[0] == (1 if lut_scope == "layer" else w.shape[0])
    if granularity == "layer":
        assert np.unique(q.step).size == 1
    if family != "user":
        # the exponent puts the largest weight of each channel (of the layer) at 64 or more on the int8 grid,
        # and each table's largest level lands in 64..127 (the table uses the int8 range)
        amax = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        if granularity == "layer":
            amax = np.full_like(amax, amax.max())
        assert np.all(amax / q.step > 63.75)
        top = np.abs(q.lut.astype(int)).max(axis=1)
        if granularity == "layer":  # one exponent: only the table of the largest channel reaches 64
            top = top.max(keepdims=True)
        assert np.all(top >= (64 if family in ("mse", "pwlq") else 32)) and np.all(top <= 127)
    if family in ("uniform", "pwlq", "mse") and granularity == "channel":
        assert weight_sqnr(w, q.dequantize()) > {2: 3, 3: 8, 4: 13, 8: 28}[bits]
    else:
        assert weight_sqnr(w, q.dequantize()) > 0


def test_default_family_is_mse_and_more_bits_mean_less_error():
    w = conv_weights(7)
    assert DEFAULT_FAMILY == "mse"
    errs = [np.sum((quantize_weights(w, weight_bits=b).dequantize() - w) ** 2) for b in (2, 3, 4, 5, 8)]
    assert all(a > b for a, b in zip(errs, errs[1:]))
    assert weight_sqnr(w, quantize_weights(w, weight_bits=8).dequantize()) > 40


def test_user_levels_are_kept_and_exponents_searched():
    w = conv_weights(3)
    q = quantize_weights(w, family="user", user_lut=USER, name="conv")
    assert np.array_equal(np.unique(q.lut), np.unique(USER))
    assert set(q.lut[0, :USER.size].tolist()) == set(USER.tolist())
    # the searched exponents are at least as good as the plain max-based ones
    check_invariants(q, w, 4, 16)
    assert weight_sqnr(w, q.dequantize()) > 10


def test_fewer_levels_on_4_bit_hardware():
    w = conv_weights(4)
    for levels, family in itertools.product((2, 3, 4, 7, 8), ("uniform", "pot", "apot", "pwlq", "mse")):
        q = quantize_weights(w, family=family, levels=levels)
        assert np.unique(q.dequantize() / q.step.reshape(-1, 1, 1, 1)).size <= levels
        assert q.lut.shape == (1, 16)


def test_baseline_free_scales():
    w = conv_weights(5)
    q = quantize_weights(w, family="uniform", power_of_two=False)
    check_invariants(q, w, 4, 16, power_of_two=False)
    amax = np.abs(w).reshape(8, -1).max(axis=1)
    assert np.allclose(amax / q.step, 127.0)
    with pytest.raises(ValueError, match="not a power of two"):
        _ = q.exponent
    lv = q.lut[0].astype(int)
    assert np.array_equal(np.unique(lv), -np.unique(lv)[::-1])  # symmetric uniform levels
    assert np.ptp(np.diff(np.unique(lv))) <= 1
    pot = quantize_weights(w, family="uniform")
    # a free mantissa per channel is no worse than a power of two per channel (same shared table shape)
    assert weight_sqnr(w, q.dequantize()) > weight_sqnr(w, pot.dequantize()) - 1.0


def test_zero_and_negligible_channels():
    w = conv_weights(6)
    w[2] = 0.0
    w[5] *= 2.0 ** -40
    for family, scope in itertools.product(("uniform", "mse", "pwlq"), ("layer", "channel")):
        q = quantize_weights(w, family=family, lut_scope=scope)
        e = q.exponent
        assert np.all(q.dequantize()[2] == 0)
        assert e.max() - e.min() <= MAX_EXPONENT_SPREAD
        assert np.all(np.abs(q.dequantize()[5]) <= np.abs(w).max() * 2.0 ** -10)
    q = quantize_weights(np.zeros((3, 4)), family="mse")
    assert np.all(q.dequantize() == 0) and np.array_equal(q.exponent, np.zeros(3, int))


def test_deterministic():
    w = conv_weights(8)
    for family in FAMILIES:
        kw = dict(family=family, user_lut=USER if family == "user" else None, lut_scope="channel")
        a, b = quantize_weights(w, **kw), quantize_weights(w.copy(), **kw)
        assert np.array_equal(a.codes, b.codes) and np.array_equal(a.lut, b.lut) and np.array_equal(a.step, b.step)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(family="lloyd"), ConfigError, r"layer 'fc1': LUT family 'lloyd' is not one of uniform, pot"),
    (dict(weight_bits=9), ConfigError, r"layer 'fc1': weight_bits 9, expected an integer in 2..8"),
    (dict(weight_bits=1), ConfigError, r"weight_bits 1"),
    (dict(granularity="tensor"), ConfigError, r"granularity 'tensor' is not one of layer, channel"),
    (dict(lut_scope="row"), ConfigError, r"lut_scope 'row'"),
    (dict(levels=17), ConfigError, r"levels 17, expected an integer in 2..16 for 4-bit weights"),
    (dict(levels=1), ConfigError, r"levels 1"),
    (dict(family="user"), ConfigError, r"'user' needs user_lut"),
    (dict(family="user", user_lut=np.arange(17)), ConfigError, r"17 distinct levels, expected at most 16"),
    (dict(family="user", user_lut=[0, 200]), ConfigError, r"integers in -128..127"),
    (dict(family="user", user_lut=[0.5, 1]), ConfigError, r"integers in -128..127"),
    (dict(family="user", user_lut=[0, 0]), ConfigError, r"only zeros"),
    (dict(family="user", user_lut=[]), ConfigError, r"non-empty 1-D"),
])
def test_bad_arguments_name_the_layer_and_field(kwargs, error, match):
    with pytest.raises(error, match=match):
        quantize_weights(np.ones((2, 3)), name="fc1", **kwargs)


@pytest.mark.parametrize("weights, match", [
    (np.array([[1.0, np.nan]]), r"layer 'fc1': weights hold NaN or Inf \(output channel 0\)"),
    (np.array([[1.0, 2.0], [np.inf, 0.0]]), r"output channel 1"),
    (np.ones(4), r"weights of shape \(4,\), expected a non-empty tensor with the output channel first"),
    (np.ones((0, 3)), r"weights of shape \(0, 3\)"),
])
def test_bad_weights(weights, match):
    with pytest.raises(ModelImportError, match=match):
        quantize_weights(weights, name="fc1")


def bundled_weight_tensors():
    """The conv/linear weights (BatchNorm folded) of every bundled model."""
    out = {}
    for name in ("cnn_digits", "cnn_mnist", "resnet_mnist", "mobilenet_mnist"):
        graph = import_onnx(MODELS_DIR / f"{name}.onnx")
        out[name] = [n.params["weight"] for n in graph.nodes if n.op in ("conv", "linear")]
    return out


def test_default_family_has_the_best_sqnr_on_real_trained_weights():
    """At 4 bits, per-channel exponents, one LUT per layer: mse beats every other family on every bundled model."""
    for model, tensors in bundled_weight_tensors().items():
        sig = sum(float(np.sum(w * w)) for w in tensors)
        sqnr = {}
        for family in ("uniform", "pot", "apot", "pwlq", "mse"):
            noise = sum(float(np.sum((quantize_weights(w, family=family).dequantize() - w) ** 2)) for w in tensors)
            sqnr[family] = 10 * np.log10(sig / noise)
        assert max(sqnr, key=sqnr.get) == DEFAULT_FAMILY, (model, sqnr)
        assert sqnr["mse"] > 17, (model, sqnr)


@settings(max_examples=80)
@given(st.integers(0, 2**32 - 1), st.sampled_from(FAMILIES), st.sampled_from([2, 3, 4, 5, 8]),
       st.sampled_from(["layer", "channel"]), st.sampled_from(["layer", "channel"]), st.booleans(),
       st.sampled_from([(1, 1), (3, 5), (6, 2, 3, 3), (4, 1, 1, 1), (2, 70)]))
def test_invariants_on_random_tensors(seed, family, bits, granularity, lut_scope, power_of_two, shape):
    """Random shapes, scales (over 2^-20..2^10) and settings: codes, tables, steps and nearest levels hold."""
    rng = np.random.default_rng(seed)
    w = rng.standard_t(3, size=shape) * 2.0 ** rng.uniform(-20, 10, size=(shape[0],) + (1,) * (len(shape) - 1))
    if rng.random() < 0.2:
        w[0] = 0.0
    user = np.unique(rng.integers(-128, 128, size=int(rng.integers(2, 1 << bits)))) if family == "user" else None
    if user is not None and not np.any(user):
        user = np.array([0, 1])
    levels = int(rng.integers(2, (1 << bits) + 1)) if rng.random() < 0.3 else None
    if user is not None and levels is not None:
        levels = max(levels, user.size)
    q = quantize_weights(w, family=family, weight_bits=bits, granularity=granularity, lut_scope=lut_scope,
                         levels=levels, user_lut=user, power_of_two=power_of_two, name="layer")
    check_invariants(q, w, bits, levels or (1 << bits), power_of_two)


# --- LUT families for multiplier-free PEs (config.pe_kind) ----------------------------------------

@pytest.mark.parametrize("pe_kind,family", [("shift", "pot"), ("shift_add", "pot"), ("shift_add", "apot")])
@pytest.mark.parametrize("lut_scope,levels", [("layer", None), ("channel", None), ("channel", 5)])
def test_multiplier_free_pe_kinds_get_decodable_luts(pe_kind, family, lut_scope, levels):
    from accel.datapath import pe_decodable

    w = np.random.default_rng(8).normal(size=(6, 3, 3, 3)) * np.array([0.1, 1, 3, 0.01, 0.5, 2])[:, None, None, None]
    q = quantize_weights(w, family=family, lut_scope=lut_scope, levels=levels, pe_kind=pe_kind)
    assert pe_decodable(q.lut, pe_kind).all()
    err = q.dequantize() - w
    # Exact powers of two cost a few dB against the free-alpha fit of the general PE (9.6-17.7 dB here).
    assert 10 * np.log10((w ** 2).sum() / (err ** 2).sum()) > 9
    if family == "pot" and pe_kind == "shift" and lut_scope == "layer":
        assert set(np.unique(q.lut).tolist()) <= {0, 1, 2, 4, 8, 16, 32, 64, -1, -2, -4, -8, -16, -32, -64, -128}


@pytest.mark.parametrize("power_of_two", [True, False])
def test_multiplier_free_tables_take_a_coarser_exponent_rather_than_clip(power_of_two):
    """A shift PE's table tops out at 64: weights scaled up to 96..127 would clip to it, halving the
    largest weights. One coarser exponent keeps them: the largest weights come back within a third
    (the pot grid's rounding), and the whole layer loses less than with the clipped fit."""
    w = np.random.default_rng(3).uniform(-1, 1, size=(4, 64)) * np.array([1.0, 0.9, 0.8, 0.95])[:, None]
    q = quantize_weights(w, family="pot", pe_kind="shift", power_of_two=power_of_two)
    big = np.abs(w) > 0.75 * np.abs(w).max(axis=1, keepdims=True)
    assert np.all(np.abs(q.dequantize()[big] - w[big]) <= np.abs(w[big]) / 3 + 1e-12)
    assert (q.step > quantize_weights(w, family="pot", power_of_two=power_of_two).step).all()  # coarser


@pytest.mark.parametrize("pe_kind,family", [("shift", "mse"), ("shift", "apot"), ("shift_add", "uniform")])
def test_a_family_the_pe_kind_cannot_decode_is_refused_in_one_line(pe_kind, family):
    with pytest.raises(ConfigError, match=rf"^LUT family '{family}' cannot be decoded by the '{pe_kind}' PEs "
                                          r"\(config\.pe_kind\); use --lut pot or "):
        quantize_weights(np.ones((2, 3)), family=family, pe_kind=pe_kind)


def test_a_user_lut_the_pe_kind_cannot_decode_is_refused():
    with pytest.raises(ConfigError, match=r"^user_lut level 3 cannot be decoded by the 'shift' PEs"):
        quantize_weights(np.ones((2, 3)), family="user", user_lut=np.array([-4, 0, 3]), pe_kind="shift")
    q = quantize_weights(np.ones((2, 3)), family="user", user_lut=np.array([-4, 0, 3]), pe_kind="shift_add")
    assert set(np.unique(q.lut).tolist()) <= {-4, 0, 3}
