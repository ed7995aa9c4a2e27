"""The fake-quant PyTorch model against the datapath contract and the engine, bit for bit."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from accel.config import AcceleratorConfig
from accel.data import load_dataset
from accel.datapath import quantize_input
from accel.engine import run_model
from accel.errors import ModelError
from accel.frontend.fakequant import Clamp, FakeQuantModel, RShiftRound, round_ste, to_torch
from accel.frontend.onnx_import import import_onnx
from accel.frontend.quantize import QuantizeOptions, quantize_graph
from accel.frontend.workflow import MODELS_DIR, bundled_models, calibration_images, make_config
from accel.ir import ModelBuilder
from tests.support.contract import assert_matches_contract
from tests.support.strategies import configs, conv_cases, linear_cases, mac_arrays, pool_add_concat_case

FULL = settings().max_examples >= 5000


def assert_fakequant_matches_contract(model, xs, dtype=torch.float64):
    with torch.no_grad():
        got = FakeQuantModel(model, dtype).run(torch.as_tensor(xs), return_all=True)
    assert_matches_contract(model, xs, {name: t.numpy() for name, t in got.items()}, f"fake-quant {dtype}")


@settings(max_examples=5000 if FULL else 150)
@given(conv_cases())
def test_conv2d_matches_contract(case):
    assert_fakequant_matches_contract(*case)


@settings(max_examples=5000 if FULL else 150)
@given(linear_cases())
def test_linear_matches_contract(case):
    assert_fakequant_matches_contract(*case)


@settings(max_examples=2000 if FULL else 60)
@given(st.integers(0, 2**32 - 1), st.sampled_from(["half_up", "floor"]), st.sampled_from(["int8", "uint8"]))
def test_pool_add_concat_reshape_match_contract(seed, rounding, dtype):
    assert_fakequant_matches_contract(*pool_add_concat_case(seed, rounding, dtype))


@st.composite
def networks(draw):
    """A random small network: conv, depthwise conv, residual add, max/avg pools, concat, global pool, linear."""
    cfg = draw(configs())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    in_dtype = draw(st.sampled_from(["int8", "uint8"]))
    act = draw(st.sampled_from([(0, 255), (-128, 127), (0, 100)]))
    c, h, w = draw(st.integers(1, 4)), draw(st.integers(4, 9)), draw(st.integers(4, 9))
    n = draw(st.integers(1, 5))
    b = ModelBuilder(cfg)

    def mac(n_out, codes_shape):
        arrays = mac_arrays(rng, cfg, n_out, codes_shape, extreme=False)
        arrays["shift"] = np.minimum(rng.integers(3, 12, n_out), cfg.max_shift)
        if arrays["mult"] is not None:
            arrays["mult"] = rng.integers(0, 1 << min(cfg.mult_bits, 8), n_out)
        arrays["bias"] = rng.integers(-(1 << min(cfg.acc_bits - 2, 10)), 1 << min(cfg.acc_bits - 2, 10), n_out)
        return arrays

    x = b.input("x", (c, h, w), in_dtype)
    h1 = b.conv2d("conv1", x, **mac(n, (n, c, 3, 3)), padding=(1, 1, 1, 1), lo=act[0], hi=act[1])
    h2 = b.conv2d("dw", h1, **mac(n, (n, 1, 3, 3)), padding=(1, 1, 1, 1), groups=n, lo=act[0], hi=act[1])
    s = b.add("res", h1, h2, shift_a=int(rng.integers(0, 3)), shift_b=int(rng.integers(0, 3)),
              shift=int(rng.integers(0, 3)), lo=act[0], hi=act[1])
    pad = (0, 0, int(rng.integers(0, 2)), int(rng.integers(0, 2)))
    mp = b.max_pool("mp", s, kernel=(2, 2), stride=(2, 2), padding=pad)
    ap = b.avg_pool("ap", s, kernel=(2, 2), stride=(2, 2), padding=pad, pad_value=int(rng.integers(0, 3)),
                    mult=1 << 14, shift=16, lo=act[0], hi=act[1])  # the mean of 4
    cat = b.concat("cat", [mp, ap], axis=1)
    g = b.global_avg_pool("gap", cat, mult=int(rng.integers(1, 1 << 16)), shift=int(rng.integers(16, 24)),
                          lo=act[0], hi=act[1])
    f = b.flatten("flat", g)
    y = b.linear("fc", f, **mac(3, (3, 2 * n)), raw=True)
    model = b.build([y])
    xlo, xhi = (-128, 127) if in_dtype == "int8" else (0, 255)
    xs = rng.integers(xlo, xhi + 1, (draw(st.integers(1, 3)), c, h, w)).astype(in_dtype)
    return model, xs


@settings(max_examples=2000 if FULL else 60)
@given(networks())
def test_random_networks_match_the_contract_and_the_engine(case):
    model, xs = case
    assert_fakequant_matches_contract(model, xs)
    engine = run_model(model, xs, return_all=True)
    with torch.no_grad():
        got = FakeQuantModel(model).run(torch.as_tensor(xs), return_all=True)
    for name, want in engine.items():
        assert np.array_equal(got[name].numpy().astype(np.int64), want.astype(np.int64)), name


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits", [16, 32])
@pytest.mark.parametrize("k", [1, 600, 5000])
def test_long_reductions_at_the_extremes(k, acc_bits, overflow):
    """Sums that overflow 16-bit accumulators: wrapped once, or saturated after every addition."""
    rng = np.random.default_rng(k + acc_bits)
    cfg = AcceleratorConfig(acc_bits=acc_bits, overflow=overflow)
    b = ModelBuilder(cfg)
    x = b.input("x", (k,), "int8")
    arrays = mac_arrays(rng, cfg, 4, (4, k), extreme=False)
    arrays["lut"][0, :2] = -128
    arrays["codes"][:2] = rng.integers(0, 2, (2, k))
    y = b.linear("fc", x, **arrays, raw=True)
    z = b.linear("fc2", x, **arrays, lo=-128, hi=127)
    model = b.build([y, z])
    xs = rng.integers(-128, 128, (3, k)).astype(np.int8)
    xs[0] = -128
    assert_fakequant_matches_contract(model, xs)


def test_saturating_conv_runs_the_sequential_path():
    """A 16-bit saturating conv whose partial sums leave the range, padding with a non-zero pad value."""
    rng = np.random.default_rng(3)
    cfg = AcceleratorConfig(acc_bits=16, overflow="saturate")
    b = ModelBuilder(cfg)
    x = b.input("x", (4, 5, 5), "uint8")
    arrays = mac_arrays(rng, cfg, 4, (4, 2, 3, 3), extreme=True)
    y = b.conv2d("conv", x, **arrays, padding=(1, 2, 0, 1), groups=2, pad_value=200, raw=True)
    model = b.build([y])
    xs = rng.integers(0, 256, (2, 4, 5, 5)).astype(np.uint8)
    fq = FakeQuantModel(model)
    assert fq.layers["l0"]._may_saturate(fq.layers["l0"].weight())
    assert_fakequant_matches_contract(model, xs)


def test_float32_mode_is_exact_while_sums_stay_below_2_to_24():
    rng = np.random.default_rng(5)
    cfg = AcceleratorConfig(requant="multiply_shift")
    b = ModelBuilder(cfg)
    x = b.input("x", (3, 8, 8), "int8")
    arrays = mac_arrays(rng, cfg, 6, (6, 3, 3, 3), extreme=False)
    arrays["bias"] = rng.integers(-1000, 1000, 6)
    h = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), lo=0, hi=127)
    f = b.flatten("flat", h)
    arrays = mac_arrays(rng, cfg, 10, (10, 6 * 64), extreme=False)
    arrays["bias"] = rng.integers(-1000, 1000, 10)
    y = b.linear("fc", f, **arrays, raw=True)
    model = b.build([y])
    xs = rng.integers(-128, 128, (8, 3, 8, 8)).astype(np.int8)
    assert_fakequant_matches_contract(model, xs, torch.float32)


def test_straight_through_gradients_reach_the_lut_and_the_input():
    rng = np.random.default_rng(1)
    cfg = AcceleratorConfig()
    b = ModelBuilder(cfg)
    x = b.input("x", (2, 6, 6), "int8")
    arrays = mac_arrays(rng, cfg, 4, (4, 2, 3, 3), extreme=False)
    arrays["shift"] = np.full(4, 6)
    arrays["bias"] = np.zeros(4, int)
    h = b.conv2d("conv", x, **arrays, lo=-128, hi=127)
    y = b.linear("fc", b.flatten("flat", h), **mac_arrays(rng, cfg, 3, (3, 64), extreme=False), raw=True)
    model = b.build([y])
    fq = to_torch(model)
    for layer in fq.layers.values():
        if hasattr(layer, "lut"):
            assert not layer.lut.requires_grad  # frozen by default
            layer.lut.requires_grad_(True)
    xt = torch.as_tensor(rng.integers(-20, 20, (2, 2, 6, 6)), dtype=torch.float64).requires_grad_(True)
    fq(xt).sum().backward()
    assert xt.grad is not None and torch.isfinite(xt.grad).all() and xt.grad.abs().sum() > 0
    for layer in fq.layers.values():
        if hasattr(layer, "lut"):
            assert layer.lut.grad is not None and layer.lut.grad.abs().sum() > 0


def test_ste_helpers_forward_exact_backward_real_valued():
    v = torch.tensor([-5.0, -4.0, 3.0, 4.0, 1000.0], dtype=torch.float64, requires_grad=True)
    s = torch.tensor(1)
    y = RShiftRound.apply(v, s, None, True)
    assert y.tolist() == [-2.0, -2.0, 2.0, 2.0, 500.0]  # half up: (v + 1) >> 1
    assert RShiftRound.apply(v, s, None, False).tolist() == [-3.0, -2.0, 1.0, 2.0, 500.0]
    z = Clamp.apply(y, -128.0, 127.0)
    z.sum().backward()
    assert v.grad.tolist() == [0.5, 0.5, 0.5, 0.5, 0.0]  # 1/2^s inside, 0 where clamped
    w = torch.tensor([0.5, 1.49, -0.5], requires_grad=True)
    r = round_ste(w)
    assert r.tolist() == [1.0, 1.0, 0.0]
    r.sum().backward()
    assert w.grad.tolist() == [1.0, 1.0, 1.0]


def test_bad_dtype_and_input_shape():
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (4,), "int8")
    rng = np.random.default_rng(0)
    model = b.build([b.linear("fc", x, **mac_arrays(rng, AcceleratorConfig(), 2, (2, 4), False), raw=True)])
    with pytest.raises(ModelError, match="float64 or torch.float32"):
        FakeQuantModel(model, torch.int32)
    with pytest.raises(ModelError, match=r"input 'x' has shape \(2, 5\), expected \(N, 4\)"):
        FakeQuantModel(model)(torch.zeros(2, 5))


# ----------------------------------------------------------------------------------------------
# Whole bundled models on their whole test sets


@pytest.fixture(scope="module")
def bundled():
    return bundled_models()


@pytest.mark.parametrize("name, requant, lut", [
    ("cnn_digits", "shift", None), ("cnn_mnist", "shift", None), ("resnet_mnist", "shift", None),
    ("mobilenet_mnist", "shift", None), ("cnn_digits", "multiply_shift", "uniform"),
])
def test_bundled_model_predictions_agree_with_the_engine(name, requant, lut, bundled):
    """``accel quantize``'s defaults (and the multiply_shift baseline): the fake-quant logits equal the
    engine's on the whole test split."""
    data_name = bundled[name]["data"]
    graph = import_onnx(MODELS_DIR / f"{name}.onnx")
    calib_x, _ = calibration_images(graph, data_name)
    config = make_config().replace(requant=requant)
    options = QuantizeOptions() if lut is None else QuantizeOptions(lut=lut)
    model = quantize_graph(graph, calib_x, config, options)
    data = load_dataset(data_name, "test")
    info = model.tensors[model.inputs[0]]
    xi = quantize_input(data.x, info.exponent, *model.config.act_range(info.dtype == "int8")).astype(info.dtype)
    engine = run_model(model, xi)[model.outputs[0]].astype(np.int64)
    with torch.no_grad():
        fq = FakeQuantModel(model)(torch.as_tensor(xi)).numpy()
    agreement = float(np.mean(fq.argmax(1) == engine.argmax(1)))
    assert agreement >= 0.999, f"{name}: predictions agree on {agreement:.4%} of {len(xi)} images"
    assert np.array_equal(fq.astype(np.int64), engine), f"{name}: float64 logits differ from the engine's"
    with torch.no_grad():
        fq32 = FakeQuantModel(model, torch.float32)(torch.as_tensor(xi)).numpy()
    assert float(np.mean(fq32.argmax(1) == engine.argmax(1))) >= 0.999
