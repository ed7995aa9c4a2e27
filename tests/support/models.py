"""Small models shared by the tests: a residual network in the IR, and ONNX graphs built with
``onnx.helper`` (no PyTorch needed) for the importer and the quantizer."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from accel.config import AcceleratorConfig
from accel.ir import ModelBuilder

__all__ = ["small_resnet", "GraphBuilder", "save", "all_ops_model", "affine_model", "shifted_cnn_digits"]


def small_resnet(config: AcceleratorConfig | None = None, seed: int = 0, channels: int = 8,
                 multipoint: bool = False):
    """A residual network of every op; ``multipoint``: each conv/linear layer also carries three extra
    points (contract v1.3), channel 1 taking two of them."""
    cfg = config or AcceleratorConfig()
    rng = np.random.default_rng(seed)

    def mac(n, shape):
        arrays = dict(codes=rng.integers(0, cfg.lut_entries, (n,) + shape).astype(np.uint8),
                      lut=rng.integers(-90, 90, (1, cfg.lut_entries)), bias=rng.integers(-500, 500, n),
                      shift=rng.integers(6, 10, n),
                      mult=rng.integers(1, 1 << 12, n) if cfg.requant.value == "multiply_shift" else None)
        if multipoint:
            arrays["points"] = (rng.integers(0, cfg.lut_entries, (3,) + shape).astype(np.uint8),
                                np.array([1, n - 1, 1]), np.array([2, 0, 4]))
        return arrays

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


class GraphBuilder:
    """Collect nodes and float initializers, then :meth:`build` a model with a dynamic batch."""

    def __init__(self, input_shape, seed: int = 0, input_name: str = "x"):
        self.rng = np.random.default_rng(seed)
        self.input_name = input_name
        self.input_shape = list(input_shape)
        self.nodes = []
        self.inits = []
        self.count = 0

    def init(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(self, name: str, shape, scale: float = 0.3) -> str:
        return self.init(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op: str, inputs, name: str | None = None, **attrs) -> str:
        self.count += 1
        name = f"{op.lower()}{self.count}" if name is None else name
        out = f"{name or op.lower() + str(self.count)}_out"
        self.nodes.append(helper.make_node(op, list(inputs), [out], name=name, **attrs))
        return out

    def build(self, output: str, opset: int = 17, ir_version: int = 8) -> onnx.ModelProto:
        x = helper.make_tensor_value_info(self.input_name, TensorProto.FLOAT, ["batch"] + self.input_shape)
        y = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
        graph = helper.make_graph(self.nodes, "test", [x], [y], self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = ir_version
        return model


def save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def g_tensor(value):
    """A float32 scalar constant named ``c`` (for Constant nodes)."""
    return numpy_helper.from_array(np.array(value, np.float32), "c")


def all_ops_model(tmp_path):
    """One ONNX file with every op of the issue (ends in Softmax)."""
    g = GraphBuilder([3, 12, 12])
    # grouped, strided, padded, dilated conv, then BatchNorm (folded) and ReLU6 (Clip 0..6)
    c = g.node("Conv", ["x", g.weight("w1", (6, 1, 3, 3)), g.weight("b1", (6,))], group=3,
               strides=[1, 1], pads=[2, 1, 2, 1], dilations=[2, 1])
    bn = g.node("BatchNormalization", [c, g.init("g", np.linspace(0.5, 1.5, 6, dtype=np.float32)),
                                       g.init("be", np.linspace(-0.2, 0.2, 6, dtype=np.float32)),
                                       g.init("m", np.linspace(-0.1, 0.1, 6, dtype=np.float32)),
                                       g.init("v", np.linspace(0.5, 2.0, 6, dtype=np.float32))], epsilon=1e-3)
    lo6 = g.node("Constant", [], value=g_tensor(0.0))
    hi6 = g.node("Constant", [], value=g_tensor(6.0))
    r6 = g.node("Clip", [bn, lo6, hi6])
    # depthwise conv, general Clip bounds, residual Add with Relu
    dw = g.node("Conv", [r6, g.weight("w2", (6, 1, 3, 3))], group=6, pads=[1, 1, 1, 1])
    cl = g.node("Clip", [dw, g.init("cmin", np.float32(-0.5)), g.init("cmax", np.float32(2.5))])
    add = g.node("Add", [cl, r6])
    rl = g.node("Relu", [add])
    ident = g.node("Identity", [rl])
    mp = g.node("MaxPool", [ident], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1)  # 12 -> 6 (ceil)
    ap = g.node("AveragePool", [ident], kernel_shape=[2, 2], strides=[2, 2])           # 12 -> 6
    cat = g.node("Concat", [mp, ap], axis=1)                                          # 12 x 6 x 6
    pw = g.node("Conv", [cat, g.weight("w3", (8, 12, 1, 1))], auto_pad=b"SAME_UPPER")
    gp = g.node("GlobalAveragePool", [pw])
    fl = g.node("Flatten", [gp], axis=1)
    fc = g.node("Gemm", [fl, g.weight("w4", (8, 16)), g.weight("b4", (16,))], transB=0, alpha=0.5)
    r = g.node("Relu", [fc])
    rs = g.node("Reshape", [r, g.init("shape", np.array([-1, 4, 2, 2], np.int64))])
    fl2 = g.node("Reshape", [rs, g.init("shape2", np.array([0, -1], np.int64))])
    mm = g.node("MatMul", [fl2, g.weight("w5", (16, 10))])
    bias = g.node("Add", [mm, g.weight("b5", (10,))])
    drop = g.node("Dropout", [bias])
    sm = g.node("Softmax", [drop], axis=1)
    return save(g.build(sm), tmp_path / "all_ops.onnx")


def affine_model(tmp_path):
    g = GraphBuilder([2, 4, 4])
    r = g.node("Relu", ["x"])
    p = g.node("MaxPool", [r], kernel_shape=[2, 2], strides=[2, 2])
    bn = g.node("BatchNormalization", [p, g.init("g", np.float32([2, 3])), g.init("b", np.float32([0.1, -1])),
                                       g.init("m", np.float32([0, 1])), g.init("v", np.float32([1, 4]))])
    return save(g.build(bn), tmp_path / "affine.onnx")


def committed_float_top1(name: str):
    """The committed float top-1 of bundled model ``name``, as a ``pytest.approx`` that allows one
    test image: onnxruntime's float kernels differ by CPU (AVX2, AVX-512), so a logit near-tie may
    flip on a machine other than the one that wrote ``models.json``."""
    import pytest

    from accel.frontend.workflow import bundled_models

    info = bundled_models()[name]
    return pytest.approx(info["float_top1"], abs=100.0 / info["test_images"] + 1e-6)


def nearest_digits(weight_bits: int = 2):
    """cnn_digits quantized with nearest rounding (the starting point of the layer-by-layer methods):
    (float graph, 256 calibration images, the weight quantizers, the integer model)."""
    from accel.data import load_dataset
    from accel.frontend.calibrate import calibrate
    from accel.frontend.onnx_import import import_onnx
    from accel.frontend.quantize import default_config, emit_integer_model, quantize_layer_weights
    from accel.frontend.workflow import MODELS_DIR

    graph = import_onnx(MODELS_DIR / "cnn_digits.onnx")
    x = load_dataset("digits", "calib").x[:256]
    config = default_config(weight_bits=weight_bits)
    weights = quantize_layer_weights(graph, config)
    return graph, x, weights, emit_integer_model(graph, calibrate(graph, x), config, weights=weights)


def shifted_cnn_digits(path, after: str, shift: float) -> str:
    """The bundled ``cnn_digits`` with ``+ shift`` added to the output of node ``after`` (a signed,
    asymmetric tensor where there was a ReLU output) and the next Conv/Gemm's bias lowered to match,
    so that the float network's logits stay those of ``cnn_digits`` (exactly for a Gemm; for a Conv
    away from the zero padding). Saved to ``path``; returns it."""
    from accel.frontend.workflow import MODELS_DIR

    model = onnx.load(MODELS_DIR / "cnn_digits.onnx")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = list(graph.node)
    source = next(n for n in nodes if n.name == after)
    consumer = next(n for n in nodes[nodes.index(source):] if n.op_type in ("Conv", "Gemm"))
    weight = numpy_helper.to_array(inits[consumer.input[1]])
    bias = numpy_helper.to_array(inits[consumer.input[2]])
    channels = weight.shape[1]
    shape = (channels, 1, 1) if consumer.op_type == "Conv" else (channels,)
    graph.initializer.append(numpy_helper.from_array(np.full(shape, shift, np.float32), "shift_value"))
    moved = weight.reshape(weight.shape[0], channels, -1).sum(axis=2) @ np.full(channels, shift)
    inits[consumer.input[2]].CopyFrom(numpy_helper.from_array((bias - moved).astype(np.float32), consumer.input[2]))
    graph.node.insert(nodes.index(source) + 1, helper.make_node("Add", [source.output[0], "shift_value"],
                                                                ["shifted"], name="shift"))
    for node in graph.node:
        if node.name != "shift":
            node.input[:] = ["shifted" if t == source.output[0] else t for t in node.input]
    onnx.save(model, path)
    return str(path)
