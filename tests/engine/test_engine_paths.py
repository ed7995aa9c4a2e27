"""Which exact path each layer takes, and that every path equals the contract near its bounds."""

import numpy as np
import pytest

from accel.config import AcceleratorConfig
from accel.engine import Engine, run_model_contract
from accel.engine.capability import (
    FUSED_KERNELS,
    INT_KERNELS,
    QCONV_KERNELS,
    forced_verdicts,
    kernel_verdict,
    qadd_plan,
)
from accel.engine.onnx_lowering import (
    F32_EXACT_BOUND,
    INT8_CONV_MIN_K,
    INT8_CONV_MIN_N,
    QCONV_KERNEL,
    QCONV_MIN_GROUP_CHANNELS,
    QGEMM_KERNEL,
    _qadd_bias,
    _split_chunks,
    int_kernel_name,
    lower_layers,
    mac_path,
    product_bounds,
    segment_inputs,
    session_config,
    shifted_input,
)
from accel.engine.torch_backend import cuda_available
from accel.frontend import quantize_onnx
from accel.frontend.workflow import MODELS_DIR, bundled_models
from accel.ir import MAC_OPS, ModelBuilder
from tests.support.strategies import mac_arrays

#: "qconv" marks the ReLU-clamped convolutions that run as one QLinearConv where that kernel passed its self-test,
#: float32 otherwise: every one with 3 or more input channels (the first layers read 1 channel), ReLU-clamped or
#: clamped to int8 (resnet's body.3), and resnet's residual adds. "qgemm" marks the ReLU-clamped linear layers that
#: run as one QGemm where that kernel passed, float32 otherwise; "wide" the one among them whose bound passes 2^24
#: (cnn_mnist's 1568 -> 64, its rounding saturating from 2^22 on): float64 without the kernel. Every other layer of
#: the bundled models runs in float32.
WIDE = "wide"
QCONV = "qconv"
QGEMM = "qgemm"
RAW_INT8 = "raw-int8"  # a raw classifier reading a uint8-held output: int32 GEMM and bias (path int8)
#: marker -> (path with the integer kernels, path without them)
MARKED_PATHS = {WIDE: (QGEMM, "f64"), QCONV: (QCONV, "f32"), QGEMM: (QGEMM, "f32"), RAW_INT8: ("int8", "f32")}
BUNDLED_PATHS = {
    "cnn_mnist": {"features.features.0.Conv": "f32", "features.features.2.MaxPool": "f32",
                  "features.features.3.Conv": QCONV, "features.features.5.MaxPool": "f32",
                  "classifier.classifier.0.Flatten": "f32", "classifier.classifier.1.Gemm": WIDE,
                  "classifier.classifier.3.Gemm": RAW_INT8},
    "resnet_mnist": {**dict.fromkeys(
        ["net.net.0.Conv", "net.net.3.MaxPool", "net.net.10.Flatten"], "f32"), "net.net.11.Gemm": RAW_INT8,
        # the residual adds run as a QLinearAdd or a 1x1 QLinearConv over both inputs (add_fits_qconv), the global
        # average pool as a QLinearGlobalAveragePool (gap_fits_qconv)
        **dict.fromkeys(["net.net.4.body.body.0.Conv", "net.net.4.body.body.3.Conv", "net.net.4.Add", "net.net.5.Conv",
                         "net.net.8.body.body.0.Conv", "net.net.8.body.body.3.Conv", "net.net.8.Add",
                         "net.net.9.GlobalAveragePool"], QCONV)},
    "mobilenet_mnist": {**dict.fromkeys(["net.net.0.Conv", "net.net.22.Flatten"], "f32"), "net.net.23.Gemm": RAW_INT8,
        **dict.fromkeys([f"net.net.{i}.Conv" for i in (3, 6, 9, 12, 15, 18)] + ["net.net.21.GlobalAveragePool"],
                        QCONV)},
    # features.3 meets the qconv proof, but its 4x4 map is below QCONV_MIN_POSITIONS (see the test below).
    "cnn_digits": {"features.features.0.Conv": "f32", "features.features.2.MaxPool": "f32",
                   "features.features.3.Conv": "f32", "features.features.5.MaxPool": "f32",
                   "classifier.classifier.0.Flatten": "f32", "classifier.classifier.1.Gemm": QGEMM,
                   "classifier.classifier.3.Gemm": RAW_INT8},
}
ALL_KERNELS = [*INT_KERNELS, *FUSED_KERNELS, *QCONV_KERNELS]


@pytest.fixture(scope="module", params=sorted(BUNDLED_PATHS))
def bundled(request):
    info = bundled_models()[request.param]
    return request.param, quantize_onnx(MODELS_DIR / f"{request.param}.onnx", info["data"])


@pytest.mark.parametrize("verdict", [True, False])
def test_bundled_models_take_the_expected_paths(bundled, verdict):
    """Under a passing and a failing self-test verdict (forced: the test does not depend on this CPU)."""
    name, model = bundled
    with forced_verdicts(verdict):
        for int_kernels in (True, False):
            engine = Engine(model, int_kernels=int_kernels)
            want = {layer.name: BUNDLED_PATHS[name][layer.name] for layer in model.layers}
            taken = int_kernels and verdict
            want = {k: MARKED_PATHS[v][0 if taken else 1] if v in MARKED_PATHS else v for k, v in want.items()}
            assert engine.layer_paths() == want
            assert [s[0] for s in engine._segments(False)] == ["onnx"]  # one graph, no numba step


def _bundled_inputs(model, count: int) -> np.ndarray:
    info = model.tensors[model.inputs[0]]
    lo, hi = info.range
    xs = np.random.default_rng(1).integers(lo, hi + 1, (count,) + info.shape)
    xs[0] = hi  # the extremes reach the bounds the paths were chosen by
    xs[1] = lo
    return xs.astype(info.dtype)


def test_bundled_models_bit_exact_on_every_path(bundled):
    name, model = bundled
    xs = _bundled_inputs(model, 6)
    want = Engine(model, "reference").run(xs, return_all=True)
    engines = {"fast": Engine(model), "fast, float only": Engine(model, int_kernels=False),
               "torch (cpu)": Engine(model, "torch")}
    if cuda_available():
        engines["cuda"] = Engine(model, "cuda")
    for label, engine in engines.items():
        got = engine.run(xs, return_all=True)
        for t, values in want.items():
            assert got[t].dtype == values.dtype and np.array_equal(got[t], values), (name, t, label)
        # Only the outputs: the graph is free to reorder (Floor after MaxPool) what no one reads.
        outs = engine.run(xs)
        assert all(np.array_equal(outs[t], want[t]) for t in model.outputs), (name, label)


def test_floor_sinks_behind_max_pool(bundled):
    """Conv -> Clip -> MaxPool -> Floor: the requantization's Floor runs on the pooled tensor, so the
    convolution and the pool stay in onnxruntime's blocked layout."""
    from accel.engine.onnx_lowering import lower_layers

    name, model = bundled
    # the float paths' graph (int_kernels=False: no qconv layer, whose uint8 output needs no rounding)
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs), int_kernels=False)
    producer = {out: node for node in proto.graph.node for out in node.output}
    users = {name: node for node in proto.graph.node for name in node.input}
    pools = [node for node in proto.graph.node if node.op_type == "MaxPool"]
    for pool in pools:
        # the convolution's clamp: before the pool (a Clip fused into it), or with CLAMP_LATER after the rounding
        # that follows the pool (fused into the second rounding convolution)
        before = producer[pool.input[0]]
        if before.op_type == "Conv":
            after = users[users[pool.output[0]].output[0]]
            assert users[pool.output[0]].op_type == "Conv" and after.op_type == "Conv", name
            assert users[after.output[0]].op_type == "Clip", name
        else:
            assert before.op_type == "Clip", name
    kept = lower_layers(model, model.layers, list(model.inputs), [layer.output for layer in model.layers],
                        int_kernels=False)
    producer = {out: node for node in kept.graph.node for out in node.output}
    for pool in (node for node in kept.graph.node if node.op_type == "MaxPool"):
        # every tensor read: nothing moves (the rounding is a Floor or the pair of 1x1 rounding convolutions)
        source = producer[pool.input[0]]
        if source.op_type == "Clip":  # CLAMP_LATER: the clamp after the rounding convolutions
            source = producer[source.input[0]]
        assert source.op_type in ("Floor", "Conv"), name
        assert source.op_type == "Floor" or len(source.input) == 3


def _rounding_convs(proto) -> int:
    """How many of the graph's convolutions are the 1x1 depthwise rounding ones (weights all 1, bias +-2^23 1.5)."""
    from onnx import numpy_helper

    consts = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    return sum(1 for node in proto.graph.node if node.op_type == "Conv" and len(node.input) == 3
               and np.all(consts[node.input[1]] == 1) and np.all(np.abs(consts[node.input[2]]) == 3 << 22))


def test_rounding_by_convolutions_where_nothing_fuses_into_them(bundled):
    """A folded convolution with whole blocks of 16 channels rounds with two 1x1 convolutions (onnxruntime's blocked
    layout, no reorders), except where an add layer reads it (onnxruntime would fuse the add into the second one)."""
    name, model = bundled
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs), int_kernels=False)
    readers = {t: layer.op for layer in model.layers for t in layer.inputs}
    want = sum(1 for layer in model.layers if layer.op == "conv2d" and layer.arrays["codes"].shape[0] % 16 == 0
               and readers.get(layer.output) != "add")
    assert want > 0 and _rounding_convs(proto) == 2 * want, name


@pytest.mark.skipif(not cuda_available(), reason="no CUDA device (the torch backend's CPU run covers its code)")
def test_cuda_backend_on_a_large_batch(bundled):
    name, model = bundled
    info = model.tensors[model.inputs[0]]
    xs = np.random.default_rng(2).integers(*info.range, (512,) + info.shape, endpoint=True).astype(info.dtype)
    want = Engine(model, "reference").run(xs)
    got = Engine(model, "cuda").run(xs)
    assert all(np.array_equal(got[k], want[k]) for k in want)


@pytest.mark.parametrize("verdict", [True, False])
def test_torch_backend_paths(bundled, verdict):
    """The torch backend's GEMM type per layer: torch._int_mm for every layer without groups where its verdict
    passes (forced here), else float32 and float64 only for the layer beyond 2^24."""
    name, model = bundled
    with forced_verdicts(verdict):
        paths = Engine(model, "torch").layer_paths()
    for layer in model.layers:
        want = BUNDLED_PATHS[name][layer.name]
        if layer.op in MAC_OPS:
            grouped = layer.attrs.get("groups", 1) > 1
            assert paths[layer.name] == ("int8" if verdict and not grouped else "f64" if want == WIDE else "f32")
        else:
            assert paths[layer.name] == "int64"


def _linear_model(k: int, n: int, weight: int, cfg: AcceleratorConfig, bias: int = 0, raw: bool = True):
    """A linear layer whose every weight is ``weight`` (a one-entry LUT), input uint8."""
    b = ModelBuilder(cfg)
    x = b.input("x", (k,), "uint8")
    lut = np.zeros((1, cfg.lut_entries), np.int8)
    lut[0, 0] = weight
    y = b.linear("fc", x, codes=np.zeros((n, k), np.uint8), lut=lut, bias=np.full(n, bias),
                 shift=np.full(n, 3), raw=raw)
    return b.build([y])


@pytest.mark.parametrize("int_kernels", [True, False])
@pytest.mark.parametrize("raw", [True, False])
@pytest.mark.parametrize("bias, want_f32", [(-1, True), (0, False), (1, False)])
def test_linear_at_the_float32_bound(bias, want_f32, raw, int_kernels):
    """255 x -128 x 514 = -16,773,120; with the bias the bound sits at 2^24 - 1, 2^24 or 2^24 + 1."""
    k = 514
    base = 255 * 128 * k
    bias = F32_EXACT_BOUND - base + bias  # |bias| + base = 2^24 + {-1, 0, 1}
    model = _linear_model(k, 3, -128, AcceleratorConfig(), bias=-bias, raw=raw)
    path = Engine(model, int_kernels=int_kernels).layer_paths()["fc"]
    if not (path == QGEMM and int_kernels and not raw):  # a clamped layer whose rounding saturates: qgemm first
        assert (path == "f32") == want_f32
    xs = np.array([[255] * k, [0] * k, list(range(256)) * 2 + [1, 2]], np.uint8)
    want = run_model_contract(model, xs)["fc"]
    for engine in (Engine(model, int_kernels=int_kernels), Engine(model, "torch")):
        assert np.array_equal(engine.run(xs)["fc"].astype(np.int64), want)


@pytest.mark.parametrize("overflow", ["wrap", "saturate"])
@pytest.mark.parametrize("acc_bits", [16, 24, 32])
def test_wide_paths_wrap_and_saturate(acc_bits, overflow):
    """Overflowing sums: wrap stays in the graph (float64 wrap), saturate needs numba; both exact."""
    cfg = AcceleratorConfig(acc_bits=acc_bits, overflow=overflow)
    model = _linear_model(3000, 4, -128, cfg, bias=cfg.acc_max // 3, raw=False)
    path = mac_path(model, model.layer("fc"), int_kernel=False)
    can_overflow = 3000 * 255 * 128 + cfg.acc_max // 3 > cfg.acc_max
    assert path == ("numba" if overflow == "saturate" and can_overflow else "f64")
    xs = np.random.default_rng(acc_bits).integers(0, 256, (4, 3000)).astype(np.uint8)
    xs[0] = 255
    for engine in (Engine(model), Engine(model, int_kernels=False), Engine(model, "torch")):
        assert np.array_equal(engine.run(xs)["fc"].astype(np.int64), run_model_contract(model, xs)["fc"])


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("pad_value", [0, 200])
@pytest.mark.parametrize("acc_bits, overflow", [(32, "wrap"), (20, "wrap"), (32, "saturate")])
def test_split_convolution(groups, pad_value, acc_bits, overflow):
    """A conv whose bound passes 2^24 is cut into input-channel chunks (float32 each, summed in float64);
    a 20-bit accumulator wraps in the float64 epilogue."""
    rng = np.random.default_rng(groups + pad_value)
    cfg = AcceleratorConfig(acc_bits=acc_bits, overflow=overflow)
    b = ModelBuilder(cfg)
    c = 96 * groups  # 96 x 9 x 128 x 255 = 28.2 M per group: two chunks each
    x = b.input("x", (c, 5, 5), "uint8")
    arrays = mac_arrays(rng, cfg, 8, (8, c // groups, 3, 3), extreme=True)
    arrays["lut"][:] = -128
    arrays["bias"] = np.full(8, -(1 << 16))
    y = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), groups=groups, pad_value=pad_value, raw=True)
    model = b.build([y])
    assert Engine(model, int_kernels=False).layer_paths()["conv"] == "f32-split"
    with forced_verdicts(True):
        assert Engine(model).layer_paths()["conv"] == ("int8" if groups == 1 and c * 9 >= INT8_CONV_MIN_K
                                                      and 8 >= INT8_CONV_MIN_N else "f32-split")
    chunks = _split_chunks(model, model.layer("conv"))
    assert len(chunks) > 1 and all(c0 % 16 == 0 for c0, _ in chunks)  # whole blocks: onnxruntime's NCHWc
    assert [c0 for c0, _ in chunks[1:]] == [c1 for _, c1 in chunks[:-1]] and chunks[-1][1] == c // groups
    xs = np.full((2, c, 5, 5), 255, np.uint8)
    xs[1] = rng.integers(0, 256, (c, 5, 5))
    for engine in (Engine(model), Engine(model, int_kernels=False), Engine(model, "torch")):
        got = engine.run(xs)["conv"]
        assert np.array_equal(got.astype(np.int64), run_model_contract(model, xs)["conv"])


def _int8_conv_model(cfg: AcceleratorConfig, c: int, n: int, in_dtype: str, rng, wide: bool = False, **kw):
    b = ModelBuilder(cfg)
    x = b.input("x", (c, 6, 6), in_dtype)
    arrays = mac_arrays(rng, cfg, n, (n, c, 3, 3), extreme=False)
    if wide:  # sums beyond 2^24: the float64 epilogue
        arrays["lut"][:, :8] = -128
        arrays["shift"] = np.full(n, 18)
    y = b.conv2d("conv", x, **arrays, **kw)
    z = b.conv2d("conv2", y, **mac_arrays(rng, cfg, n, (n, n, 3, 3), extreme=False), padding=(1, 1, 1, 1),
                 dtype=in_dtype, lo=-128 if in_dtype == "int8" else 0, hi=127 if in_dtype == "int8" else 255)
    return b.build([z])


@pytest.mark.parametrize("verdict", [True, False])
def test_int8_convolution_path_under_both_verdicts(verdict):
    """A convolution with a long enough reduction and enough channels is an 8-bit GEMM exactly when the integer
    kernel's verdict passes; a depthwise one or a short one never is (forced verdicts: any CPU)."""
    rng = np.random.default_rng(3)
    cfg = AcceleratorConfig()
    c = -(-INT8_CONV_MIN_K // 9)
    model = _int8_conv_model(cfg, c, INT8_CONV_MIN_N, "uint8", rng, padding=(1, 1, 1, 1), dtype="uint8", lo=0, hi=255)
    b = ModelBuilder(cfg)
    x = b.input("x", (INT8_CONV_MIN_N, 6, 6), "uint8")
    dw = b.conv2d("dw", x, **mac_arrays(rng, cfg, INT8_CONV_MIN_N, (INT8_CONV_MIN_N, 1, 3, 3), False),
                  groups=INT8_CONV_MIN_N)
    short = b.conv2d("short", dw, **mac_arrays(rng, cfg, INT8_CONV_MIN_N, (INT8_CONV_MIN_N, 16, 1, 1), False),
                     groups=INT8_CONV_MIN_N // 16)
    small = b.build([short])
    with forced_verdicts(verdict):
        assert set(Engine(model).layer_paths().values()) == {"int8" if verdict else "f32"}
        assert set(Engine(model, int_kernels=False).layer_paths().values()) == {"f32"}
        assert "int8" not in Engine(small).layer_paths().values()


@pytest.mark.parametrize("in_dtype", ["uint8", "int8"])
@pytest.mark.parametrize("case", ["padded", "pad_value", "strided", "raw", "wrap", "multiply_shift", "wide"])
def test_int8_convolution_exact(case, in_dtype):
    """Two chained 8-bit GEMM convolutions (the second reads the first's NHWC output) equal the contract; on a CPU
    whose kernels fail the self-test the same model runs on the float paths, equally exact."""
    rng = np.random.default_rng(hash((case, in_dtype)) % 1000)
    cfg = AcceleratorConfig(acc_bits=20 if case == "wrap" else 32,
                            requant="multiply_shift" if case == "multiply_shift" else "shift")
    lo, hi = (-128, 127) if in_dtype == "int8" else (0, 255)
    kw = {"padded": dict(padding=(1, 1, 1, 1)), "pad_value": dict(padding=(1, 0, 2, 1), pad_value=lo + 3),
          "strided": dict(stride=(2, 1), dilation=(1, 2), padding=(0, 2, 1, 0)), "raw": dict(padding=(1, 1, 1, 1)),
          "wrap": dict(padding=(1, 1, 1, 1)), "multiply_shift": dict(padding=(1, 1, 1, 1)),
          "wide": dict(padding=(1, 1, 1, 1))}[case]
    model = _int8_conv_model(cfg, 32, 64, in_dtype, rng, wide=case == "wide", dtype=in_dtype, lo=lo, hi=hi, **kw)
    if case == "raw":
        b = ModelBuilder(cfg)
        x = b.input("x", (32, 6, 6), in_dtype)
        model = b.build([b.conv2d("conv", x, **mac_arrays(rng, cfg, 64, (64, 32, 3, 3), False), raw=True, **kw)])
    paths = Engine(model).layer_paths()
    exact_int = kernel_verdict(int_kernel_name(model, model.layers[0]))
    assert paths["conv"] == ("int8" if exact_int else paths["conv"]) and paths["conv"] != "numba"
    xs = rng.integers(lo, hi + 1, (3, 32, 6, 6)).astype(in_dtype)
    xs[0] = hi
    want = run_model_contract(model, xs)
    got = Engine(model).run(xs, return_all=True)
    for t in want:
        assert np.array_equal(got[t].astype(np.int64), want[t]), t


def test_torch_int8_path_on_a_strided_1x1_im2col():
    """A 1x1 convolution's im2col is an (M, 1) view whose size-1 dimension has stride 2: torch 2.13's CPU
    ``_int_mm`` misread it (uninitialized memory in most runs) until the rows were made dense."""
    b = ModelBuilder(AcceleratorConfig())
    x = b.input("x", (1, 2, 2), "int8")
    lut = np.array([[14, -117, 5, 28, 97, -102, 57, 112, 87, 51, -123, 64, -123, 83, -128, -79]], np.int8)
    y = b.conv2d("conv", x, codes=np.array([[[[5]]]], np.uint8), lut=lut, bias=np.array([-9550]),
                 shift=np.array([6]), padding=(1, 0, 2, 1), dilation=(2, 2), lo=-128, hi=127)
    model = b.build([y])
    xs = np.array([[[[-46, 12], [-68, 11]]], [[[9, -61], [-45, -127]]]], np.int8)
    want = run_model_contract(model, xs)["conv"]
    for _ in range(20):
        assert np.array_equal(Engine(model, "torch").run(xs)["conv"].astype(np.int64), want)


def test_bundled_models_exact_with_qconv_forced_on(bundled):
    """With every verdict forced to pass, each bundled model runs its qconv layers as QLinearConv and equals the
    reference (numba) backend bit for bit on every tensor. Forcing is sound here only because the test runs where
    every kernel passed its own self-test in this process: the forced engine then runs exactly the kernels that the
    measured verdicts would choose (on a CPU whose QLinearConv failed, forcing would run an inexact kernel)."""
    name, model = bundled
    if not all(kernel_verdict(kernel) for kernel in ALL_KERNELS):
        pytest.skip("an integer kernel failed its self-test on this CPU: forcing it on would run an inexact kernel")
    xs = _bundled_inputs(model, 64)
    unforced = Engine(model).layer_paths()
    with forced_verdicts(True):
        engine = Engine(model)
        paths = engine.layer_paths()
        if paths != unforced:  # a configuration check (a global average pool's scale) failed on this CPU
            pytest.skip("a per-configuration check failed on this CPU: forcing it on would run an inexact kernel")
        got = engine.run(xs, return_all=True)
        outputs = Engine(model).run(xs)  # its own graph: no intermediate tensor is an output there
    assert [k for k, v in paths.items() if v == QCONV] == [k for k, v in BUNDLED_PATHS[name].items() if v == QCONV]
    want = Engine(model, "reference").run(xs, return_all=True)
    for t, values in want.items():
        assert got[t].dtype == values.dtype and np.array_equal(got[t], values), (name, t)
    for t, values in outputs.items():
        assert np.array_equal(values, want[t]), (name, t)


def test_qconv_layers_pass_uint8_tensors(bundled):
    """Graph structure under a passing verdict (forced; lowering runs nothing): one QLinearConv per qconv layer; one
    that reads another's output (directly or through MaxPool/Flatten) takes its uint8 tensor with no cast; a float
    reader gets one Cast (or QuantizeLinear) per tensor."""
    name, model = bundled
    with forced_verdicts(True):
        paths = Engine(model).layer_paths()
        proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    producer = {out: node for node in proto.graph.node for out in node.output}
    maker = {layer.output: layer for layer in model.layers}
    qconvs = {layer.name.replace("/", "_"): layer for layer in model.layers if paths[layer.name] == QCONV}
    nodes = [node for node in proto.graph.node
             if node.op_type in ("QLinearConv", "QLinearAdd", "QLinearGlobalAveragePool")]
    assert sorted(node.name.rsplit("__", 1)[0] for node in nodes) == sorted(qconvs)
    for node in nodes:
        source = maker.get(qconvs[node.name.rsplit("__", 1)[0]].inputs[0])
        while source is not None and source.op in ("max_pool", "flatten"):
            source = maker.get(source.inputs[0])
        from_qconv = source is not None and paths[source.name] == QCONV
        feed = producer[node.input[0]]
        if feed.op_type == "Clip" and producer[feed.input[0]].op_type == "QuantizeLinear":
            feed = producer[feed.input[0]]  # a float layer's clamp narrower than uint8, after its rounding
        # a float tensor arrives through its Cast, or (CLAMP_LATER) the QuantizeLinear that rounds and clamps it
        assert (feed.op_type not in ("Cast", "QuantizeLinear")) == from_qconv, (name, node.name)
    cast_inputs = [node.input[0] for node in proto.graph.node if node.op_type == "Cast"]
    assert len(cast_inputs) == len(set(cast_inputs)), name


def _qconv_layer_model(rng, seed: int, raw: bool = False):
    """A random convolution clamped within uint8 or int8 (dense, depthwise or grouped; 1x1 or 3x3; strides,
    dilation, padding; uint8 or int8 input; half-up or floor), then max pooling and a 1x1 convolution reading its
    output. Small LUT values and shifts from 1 make ties frequent; ``raw``: the first layer emitting its sums."""
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 4 == 3], lut_scope=("layer", "channel")[seed % 2])
    in_dtype = ("uint8", "int8")[seed // 2 % 2]
    kind = ("dense", "depthwise", "grouped")[seed % 3]
    c = {"dense": int(rng.choice([4, 5, 17])), "depthwise": int(rng.choice([7, 16])), "grouped": 16}[kind]
    groups = {"dense": 1, "depthwise": c, "grouped": int(rng.choice([2, 4]))}[kind]
    n = {"dense": int(rng.integers(4, 9)), "depthwise": c, "grouped": groups * int(rng.integers(2, 6))}[kind]
    k = int(rng.choice([1, 3]))
    b = ModelBuilder(cfg)
    x = b.input("x", (c, 9, 9), in_dtype)
    arrays = mac_arrays(rng, cfg, n, (n, c // groups, k, k), extreme=False)
    arrays["lut"] = rng.integers(-3, 4, arrays["lut"].shape).astype(np.int8)
    shift = rng.integers(1, 9, n)
    shift[0] = 0
    arrays["shift"] = shift
    lo, hi, dtype = [(0, 255, "uint8"), (3, 192, "uint8"), (-128, 127, "int8"), (-100, 50, "int8")][seed % 4]
    # sums land on, next to and between ties of every channel's shift, around the clamp range
    arrays["bias"] = (rng.integers(lo - 8, hi - 64, n) << shift) + rng.integers(0, 1 << shift)
    clamp = {} if raw else dict(lo=lo, hi=hi, dtype=dtype)
    y = b.conv2d("conv", x, **arrays, stride=(int(rng.integers(1, 3)),) * 2, padding=tuple(rng.integers(0, 2, 4)),
                 dilation=(int(rng.integers(1, 3)),) * 2 if k == 3 else (1, 1), groups=groups, raw=raw, **clamp)
    if raw:
        return b.build([y])
    pooled = b.max_pool("pool", y, kernel=(2, 2))
    pointwise = mac_arrays(rng, cfg, 8, (8, n, 1, 1), extreme=False)
    pointwise["bias"] = rng.integers(0, 1 << 14, 8)
    pointwise["shift"] = np.minimum(pointwise["shift"], 12)  # floor rounding puts -2^(s-1) in the bound
    z = b.conv2d("conv2", pooled, **pointwise, lo=0, hi=255, dtype="uint8")
    return b.build([y, z])


def test_qconv_skips_tiny_maps(monkeypatch):
    """cnn_digits' second convolution (4x4 outputs) meets the qconv proof but stays on float32 by the size rule;
    with the rule lowered to its 16 positions it takes qconv."""
    from accel.engine import onnx_lowering

    model = quantize_onnx(MODELS_DIR / "cnn_digits.onnx", bundled_models()["cnn_digits"]["data"])
    layer = "features.features.3.Conv"
    with forced_verdicts(True):
        assert Engine(model).layer_paths()[layer] == "f32"
        monkeypatch.setattr(onnx_lowering, "QCONV_MIN_POSITIONS", 16)
        assert Engine(model).layer_paths()[layer] == QCONV


@pytest.mark.parametrize("seed", range(24))
def test_qconv_random_layers_exact(seed, monkeypatch):
    """Property test where this CPU's QLinearConv passed its self-test: random ReLU-clamped convolutions, ties
    included, take path qconv and equal the contract (elsewhere they run on the float paths, tested above)."""
    if not kernel_verdict(QCONV_KERNEL):
        pytest.skip("this CPU's QLinearConv failed its self-test: no layer takes path qconv here")
    from accel.engine import onnx_lowering

    monkeypatch.setattr(onnx_lowering, "QCONV_MIN_POSITIONS", 1)  # the layers' maps are small: test the proof
    model = _qconv_layer_model(np.random.default_rng(seed), seed)
    paths = Engine(model).layer_paths()
    layer = model.layer("conv")
    assert paths["conv"] == QCONV and paths["conv2"] == QCONV, paths
    info = model.tensors["x"]
    rng = np.random.default_rng(seed + 100)
    xs = rng.integers(*info.range, (4, *info.shape), endpoint=True).astype(info.dtype)
    xs[0] = info.range[1]
    want = run_model_contract(model, xs, return_all=True)
    got = Engine(model).run(xs, return_all=True)
    for t in ("conv", "pool", "conv2"):
        assert np.array_equal(got[t].astype(np.int64), want[t]), (seed, t, paths)
    # the data held ties (sums an odd multiple of 2^(s-1)) that round into the clamp range, negative ones too
    # where the clamp reaches below 0
    acc = run_model_contract(_qconv_layer_model(np.random.default_rng(seed), seed, raw=True), xs)["conv"]
    shift = layer.arrays["shift"].reshape(1, -1, 1, 1)
    if model.config.rounding.value == "half_up":
        ties = (shift > 0) & (acc & ((1 << shift) - 1) == 1 << np.maximum(shift - 1, 0))
        ties &= (acc >> shift >= layer.attrs["lo"]) & (acc >> shift < layer.attrs["hi"])
        assert int((ties & (acc > 0)).sum()) > 0
        assert layer.attrs["lo"] >= 0 or int((ties & (acc < 0)).sum()) > 0


@pytest.mark.parametrize("verdict", [True, False])
def test_qconv_path_conditions(verdict):
    """Which convolutions take qconv (forced verdicts, any CPU): one clamped within uint8 or int8 with a small bound
    (an int8 clamp adds 128 x 2^s to it), not one with sums reaching 2^22, a non-zero padding value, too few input
    channels or a multiplier."""
    rng = np.random.default_rng(5)
    cfg = AcceleratorConfig()

    def conv_path(cfg=cfg, c=QCONV_MIN_GROUP_CHANNELS, lo=0, hi=255, bias=100, pad_value=0, lut=3, shift=4):
        b = ModelBuilder(cfg)
        x = b.input("x", (c, 5, 5), "uint8")
        arrays = mac_arrays(rng, cfg, 4, (4, c, 3, 3), extreme=False)
        arrays["lut"][:] = lut
        arrays["bias"] = np.full(4, bias)
        arrays["shift"] = np.full(4, shift)
        model = b.build([b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), pad_value=pad_value, lo=lo, hi=hi)])
        with forced_verdicts(verdict):
            return Engine(model).layer_paths()["conv"]

    bound = QCONV_MIN_GROUP_CHANNELS * 9 * 3 * 255  # sum |w| * max |x|
    assert conv_path() == ("qconv" if verdict else "f32")
    for kw in (dict(lo=5, hi=192), dict(lo=-128, hi=127), dict(lo=-1, hi=20), dict(bias=(1 << 22) - 1 - bound),
               dict(lo=-128, hi=127, bias=(1 << 22) - 1 - bound - (128 << 4))):
        assert conv_path(**kw) == ("qconv" if verdict else "f32"), kw
    # sums from 2^22 on take qconv where their rounding saturates (shift 4) and not where it does not (shift 15)
    for kw in (dict(lo=-128, hi=127, bias=(1 << 22) - bound - (128 << 4)), dict(bias=(1 << 22) - bound)):
        assert conv_path(**kw) == ("qconv" if verdict else "f32"), kw
        assert conv_path(**kw, shift=15) != "qconv", kw
    for kw in (dict(pad_value=3),
               dict(c=QCONV_MIN_GROUP_CHANNELS - 1), dict(cfg=AcceleratorConfig(requant="multiply_shift"))):
        assert conv_path(**kw) != "qconv", kw


def _residual_model(rng, seed: int):
    """A ``qconv`` convolution (uint8 or int8 clamp), a residual add of its output and either the input (a float
    value, no uint8 twin) or a second ``qconv`` convolution's output, then global average pooling of the add (its
    NHWC uint8 form, ``y + 128`` for an int8 clamp): random shifts (0 to 3, one case at the int8 limit 6), clamps
    and rounding."""
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 4 == 3])
    in_dtype = ("uint8", "int8")[seed % 2]
    c = int(rng.choice([4, 8, 16]))
    b = ModelBuilder(cfg)
    x = b.input("x", (c, 6, 6), in_dtype)
    clamps = [(0, 255), (3, 192), (-128, 127), (-100, 50)]

    def conv(name, src, k):
        arrays = mac_arrays(rng, cfg, c, (c, c, k, k), extreme=False)
        arrays["lut"] = rng.integers(-3, 4, arrays["lut"].shape).astype(np.int8)
        arrays["shift"] = rng.integers(0, 6, c)
        arrays["bias"] = rng.integers(-200, 200, c) << arrays["shift"]
        lo, hi = clamps[int(rng.integers(0, 4))]
        return b.conv2d(name, src, **arrays, padding=(k // 2,) * 4, lo=lo, hi=hi)

    y = conv("conv", x, int(rng.choice([1, 3])))
    other = x if seed % 3 == 0 else conv("conv_b", x, 1)
    shift_a, shift_b = (6, 0) if seed % 5 == 4 else (int(rng.integers(0, 4)), int(rng.integers(0, 4)))
    lo, hi = clamps[seed // 2 % 4]
    s = b.add("add", y, other, shift_a=shift_a, shift_b=shift_b, shift=int(rng.integers(0, 4)), lo=lo, hi=hi)
    gap = b.global_avg_pool("gap", s, mult=int(rng.integers(1, 1 << 16)), shift=int(rng.integers(16, 22)), lo=lo,
                            hi=hi)
    return b.build([s, gap])


@pytest.mark.parametrize("seed", range(20))
def test_residual_add_as_qconv_exact(seed):
    """Where this CPU's QLinearConv passed its self-test: a residual add reading a qconv output takes path qconv (a
    1x1 QLinearConv over both inputs side by side) and every tensor equals the contract, ties included (odd sums
    at every shift > 0); the global average pool behind it reads the NHWC uint8 form."""
    if not kernel_verdict(QCONV_KERNEL):
        pytest.skip("this CPU's QLinearConv failed its self-test: no layer takes path qconv here")
    model = _residual_model(np.random.default_rng(seed), seed)
    paths = Engine(model).layer_paths()
    assert paths["add"] == QCONV and paths["conv"] == QCONV, paths
    info = model.tensors["x"]
    xs = np.random.default_rng(seed + 7).integers(*info.range, (4, *info.shape), endpoint=True).astype(info.dtype)
    xs[0] = info.range[1]
    want = run_model_contract(model, xs, return_all=True)
    got = Engine(model).run(xs, return_all=True)
    for t in want:
        assert got[t].dtype == model.tensors[t].dtype and np.array_equal(got[t], want[t]), (seed, t, paths)
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    ops = [node.op_type for node in proto.graph.node]
    # the add: QLinearAdd where a configuration passed its check on every input pair, else a 1x1 QLinearConv
    a = model.layer("add").attrs
    as_qadd = qadd_plan(a["shift_a"], a["shift_b"], a["shift"], _qadd_bias(model, model.layer("add"))) is not None
    assert ops.count("QLinearAdd") == as_qadd
    assert ops.count("QLinearConv") == 1 + (seed % 3 != 0) + (not as_qadd)


def test_residual_add_path_conditions():
    """An add stays on float32 where no input is held in uint8, where a shift passes the int8 weight limit, or with
    the qconv kernel's verdict failing."""
    rng = np.random.default_rng(3)
    for seed in range(6):
        assert _residual_model(rng, seed).layer("add").op == "add"
    cfg = AcceleratorConfig()

    def add_path(from_conv=True, shift_a=1, verdict=True):
        b = ModelBuilder(cfg)
        x = b.input("x", (4, 6, 6), "uint8")
        arrays = mac_arrays(rng, cfg, 4, (4, 4, 1, 1), extreme=False)
        arrays["lut"][:] = 1
        arrays["shift"] = np.full(4, 2)
        y = b.conv2d("conv", x, **arrays, lo=0, hi=255) if from_conv else x
        model = b.build([b.add("add", y, x, shift_a=shift_a, lo=0, hi=255)])
        with forced_verdicts(verdict):
            return Engine(model).layer_paths()["add"]

    assert add_path() == QCONV
    assert add_path(from_conv=False) == "f32"
    assert add_path(shift_a=7) == "f32"
    assert add_path(verdict=False) == "f32"


@pytest.mark.parametrize("seed", range(12))
def test_qgemm_random_layers_exact(seed):
    """Where this CPU's QGemm passed its self-test: random clamped linear layers (uint8 or int8 input and clamp,
    half up or floor, biases on and next to ties of every shift) take path qgemm, the second reading the first's
    uint8 result, and equal the contract."""
    if not kernel_verdict(QGEMM_KERNEL):
        pytest.skip("this CPU's QGemm failed its self-test: no layer takes path qgemm here")
    rng = np.random.default_rng(seed)
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 4 == 3], lut_scope=("layer", "channel")[seed % 2])
    b = ModelBuilder(cfg)
    k, n = int(rng.choice([7, 64, 300])), int(rng.integers(4, 40))
    x = b.input("x", (k,), ("uint8", "int8")[seed // 2 % 2])
    lo, hi = [(0, 255), (3, 192), (-128, 127), (-100, 50)][seed % 4]
    arrays = mac_arrays(rng, cfg, n, (n, k), extreme=False)
    arrays["lut"] = rng.integers(-3, 4, arrays["lut"].shape).astype(np.int8)
    shift = rng.integers(1, 9, n)
    shift[0] = 0
    arrays["shift"] = shift
    arrays["bias"] = (rng.integers(lo - 8, hi - 64, n) << shift) + rng.integers(0, 1 << shift)
    y = b.linear("fc", x, **arrays, lo=lo, hi=hi)
    second = mac_arrays(rng, cfg, 8, (8, n), extreme=False)
    second["lut"] = rng.integers(-16, 17, second["lut"].shape).astype(np.int8)  # sums below 2^22
    second["bias"] = rng.integers(0, 1 << 14, 8)
    second["shift"] = np.minimum(second["shift"], 12)
    z = b.linear("fc2", y, **second, lo=0, hi=255)
    model = b.build([y, z])
    paths = Engine(model).layer_paths()
    assert paths == {"fc": QGEMM, "fc2": QGEMM}, paths
    info = model.tensors["x"]
    xs = np.random.default_rng(seed + 50).integers(*info.range, (64, *info.shape), endpoint=True).astype(info.dtype)
    xs[0] = info.range[1]
    want = run_model_contract(model, xs, return_all=True)
    got = Engine(model).run(xs, return_all=True)
    for t in ("fc", "fc2"):
        assert np.array_equal(got[t].astype(np.int64), want[t]), (seed, t)
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    gemm = [node for node in proto.graph.node if node.op_type == "QGemm"]
    producer = {out: node.op_type for node in proto.graph.node for out in node.output}
    assert len(gemm) == 2 and producer[gemm[1].input[0]] in ("QGemm", "Clip")  # uint8 from layer to layer
    # an int8 input reaches the QGemm as the caller's x + 128 (sign bit flipped), not through graph casts
    assert [i.name for i in proto.graph.input] == [shifted_input("x") if info.dtype == "int8" else "x"]


@pytest.mark.parametrize("seed", range(8))
def test_qconv_saturating_large_sums_exact(seed):
    """Where this CPU's QLinearConv passed its self-test: convolutions whose sums reach far beyond 2^22 (extreme
    weights, biases up to 2^26) with shifts up to 14 take path qconv, and equal the contract, including outputs
    that saturate from sums beyond 2^22 on both sides; a shift of 15 on the same layer does not take it."""
    if not kernel_verdict(QCONV_KERNEL):
        pytest.skip("this CPU's QLinearConv failed its self-test: no layer takes path qconv here")
    rng = np.random.default_rng(seed)
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 2])

    def build(top_shift):
        b = ModelBuilder(cfg)
        x = b.input("x", (64, 6, 6), ("uint8", "int8")[seed // 2 % 2])
        arrays = mac_arrays(rng, cfg, 16, (16, 64, 3, 3), extreme=True)
        arrays["shift"] = rng.integers(8, top_shift + 1, 16)
        arrays["shift"][0] = top_shift
        arrays["bias"] = rng.integers(-(1 << 26), 1 << 26, 16)
        lo, hi = [(0, 255), (-128, 127), (5, 200), (-100, 50)][seed % 4]
        return b.build([b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), lo=lo, hi=hi)])

    model = build(14)
    assert Engine(model).layer_paths()["conv"] == QCONV
    assert int(product_bounds(model, model.layer("conv")).max()) >= 1 << 22
    info = model.tensors["x"]
    xs = np.random.default_rng(seed + 9).integers(*info.range, (8, *info.shape), endpoint=True).astype(info.dtype)
    xs[0], xs[1] = info.range[1], info.range[0]
    want = run_model_contract(model, xs)["conv"]
    assert np.array_equal(Engine(model).run(xs)["conv"].astype(np.int64), want)
    layer = model.layer("conv")
    raw = run_model_contract(_raw_copy(model), xs)["conv"]
    big = np.abs(raw) >= 1 << 22
    assert big.any() and np.isin(want[big], [layer.attrs["lo"], layer.attrs["hi"]]).all()
    assert Engine(build(15)).layer_paths()["conv"] != QCONV  # 2^22 - 1 rounds to 128 at s = 15: below every top


def _raw_copy(model):
    """The same model with its convolution emitting the raw sums (acc + bias) instead of requantized values."""
    import copy

    raw = copy.deepcopy(model)
    layer = raw.layer("conv")
    layer.attrs["raw"] = True
    raw.tensors[layer.output] = raw.tensors[layer.output].__class__(
        layer.output, raw.tensors[layer.output].shape, "int32", None)
    return raw


@pytest.mark.parametrize("seed", range(8))
def test_int32_epilogue_exact(seed):
    """Where this CPU's MatMulInteger and int32 epilogue passed their self-tests: layers too wide for qconv (sums
    beyond 2^22 with shifts from 15, where the rounding does not saturate) run as path int8 with the int32
    Add/Div/Clip epilogue, a convolution feeding another in NHWC uint8, and equal the contract."""
    from accel.engine.capability import INT32_EPILOGUE

    if not (kernel_verdict(INT32_EPILOGUE) and kernel_verdict(int_kernel_name(None, None))):
        pytest.skip("this CPU's integer GEMM or int32 epilogue failed its self-test")
    rng = np.random.default_rng(seed)
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 2])
    b = ModelBuilder(cfg)
    x = b.input("x", (32, 6, 6), ("uint8", "int8")[seed // 2 % 2])
    clamps = [(0, 255), (-128, 127), (5, 200), (-100, 50)]

    def wide(name, src, c, k):
        arrays = mac_arrays(rng, cfg, 64, (64, c, k, k) if k else (64, c), extreme=True)
        arrays["shift"] = rng.integers(15, 18, 64)
        arrays["bias"] = rng.integers(-(1 << 24), 1 << 24, 64)
        lo, hi = clamps[int(rng.integers(0, 4))]
        if k:
            return b.conv2d(name, src, **arrays, padding=(k // 2,) * 4, lo=lo, hi=hi)
        return b.linear(name, src, **arrays, lo=lo, hi=hi)

    y = wide("conv", x, 32, 3)
    z = wide("conv2", y, 64, 3)
    f = wide("fc", b.flatten("flat", z), 64 * 36, 0)
    model = b.build([y, z, f])
    paths = Engine(model).layer_paths()
    assert {paths[k] for k in ("conv", "conv2", "fc")} == {"int8"}, paths
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    assert sum(node.op_type == "Div" for node in proto.graph.node) == 3
    info = model.tensors["x"]
    xs = np.random.default_rng(seed + 3).integers(*info.range, (32, *info.shape), endpoint=True).astype(info.dtype)
    xs[0] = info.range[1]
    want = run_model_contract(model, xs, return_all=True)
    got = Engine(model).run(xs, return_all=True)
    for t in ("conv", "conv2", "fc"):
        assert np.array_equal(got[t].astype(np.int64), want[t]), (seed, t)
        assert len(np.unique(want[t])) > 2, t  # not all clamped: the rounding is exercised


def test_float_layers_read_as_uint8_leave_the_rounding_to_the_cast():
    """A folded float32 convolution whose every reader (through max pooling and flatten) takes uint8 ends in its
    Clip: the readers' Cast floors it (self-tested). One also read by a float32 layer, or a segment output, keeps its
    rounding; both graphs equal the contract."""
    from accel.engine.capability import CAST_FLOORS

    if not (kernel_verdict(CAST_FLOORS) and kernel_verdict(QGEMM_KERNEL)):
        pytest.skip("this CPU's Cast or QGemm failed its self-test")
    rng = np.random.default_rng(11)
    cfg = AcceleratorConfig()

    def build(also_float: bool, dtype: str = "uint8"):
        b = ModelBuilder(cfg)
        x = b.input("x", (1, 8, 8), "uint8")
        arrays = mac_arrays(rng, cfg, 16, (16, 1, 3, 3), extreme=False)
        arrays["shift"] = rng.integers(1, 6, 16)
        arrays["bias"] = rng.integers(-64, 64, 16) << arrays["shift"]
        y = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), lo=0, hi=127 if dtype == "int8" else 255, dtype=dtype)
        flat = b.flatten("flat", b.max_pool("pool", y, kernel=(2, 2)))
        fc = mac_arrays(rng, cfg, 8, (8, 256), extreme=False)
        fc["lut"] = rng.integers(-8, 9, fc["lut"].shape).astype(np.int8)
        fc["bias"], fc["shift"] = rng.integers(0, 1 << 10, 8), np.full(8, 6)
        outs = [b.linear("fc", flat, **fc, lo=0, hi=255)]
        if also_float:  # a float32 reader of the convolution's output
            outs.append(b.conv2d("conv2", y, **mac_arrays(rng, cfg, 2, (2, 16, 1, 1), extreme=False), raw=True))
        return b.build(outs)

    # an int8 tensor, even clamped at 0, is read through QuantizeLinear (which rounds): it keeps its rounding
    for also_float, dtype, lazy in ((False, "uint8", True), (True, "uint8", False), (False, "int8", False)):
        model = build(also_float, dtype)
        assert Engine(model).layer_paths()["fc"] == QGEMM
        proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
        rounding = [n for n in proto.graph.node if n.name.startswith("conv__") and n.op_type in ("Floor", "Conv")]
        assert (len(rounding) == 1) == lazy, [n.op_type for n in rounding]  # the convolution itself only
        xs = rng.integers(0, 256, (16, 1, 8, 8)).astype(np.uint8)
        want = run_model_contract(model, xs, return_all=True)
        got = Engine(model).run(xs, return_all=True)
        for t in want:
            assert np.array_equal(got[t].astype(np.int64), want[t]), (also_float, dtype, t)


def test_int8_input_fed_as_flipped_sign_bit():
    """An int8 input read by a float layer and by an 8-bit kernel arrives twice, as itself and as uint8 x + 128 (its
    bytes with the sign bit flipped: exact for all 256 values); the engine equals the contract on every int8 value."""
    from accel.engine.runner import segment_feed

    every = np.arange(-128, 128).astype(np.int8)
    flipped = segment_feed([("x__u8", "x", True)], {"x": every})["x__u8"]
    assert flipped.dtype == np.uint8 and np.array_equal(flipped.astype(np.int64), every.astype(np.int64) + 128)
    rng = np.random.default_rng(4)
    cfg = AcceleratorConfig()
    b = ModelBuilder(cfg)
    x = b.input("x", (256,), "int8")
    arrays = mac_arrays(rng, cfg, 8, (8, 256), extreme=False)
    arrays["lut"] = rng.integers(-2, 3, arrays["lut"].shape).astype(np.int8)
    arrays["shift"] = np.full(8, 6)
    raw = mac_arrays(rng, cfg, 4, (4, 256), extreme=False)
    model = b.build([b.linear("fc", x, **arrays, lo=0, hi=255), b.linear("raw", x, **raw, raw=True)])
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    if kernel_verdict(QGEMM_KERNEL):
        assert Engine(model).layer_paths()["fc"] == QGEMM
        assert sorted(name for name, _, _ in segment_inputs(proto)) == ["x", "x__u8"]
    xs = np.stack([every, every[::-1], rng.integers(-128, 128, 256).astype(np.int8)])
    want = run_model_contract(model, xs)
    got = Engine(model).run(xs)
    for t in want:
        assert np.array_equal(got[t].astype(np.int64), want[t]), t


@pytest.mark.parametrize("seed", range(12))
def test_float_layers_clamped_by_their_uint8_readers_exact(seed):
    """A folded float32 convolution read only as uint8 (through max pooling, and flatten for a QGemm reader or
    directly by a QLinearConv in NHWC) carries no clamp of its own: its readers' QuantizeLinear rounds (the folded
    half-integer offset leaves no ties) and saturates, then a uint8 Clip narrows to the layer's clamp. Random clamps
    within uint8, both roundings, biases on ties, inputs large enough to pass the clamp's top: equal to the contract,
    with outputs only (where the path applies) and with every tensor."""
    from accel.engine.capability import QUANTIZE_ROUNDS

    if not (kernel_verdict(QUANTIZE_ROUNDS) and kernel_verdict(QGEMM_KERNEL) and kernel_verdict(QCONV_KERNEL)):
        pytest.skip("this CPU's QuantizeLinear, QGemm or QLinearConv failed its self-test")
    rng = np.random.default_rng(seed)
    cfg = AcceleratorConfig(rounding=("half_up", "floor")[seed % 4 == 3])
    b = ModelBuilder(cfg)
    x = b.input("x", (1, 10, 10), "uint8")
    arrays = mac_arrays(rng, cfg, 16, (16, 1, 3, 3), extreme=False)
    arrays["lut"] = rng.integers(-40, 41, arrays["lut"].shape).astype(np.int8)
    shift = rng.integers(0, 7, 16)
    arrays["shift"] = shift
    arrays["bias"] = (rng.integers(-64, 64, 16) << shift) + np.where(shift > 0, 1 << np.maximum(shift - 1, 0), 0)
    lo, hi = [(0, 255), (0, 192), (5, 200), (3, 255)][seed % 4]
    y = b.conv2d("conv", x, **arrays, padding=(1, 1, 1, 1), lo=lo, hi=hi)
    pooled = b.max_pool("pool", y, kernel=(2, 2))
    if seed % 2:
        fc = mac_arrays(rng, cfg, 8, (8, 400), extreme=False)
        fc["lut"] = rng.integers(-4, 5, fc["lut"].shape).astype(np.int8)
        fc["bias"], fc["shift"] = rng.integers(0, 1 << 10, 8), np.full(8, 8)
        out = b.linear("reader", b.flatten("flat", pooled), **fc, lo=0, hi=255)
    else:
        conv2 = mac_arrays(rng, cfg, 8, (8, 16, 3, 3), extreme=False)
        conv2["lut"] = rng.integers(-4, 5, conv2["lut"].shape).astype(np.int8)
        conv2["bias"], conv2["shift"] = rng.integers(0, 1 << 10, 8), np.full(8, 8)
        out = b.conv2d("reader", pooled, **conv2, padding=(1, 1, 1, 1), lo=0, hi=255)
    model = b.build([out])
    paths = Engine(model).layer_paths()
    assert paths["conv"] == "f32" and paths["reader"] in (QCONV, QGEMM), paths
    proto = lower_layers(model, model.layers, list(model.inputs), list(model.outputs))
    ops = [node.op_type for node in proto.graph.node]
    assert "QuantizeLinear" in ops and "Floor" not in ops, ops
    # and its session keeps onnxruntime from moving that QuantizeLinear above the max pooling
    assert session_config(proto) == {"session.disable_quant_qdq": "1"}
    xs = rng.integers(0, 256, (8, 1, 10, 10)).astype(np.uint8)
    xs[0] = 255
    want = run_model_contract(model, xs, return_all=True)
    got = Engine(model).run(xs)
    assert np.array_equal(got["reader"].astype(np.int64), want["reader"]), seed
    every = Engine(model).run(xs, return_all=True)
    for t in want:
        assert np.array_equal(every[t].astype(np.int64), want[t]), (seed, t)
    assert len(np.unique(want["conv"])) > 2 and (want["conv"] == hi).any(), "the clamp's top is reached"
