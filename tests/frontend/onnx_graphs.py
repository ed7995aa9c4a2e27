"""Small ONNX graphs built with ``onnx.helper`` for the importer's tests (no PyTorch needed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GraphBuilder", "save"]


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
