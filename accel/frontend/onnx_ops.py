"""ONNX op converters: one function per ONNX op type, looked up in :data:`CONVERTERS`.

A converter reads one ONNX node and appends the equivalent
:class:`~accel.frontend.graph.FloatNode` (s) to the :class:`OnnxConversion`
that tracks the graph being built: constants, per-sample shapes (no batch
dimension), aliases of tensors that a node only renames (Identity, Dropout,
a final Softmax) and the emitted nodes. Every message names the node and says
what was expected. A new op is one more converter registered with
:func:`converter`; :data:`SUPPORTED_OPS` is the table's keys.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..datapath import conv_output_size
from ..errors import ModelImportError
from .graph import FloatNode

__all__ = ["CONVERTERS", "SUPPORTED_OPS", "OnnxConversion", "converter"]

#: ONNX op type -> the function that converts one such node.
CONVERTERS: dict[str, Callable[[OnnxConversion, object, dict, int], None]] = {}


def converter(*op_types: str):
    """Register the decorated function as the converter of ``op_types``."""
    def register(func):
        for op_type in op_types:
            CONVERTERS[op_type] = func
        return func
    return register


class OnnxConversion:
    """The float graph under construction while an ONNX graph is converted node by node.

    Parameters
    ----------
    path : str
        The model file, the start of every error message.
    graph_outputs : set of str
        Names of the ONNX graph's outputs.

    Members
    -------
    consts : dict
        Tensor name -> numpy value of initializers and Constant nodes.
    shapes : dict
        Activation tensor name -> shape without the batch dimension.
    alias : dict
        Tensor name -> the tensor it equals (nodes that only rename).
    nodes : list of FloatNode
        Emitted nodes, in execution order.
    """

    def __init__(self, path: str, graph_outputs: set[str]):
        self.path = path
        self.graph_outputs = graph_outputs
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.alias: dict[str, str] = {}
        self.nodes: list[FloatNode] = []
        self.names: set[str] = set()

    def fail(self, message: str) -> ModelImportError:
        return ModelImportError(f"{self.path}: {message}")

    def convert(self, node, index: int) -> None:
        """Convert one ONNX node (its op type is in :data:`CONVERTERS`)."""
        import onnx

        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        CONVERTERS[node.op_type](self, node, attrs, index)

    # --- helpers for the converters ------------------------------------------------------------
    def layer_name(self, node, index: int, suffix: str = "") -> str:
        base = (node.name or f"{node.op_type.lower()}_{index}").strip("/").replace("/", ".") or f"node_{index}"
        base += suffix
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def tensor(self, node, name: str) -> str:
        """The activation tensor ``name`` reads (after aliases); an error when it is a constant or unknown."""
        name = self.alias.get(name, name)
        if name in self.shapes:
            return name
        if name in self.consts:
            raise self.fail(f"node {node.name!r} ({node.op_type}): input {name!r} is a constant; "
                            f"expected an activation tensor")
        raise self.fail(f"node {node.name!r} ({node.op_type}) reads {name!r}, which is no graph input, "
                        f"initializer or node output (missing initializer?)")

    def const(self, node, name: str, what: str) -> np.ndarray:
        """The finite constant ``name`` (an initializer or Constant output) that ``node`` reads as ``what``."""
        name = self.alias.get(name, name)
        where = f"node {node.name!r} ({node.op_type}): {what} {name!r}"
        if name not in self.consts:
            problem = "is computed at run time; expected a constant (initializer)" if name in self.shapes \
                else "is missing; expected an initializer"
            raise self.fail(f"{where} {problem}")
        value = self.consts[name]
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise self.fail(f"{where} holds NaN or Inf ({bad} of {value.size} values); expected finite numbers")
        return value

    def emit(self, node, index, op, inputs, shape, attrs=None, params=None, *, output: str | None = None,
             suffix: str = "") -> str:
        """Append a float node computing ``output`` (default: the ONNX node's first output); returns it."""
        out = node.output[0] if output is None else output
        fnode = FloatNode(self.layer_name(node, index, suffix), op, inputs, out, dict(attrs or {}),
                          {k: np.asarray(v, np.float64) for k, v in (params or {}).items()})
        fnode.attrs.setdefault("act", None)
        self.shapes[out] = tuple(int(s) for s in shape)
        self.nodes.append(fnode)
        return out

    def input_shape(self, node, rank: int | None = None) -> tuple[str, tuple[int, ...]]:
        """The node's first input tensor and its per-sample shape, checked to have ``rank`` dimensions."""
        x = self.tensor(node, node.input[0])
        shape = self.shapes[x]
        if rank == 3 and len(shape) != 3:
            raise self.fail(f"node {node.name!r} ({node.op_type}): expected a (C, H, W) input, got {shape}")
        return x, shape

    def window(self, node, attrs, in_hw, kernel, *, allow_dilation=True):
        """Stride, padding [top, left, bottom, right], dilation and output size of a 2-D window."""
        stride = list(attrs.get("strides", [1, 1]))
        dilation = list(attrs.get("dilations", [1, 1]))
        if len(kernel) != 2 or len(stride) != 2:
            raise self.fail(f"node {node.name!r} ({node.op_type}): only 2-D windows are supported, "
                            f"got kernel {list(kernel)}")
        if not allow_dilation and dilation != [1, 1]:
            raise self.fail(f"node {node.name!r} ({node.op_type}): dilations {dilation} are not supported; "
                            f"expected [1, 1]")
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            pads = [0, 0, 0, 0]
            for ax in range(2):
                out = -(-in_hw[ax] // stride[ax])
                total = max(0, (out - 1) * stride[ax] + dilation[ax] * (kernel[ax] - 1) + 1 - in_hw[ax])
                small, big = total // 2, total - total // 2
                pads[ax], pads[ax + 2] = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        elif auto_pad == "VALID":
            pads = [0, 0, 0, 0]
        # ONNX pads are [x1_begin, x2_begin, x1_end, x2_end] = [top, left, bottom, right].
        if attrs.get("ceil_mode", 0):
            # ceil mode (PyTorch/ONNX rule): one more window if it starts inside the input or the
            # leading padding; realised as extra bottom/right padding.
            for ax in range(2):
                span = in_hw[ax] + pads[ax] + pads[ax + 2] - dilation[ax] * (kernel[ax] - 1) - 1
                n_out = -(-span // stride[ax]) + 1
                if (n_out - 1) * stride[ax] >= in_hw[ax] + pads[ax]:
                    n_out -= 1
                extra = (n_out - 1) * stride[ax] - span
                if extra > 0:
                    pads[ax + 2] += extra
        out_hw = tuple(conv_output_size(in_hw[ax], kernel[ax], stride[ax], pads[ax], pads[ax + 2], dilation[ax])
                       for ax in range(2))
        if min(out_hw) <= 0:
            raise self.fail(f"node {node.name!r} ({node.op_type}): window {list(kernel)} does not fit "
                            f"input {list(in_hw)}")
        return stride, pads, dilation, out_hw


def _optional_input(node, position: int) -> str | None:
    return node.input[position] if len(node.input) > position and node.input[position] else None


# --- MAC layers ------------------------------------------------------------------------------

@converter("Conv")
def _conv(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node)
    weight = conv.const(node, node.input[1], "weight")
    if weight.ndim != 4 or len(shape) != 3:
        raise conv.fail(f"node {node.name!r} (Conv): only 2-D convolutions on (C, H, W) inputs are "
                        f"supported, got weight shape {weight.shape} and input shape {shape}")
    bias_name = _optional_input(node, 2)
    bias = conv.const(node, bias_name, "bias") if bias_name else np.zeros(weight.shape[0])
    groups = int(attrs.get("group", 1))
    if weight.shape[1] * groups != shape[0]:
        raise conv.fail(f"node {node.name!r} (Conv): weight shape {weight.shape} with group {groups} "
                        f"does not match {shape[0]} input channels")
    stride, pads, dilation, out_hw = conv.window(node, attrs, shape[1:], weight.shape[2:])
    conv.emit(node, index, "conv", [x], (weight.shape[0],) + out_hw,
              {"stride": stride, "padding": pads, "dilation": dilation, "groups": groups},
              {"weight": weight, "bias": bias})


@converter("Gemm", "MatMul")
def _linear(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    op = node.op_type
    x, shape = conv.input_shape(node)
    if len(shape) != 1:
        raise conv.fail(f"node {node.name!r} ({op}): expected a flat (batch, K) input, got per-sample "
                        f"shape {shape}; flatten first")
    b = conv.const(node, node.input[1], "weight").astype(np.float64)
    if b.ndim != 2:
        raise conv.fail(f"node {node.name!r} ({op}): expected a 2-D weight, got shape {b.shape}")
    if op == "Gemm":
        if attrs.get("transA", 0):
            raise conv.fail(f"node {node.name!r} (Gemm): transA=1 is not supported")
        weight = b if attrs.get("transB", 0) else b.T
        weight = weight * float(attrs.get("alpha", 1.0))
        bias = np.zeros(weight.shape[0])
        bias_name = _optional_input(node, 2)
        if bias_name:
            c = conv.const(node, bias_name, "bias").astype(np.float64) * float(attrs.get("beta", 1.0))
            if c.size not in (1, weight.shape[0]):
                raise conv.fail(f"node {node.name!r} (Gemm): bias shape {c.shape} does not broadcast "
                                f"to ({weight.shape[0]},)")
            bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)).copy()
    else:
        weight, bias = b.T, np.zeros(b.shape[1])
    if weight.shape[1] != shape[0]:
        raise conv.fail(f"node {node.name!r} ({op}): weight shape {weight.shape} does not match "
                        f"input size {shape[0]}")
    conv.emit(node, index, "linear", [x], (weight.shape[0],), {}, {"weight": weight, "bias": bias})


# --- per-channel affine ops (folded or fused later by accel.frontend.passes) ------------------

@converter("BatchNormalization")
def _batchnorm(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node)
    gamma, beta, mean, var = (conv.const(node, n, what).astype(np.float64) for n, what in
                              zip(node.input[1:5], ("scale", "B", "mean", "var")))
    if np.any(var < 0):
        raise conv.fail(f"node {node.name!r} (BatchNormalization): variance {node.input[4]!r} has "
                        f"negative values")
    scale = gamma / np.sqrt(var + float(attrs.get("epsilon", 1e-5)))
    if scale.shape != (shape[0],):
        raise conv.fail(f"node {node.name!r} (BatchNormalization): parameters of shape {scale.shape} "
                        f"do not match {shape[0]} channels")
    # gamma/beta stay with the node: the folded layer's output is ~N(beta, gamma^2) per channel, which
    # analytic bias correction (accel.frontend.ptq.bias_correction) reads after folding
    conv.emit(node, index, "affine", [x], shape, {"bn_stats": (beta, np.abs(gamma))},
              {"scale": scale, "shift": beta - mean * scale})


@converter("Add", "Mul")
def _add_or_mul(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    op = node.op_type
    ins = [conv.alias.get(n, n) for n in node.input]
    tensors = [n for n in ins if n in conv.shapes]
    if op == "Add" and len(tensors) == 2:
        s0, s1 = (conv.shapes[t] for t in tensors)
        if s0 != s1:
            raise conv.fail(f"node {node.name!r} (Add): input shapes {s0} and {s1} differ; only "
                            f"same-shape residual adds are supported")
        conv.emit(node, index, "add", tensors, s0)
        return
    if len(tensors) != 1:
        raise conv.fail(f"node {node.name!r} ({op}): expected one activation and one constant input")
    x = tensors[0]
    shape = conv.shapes[x]
    c = conv.const(node, next(n for n in ins if n != x), "operand").astype(np.float64)
    per_channel = _per_channel(c, shape)
    if per_channel is None:
        raise conv.fail(f"node {node.name!r} ({op}): constant of shape {c.shape} is not a per-channel "
                        f"value for input shape {shape}")
    params = ({"scale": np.ones(shape[0]), "shift": per_channel} if op == "Add"
              else {"scale": per_channel, "shift": np.zeros(shape[0])})
    conv.emit(node, index, "affine", [x], shape, {}, params)


@converter("Relu", "Clip")
def _activation(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node)
    lo, hi = 0.0, math.inf
    if node.op_type == "Clip":
        lo, hi = -math.inf, math.inf
        if _optional_input(node, 1):
            lo = float(conv.const(node, node.input[1], "min"))
        if _optional_input(node, 2):
            hi = float(conv.const(node, node.input[2], "max"))
        if lo > hi:
            raise conv.fail(f"node {node.name!r} (Clip): min {lo} is above max {hi}")
    n_ch = shape[0]
    conv.emit(node, index, "affine", [x], shape, {"act": (lo, hi), "identity": True},
              {"scale": np.ones(n_ch), "shift": np.zeros(n_ch)})


# --- pools -------------------------------------------------------------------------------------

@converter("MaxPool", "AveragePool")
def _pool(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    op = node.op_type
    x, shape = conv.input_shape(node, rank=3)
    kernel = list(attrs["kernel_shape"])
    stride, pads, _, out_hw = conv.window(node, attrs, shape[1:], kernel, allow_dilation=False)
    if op == "AveragePool":
        if attrs.get("ceil_mode", 0) and pads != list(attrs.get("pads", [0, 0, 0, 0])):
            raise conv.fail(f"node {node.name!r} (AveragePool): ceil_mode=1 with partial windows "
                            f"is not supported")
    fields = {"kernel": kernel, "stride": stride, "padding": pads}
    if op == "AveragePool" and any(pads) and not attrs.get("count_include_pad", 0):
        fields["count_include_pad"] = False  # ONNX's default: padding left out of the divisor
    conv.emit(node, index, "max_pool" if op == "MaxPool" else "avg_pool", [x], (shape[0],) + out_hw, fields)


@converter("GlobalAveragePool")
def _global_avg_pool(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node, rank=3)
    conv.emit(node, index, "global_avg_pool", [x], (shape[0], 1, 1))


@converter("ReduceMean")
def _reduce_mean(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    """A mean over H and W (PyTorch's ``AdaptiveAvgPool2d(1)``, ``x.mean((2, 3))``) is a global average pool.

    The axes come from the ``axes`` input (opset 18+) or attribute (opset 13..17);
    with ``keepdims=0`` the pooled (C, 1, 1) tensor is flattened to (C,).
    """
    x, shape = conv.input_shape(node)
    axes_name = _optional_input(node, 1)
    axes = (conv.const(node, axes_name, "axes").reshape(-1).tolist() if axes_name
            else list(attrs.get("axes", [])))
    rank = len(shape) + 1
    normalized = sorted(int(a) + rank if int(a) < 0 else int(a) for a in axes)
    if len(shape) != 3 or normalized != [2, 3]:
        raise conv.fail(f"node {node.name!r} (ReduceMean): a mean over axes {axes or 'all'} of a (batch, "
                        f"{', '.join(map(str, shape))}) input is not supported; expected the spatial axes "
                        f"[2, 3] of a (batch, C, H, W) input (global average pooling)")
    if attrs.get("keepdims", 1):
        conv.emit(node, index, "global_avg_pool", [x], (shape[0], 1, 1))
        return
    pooled = conv.emit(node, index, "global_avg_pool", [x], (shape[0], 1, 1),
                       output=f"{node.output[0]}.pooled")
    conv.emit(node, index, "flatten", [pooled], (shape[0],), suffix=".flatten")


# --- data movement ---------------------------------------------------------------------------

@converter("Flatten")
def _flatten(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node)
    axis = int(attrs.get("axis", 1))
    if axis not in (1, -len(shape)):
        raise conv.fail(f"node {node.name!r} (Flatten): axis {axis} is not supported; expected 1 "
                        f"(keep the batch dimension)")
    if len(shape) == 1:
        conv.alias[node.output[0]] = x
    else:
        conv.emit(node, index, "flatten", [x], (math.prod(shape),))


@converter("Reshape")
def _reshape(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    x, shape = conv.input_shape(node)
    target = [int(v) for v in conv.const(node, node.input[1], "shape").reshape(-1)]
    per_sample = _reshape_target(target, shape)
    if per_sample is None:
        raise conv.fail(f"node {node.name!r} (Reshape): target shape {target} does not keep the batch "
                        f"dimension first for per-sample shape {shape}")
    if per_sample == shape:
        conv.alias[node.output[0]] = x
    elif len(per_sample) == 1:
        conv.emit(node, index, "flatten", [x], per_sample)
    else:
        conv.emit(node, index, "reshape", [x], per_sample, {"shape": list(per_sample)})


@converter("Concat")
def _concat(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    ins = [conv.tensor(node, n) for n in node.input]
    rank = len(conv.shapes[ins[0]]) + 1
    axis = int(attrs["axis"])
    axis = axis + rank if axis < 0 else axis
    if axis < 1:
        raise conv.fail(f"node {node.name!r} (Concat): concatenation along the batch axis is not "
                        f"supported")
    first = conv.shapes[ins[0]]
    for t in ins[1:]:
        s = conv.shapes[t]
        if len(s) != len(first) or any(p != q for i, (p, q) in enumerate(zip(s, first)) if i != axis - 1):
            raise conv.fail(f"node {node.name!r} (Concat): input shapes {first} and {s} differ "
                            f"outside axis {axis}")
    out = list(first)
    out[axis - 1] = sum(conv.shapes[t][axis - 1] for t in ins)
    conv.emit(node, index, "concat", ins, out, {"axis": axis})


# --- nodes that only name or rename a tensor ---------------------------------------------------

@converter("Constant")
def _constant(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    import onnx

    if "value" not in attrs:
        raise conv.fail(f"node {node.name!r} (Constant): only the 'value' attribute is supported, "
                        f"got {sorted(attrs)}")
    conv.consts[node.output[0]] = onnx.numpy_helper.to_array(attrs["value"])


@converter("Identity", "Dropout")
def _identity(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    src = conv.alias.get(node.input[0], node.input[0])
    if src in conv.consts:
        conv.consts[node.output[0]] = conv.consts[src]
    else:
        conv.alias[node.output[0]] = conv.tensor(node, src)


@converter("Softmax", "LogSoftmax")
def _final_softmax(conv: OnnxConversion, node, attrs: dict, index: int) -> None:
    if node.output[0] not in conv.graph_outputs:
        raise conv.fail(f"node {node.name!r} ({node.op_type}): only supported as the last node (a graph "
                        f"output), where it does not change the top-1 class")
    conv.alias[node.output[0]] = conv.tensor(node, node.input[0])



#: ONNX ops the importer reads (the keys of :data:`CONVERTERS`, in registration order).
SUPPORTED_OPS = tuple(CONVERTERS)


def _per_channel(c: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """A constant that broadcasts per channel against (batch, *shape), as a (C,) vector."""
    n_ch = shape[0]
    if c.size == 1:
        return np.full(n_ch, float(c.reshape(-1)[0]))
    squeezed = c.reshape(c.shape[-(len(shape)):] if c.ndim > len(shape) else c.shape)
    if c.ndim > len(shape) + 1:
        return None
    full = (1,) * (len(shape) - squeezed.ndim) + squeezed.shape
    if full[0] == n_ch and all(d == 1 for d in full[1:]):
        return c.reshape(-1).astype(np.float64)
    return None


def _reshape_target(target: list[int], shape: tuple[int, ...]) -> tuple[int, ...] | None:
    """The per-sample shape that a Reshape to ``target`` gives ``shape``; ``None`` unless it keeps the batch first.

    The batch is kept when ``target[0]`` is ``-1`` (what :mod:`accel.frontend.onnx_prepare` writes for a
    target that keeps the export's batch) or ``0`` (copy it).
    """
    size = math.prod(shape)
    if not target:
        return None
    rest = target[1:]
    if target[0] not in (0, -1):  # onnx_prepare gave every batch-first target a free batch (-1)
        return None
    if target[0] == -1 and -1 in rest:
        return None
    rest = [shape[i] if v == 0 and i < len(shape) else v for i, v in enumerate(rest, start=1)
            ] if 0 in rest else rest
    if -1 in rest:
        known = math.prod(v for v in rest if v != -1)
        if known == 0 or size % known:
            return None
        rest = [size // known if v == -1 else v for v in rest]
    if target[0] == -1 and rest and math.prod(rest) != size:
        return None
    if math.prod(rest) != size or any(v < 1 for v in rest):
        return None
    return tuple(rest)
