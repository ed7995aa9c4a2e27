"""ONNX import: a trained network file to a :class:`~accel.frontend.graph.FloatGraph`.

The importer reads ONNX opset 13 and newer, checks every node before any work
starts (an unsupported model fails listing *every* unsupported node and the
supported ops), then converts node by node, tracking shapes without the batch
dimension, and finally runs the graph passes:

1. fold BatchNormalization (and constant adds/muls, kept as ``affine``) into the
   preceding Conv/Gemm/MatMul when that layer feeds nothing else;
2. fuse Relu/Clip into the preceding conv, linear, affine or add (``act``);
   an activation with nothing to fuse into becomes an identity ``affine``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import ModelImportError
from .graph import FloatGraph, FloatNode

__all__ = ["SUPPORTED_OPS", "MIN_OPSET", "import_onnx", "fold_batchnorm", "fuse_activations"]

#: ONNX ops the importer reads.
SUPPORTED_OPS = ("Conv", "Gemm", "MatMul", "BatchNormalization", "Relu", "Clip", "Add", "Mul",
                 "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Identity",
                 "Dropout", "Concat", "Constant", "Softmax", "LogSoftmax")
#: Oldest opset of the default domain the importer accepts.
MIN_OPSET = 13


class _Importer:
    def __init__(self, path: str):
        self.path = path
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.alias: dict[str, str] = {}
        self.nodes: list[FloatNode] = []
        self.names: set[str] = set()

    def fail(self, message: str) -> ModelImportError:
        return ModelImportError(f"{self.path}: {message}")

    # --- helpers -----------------------------------------------------------------------------
    def layer_name(self, node, index: int) -> str:
        base = (node.name or f"{node.op_type.lower()}_{index}").strip("/").replace("/", ".") or f"node_{index}"
        name, k = base, 1
        while name in self.names:
            k += 1
            name = f"{base}_{k}"
        self.names.add(name)
        return name

    def tensor(self, node, name: str) -> str:
        name = self.alias.get(name, name)
        if name not in self.shapes:
            if name in self.consts:
                raise self.fail(f"node {node.name!r} ({node.op_type}): input {name!r} is a constant; "
                                f"expected an activation tensor")
            raise self.fail(f"node {node.name!r} ({node.op_type}) reads {name!r}, which is no graph input, "
                            f"initializer or node output (missing initializer?)")
        return name

    def const(self, node, name: str, what: str) -> np.ndarray:
        name = self.alias.get(name, name)
        if name not in self.consts:
            if name in self.shapes:
                raise self.fail(f"node {node.name!r} ({node.op_type}): {what} {name!r} is computed at run "
                                f"time; expected a constant (initializer)")
            raise self.fail(f"node {node.name!r} ({node.op_type}): {what} {name!r} is missing; expected an "
                            f"initializer")
        value = self.consts[name]
        if value.dtype.kind == "f" and not np.all(np.isfinite(value)):
            bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
            raise self.fail(f"node {node.name!r} ({node.op_type}): {what} {name!r} holds NaN or Inf "
                            f"({bad} of {value.size} values); expected finite numbers")
        return value

    def emit(self, node, index, op, inputs, shape, attrs=None, params=None) -> None:
        out = node.output[0]
        fnode = FloatNode(self.layer_name(node, index), op, inputs, out, dict(attrs or {}),
                          {k: np.asarray(v, np.float64) for k, v in (params or {}).items()})
        fnode.attrs.setdefault("act", None)
        self.shapes[out] = tuple(int(s) for s in shape)
        self.nodes.append(fnode)

    @staticmethod
    def attrs_of(node) -> dict:
        import onnx

        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    # --- window geometry -----------------------------------------------------------------------
    def window(self, node, attrs, in_hw, kernel, *, allow_dilation=True):
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
        out_hw = tuple((in_hw[ax] + pads[ax] + pads[ax + 2] - dilation[ax] * (kernel[ax] - 1) - 1)
                       // stride[ax] + 1 for ax in range(2))
        if min(out_hw) <= 0:
            raise self.fail(f"node {node.name!r} ({node.op_type}): window {list(kernel)} does not fit "
                            f"input {list(in_hw)}")
        return stride, pads, dilation, out_hw

    # --- conversion ------------------------------------------------------------------------------
    def convert(self, node, index: int, outputs: set[str]) -> None:
        op = node.op_type
        a = self.attrs_of(node)
        if op == "Constant":
            import onnx

            if "value" not in a:
                raise self.fail(f"node {node.name!r} (Constant): only the 'value' attribute is supported, "
                                f"got {sorted(a)}")
            self.consts[node.output[0]] = onnx.numpy_helper.to_array(a["value"])
            return
        if op in ("Identity", "Dropout"):
            src = self.alias.get(node.input[0], node.input[0])
            if src in self.consts:
                self.consts[node.output[0]] = self.consts[src]
            else:
                self.alias[node.output[0]] = self.tensor(node, src)
            return
        if op in ("Softmax", "LogSoftmax"):
            if node.output[0] not in outputs:
                raise self.fail(f"node {node.name!r} ({op}): only supported as the last node (a graph "
                                f"output), where it does not change the top-1 class")
            self.alias[node.output[0]] = self.tensor(node, node.input[0])
            return

        x = self.tensor(node, node.input[0]) if op != "Mul" and op != "Add" else None
        shape = self.shapes.get(x) if x else None
        if op == "Conv":
            weight = self.const(node, node.input[1], "weight")
            if weight.ndim != 4 or len(shape) != 3:
                raise self.fail(f"node {node.name!r} (Conv): only 2-D convolutions on (C, H, W) inputs are "
                                f"supported, got weight shape {weight.shape} and input shape {shape}")
            bias = (self.const(node, node.input[2], "bias") if len(node.input) > 2 and node.input[2]
                    else np.zeros(weight.shape[0]))
            groups = int(a.get("group", 1))
            if weight.shape[1] * groups != shape[0]:
                raise self.fail(f"node {node.name!r} (Conv): weight shape {weight.shape} with group {groups} "
                                f"does not match {shape[0]} input channels")
            stride, pads, dilation, out_hw = self.window(node, a, shape[1:], weight.shape[2:])
            self.emit(node, index, "conv", [x], (weight.shape[0],) + out_hw,
                      {"stride": stride, "padding": pads, "dilation": dilation, "groups": groups},
                      {"weight": weight, "bias": bias})
        elif op in ("Gemm", "MatMul"):
            if len(shape) != 1:
                raise self.fail(f"node {node.name!r} ({op}): expected a flat (batch, K) input, got per-sample "
                                f"shape {shape}; flatten first")
            b = self.const(node, node.input[1], "weight").astype(np.float64)
            if b.ndim != 2:
                raise self.fail(f"node {node.name!r} ({op}): expected a 2-D weight, got shape {b.shape}")
            if op == "Gemm":
                if a.get("transA", 0):
                    raise self.fail(f"node {node.name!r} (Gemm): transA=1 is not supported")
                weight = b if a.get("transB", 0) else b.T
                weight = weight * float(a.get("alpha", 1.0))
                bias = np.zeros(weight.shape[0])
                if len(node.input) > 2 and node.input[2]:
                    c = self.const(node, node.input[2], "bias").astype(np.float64) * float(a.get("beta", 1.0))
                    bias = np.broadcast_to(c.reshape(-1), (weight.shape[0],)).copy() if c.size in (
                        1, weight.shape[0]) else None
                    if bias is None:
                        raise self.fail(f"node {node.name!r} (Gemm): bias shape {c.shape} does not broadcast "
                                        f"to ({weight.shape[0]},)")
            else:
                weight, bias = b.T, np.zeros(b.shape[1])
            if weight.shape[1] != shape[0]:
                raise self.fail(f"node {node.name!r} ({op}): weight shape {weight.shape} does not match "
                                f"input size {shape[0]}")
            self.emit(node, index, "linear", [x], (weight.shape[0],), {}, {"weight": weight, "bias": bias})
        elif op == "BatchNormalization":
            gamma, beta, mean, var = (self.const(node, n, what).astype(np.float64) for n, what in
                                      zip(node.input[1:5], ("scale", "B", "mean", "var")))
            if np.any(var < 0):
                raise self.fail(f"node {node.name!r} (BatchNormalization): variance {node.input[4]!r} has "
                                f"negative values")
            scale = gamma / np.sqrt(var + float(a.get("epsilon", 1e-5)))
            if scale.shape != (shape[0],):
                raise self.fail(f"node {node.name!r} (BatchNormalization): parameters of shape {scale.shape} "
                                f"do not match {shape[0]} channels")
            self.emit(node, index, "affine", [x], shape, {}, {"scale": scale, "shift": beta - mean * scale})
        elif op in ("Add", "Mul"):
            ins = [self.alias.get(n, n) for n in node.input]
            tensors = [n for n in ins if n in self.shapes]
            if op == "Add" and len(tensors) == 2:
                s0, s1 = (self.shapes[t] for t in tensors)
                if s0 != s1:
                    raise self.fail(f"node {node.name!r} (Add): input shapes {s0} and {s1} differ; only "
                                    f"same-shape residual adds are supported")
                self.emit(node, index, "add", tensors, s0)
                return
            if len(tensors) != 1:
                raise self.fail(f"node {node.name!r} ({op}): expected one activation and one constant input")
            x = tensors[0]
            shape = self.shapes[x]
            c = self.const(node, next(n for n in ins if n != x), "operand").astype(np.float64)
            per_channel = _per_channel(c, shape)
            if per_channel is None:
                raise self.fail(f"node {node.name!r} ({op}): constant of shape {c.shape} is not a per-channel "
                                f"value for input shape {shape}")
            params = ({"scale": np.ones(shape[0]), "shift": per_channel} if op == "Add"
                      else {"scale": per_channel, "shift": np.zeros(shape[0])})
            self.emit(node, index, "affine", [x], shape, {}, params)
        elif op in ("Relu", "Clip"):
            lo, hi = 0.0, math.inf
            if op == "Clip":
                lo, hi = -math.inf, math.inf
                if len(node.input) > 1 and node.input[1]:
                    lo = float(self.const(node, node.input[1], "min"))
                if len(node.input) > 2 and node.input[2]:
                    hi = float(self.const(node, node.input[2], "max"))
                if lo > hi:
                    raise self.fail(f"node {node.name!r} (Clip): min {lo} is above max {hi}")
            n_ch = shape[0]
            self.emit(node, index, "affine", [x], shape, {"act": (lo, hi), "identity": True},
                      {"scale": np.ones(n_ch), "shift": np.zeros(n_ch)})
        elif op in ("MaxPool", "AveragePool"):
            if len(shape) != 3:
                raise self.fail(f"node {node.name!r} ({op}): expected a (C, H, W) input, got {shape}")
            kernel = list(a["kernel_shape"])
            stride, pads, _, out_hw = self.window(node, a, shape[1:], kernel, allow_dilation=False)
            if op == "AveragePool":
                if any(pads) and not a.get("count_include_pad", 0):
                    raise self.fail(f"node {node.name!r} (AveragePool): padding with count_include_pad=0 "
                                    f"is not supported (the datapath divides every window by its full size)")
                if a.get("ceil_mode", 0) and pads != list(a.get("pads", [0, 0, 0, 0])):
                    raise self.fail(f"node {node.name!r} (AveragePool): ceil_mode=1 with partial windows "
                                    f"is not supported")
            self.emit(node, index, "max_pool" if op == "MaxPool" else "avg_pool", [x], (shape[0],) + out_hw,
                      {"kernel": kernel, "stride": stride, "padding": pads})
        elif op == "GlobalAveragePool":
            if len(shape) != 3:
                raise self.fail(f"node {node.name!r} (GlobalAveragePool): expected a (C, H, W) input, "
                                f"got {shape}")
            self.emit(node, index, "global_avg_pool", [x], (shape[0], 1, 1))
        elif op == "Flatten":
            axis = int(a.get("axis", 1))
            if axis not in (1, -len(shape)):
                raise self.fail(f"node {node.name!r} (Flatten): axis {axis} is not supported; expected 1 "
                                f"(keep the batch dimension)")
            if len(shape) == 1:
                self.alias[node.output[0]] = x
            else:
                self.emit(node, index, "flatten", [x], (math.prod(shape),))
        elif op == "Reshape":
            target = [int(v) for v in self.const(node, node.input[1], "shape").reshape(-1)]
            per_sample = _reshape_target(target, shape)
            if per_sample is None:
                raise self.fail(f"node {node.name!r} (Reshape): target shape {target} does not keep the batch "
                                f"dimension first for per-sample shape {shape}")
            if per_sample == shape:
                self.alias[node.output[0]] = x
            elif len(per_sample) == 1:
                self.emit(node, index, "flatten", [x], per_sample)
            else:
                self.emit(node, index, "reshape", [x], per_sample, {"shape": list(per_sample)})
        elif op == "Concat":
            ins = [self.tensor(node, n) for n in node.input]
            rank = len(self.shapes[ins[0]]) + 1
            axis = int(a["axis"])
            axis = axis + rank if axis < 0 else axis
            if axis < 1:
                raise self.fail(f"node {node.name!r} (Concat): concatenation along the batch axis is not "
                                f"supported")
            first = self.shapes[ins[0]]
            for t in ins[1:]:
                s = self.shapes[t]
                if len(s) != len(first) or any(p != q for i, (p, q) in enumerate(zip(s, first)) if i != axis - 1):
                    raise self.fail(f"node {node.name!r} (Concat): input shapes {first} and {s} differ "
                                    f"outside axis {axis}")
            out = list(first)
            out[axis - 1] = sum(self.shapes[t][axis - 1] for t in ins)
            self.emit(node, index, "concat", ins, out, {"axis": axis})
        else:  # pragma: no cover - screened by the unsupported-op check
            raise self.fail(f"node {node.name!r}: op {op} is not supported")


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
    size = math.prod(shape)
    if not target:
        return None
    rest = target[1:]
    if target[0] not in (0, -1) and target[0] < 1:
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


def fold_batchnorm(graph: FloatGraph) -> FloatGraph:
    """Fold ``affine`` nodes (BatchNorm, constant add/mul) into the conv/linear before them.

    A fold happens when the affine reads the only output of a conv or linear
    layer that has no fused activation, feeds nothing else and is no graph
    output: ``W' = scale * W`` per output channel, ``b' = scale * b + shift``.
    Returns ``graph`` (changed in place).
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node.op != "affine" or node.attrs.get("identity"):
                continue
            prev = graph.producer(node.inputs[0])
            if (prev is None or prev.op not in ("conv", "linear") or prev.act is not None
                    or len(graph.consumers(prev.output)) != 1 or prev.output in graph.outputs):
                continue
            scale, shift = node.params["scale"], node.params["shift"]
            w = prev.params["weight"]
            prev.params["weight"] = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
            prev.params["bias"] = prev.params["bias"] * scale + shift
            prev.attrs["act"] = node.act
            prev.attrs.setdefault("folded", []).append(node.name)
            _replace_output(graph, prev, node)
            changed = True
    return graph


def _replace_output(graph: FloatGraph, keep: FloatNode, drop: FloatNode) -> None:
    """``keep`` now writes ``drop``'s output tensor; ``drop`` leaves the graph."""
    del graph.shapes[keep.output]
    keep.output = drop.output
    graph.nodes.remove(drop)


def fuse_activations(graph: FloatGraph) -> FloatGraph:
    """Fuse Relu/Clip (identity ``affine`` with ``act``) into the conv, linear, affine or add before it.

    Two clips in a row intersect. An activation whose producer feeds other
    nodes too, or has no MAC/add producer (it follows the input or a pool),
    stays an identity ``affine`` (a depthwise 1x1 conv on the datapath).
    Returns ``graph`` (changed in place).
    """
    changed = True
    while changed:
        changed = False
        for node in list(graph.nodes):
            if node.op != "affine" or not node.attrs.get("identity"):
                continue
            prev = graph.producer(node.inputs[0])
            if (prev is None or prev.op not in ("conv", "linear", "affine", "add")
                    or len(graph.consumers(prev.output)) != 1 or prev.output in graph.outputs):
                continue
            lo, hi = node.act
            if prev.act is not None:
                lo, hi = max(lo, prev.act[0]), min(hi, prev.act[1])
            prev.attrs["act"] = (lo, hi)
            _replace_output(graph, prev, node)
            changed = True
    return graph


def _load(path: Path):
    import onnx

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ModelImportError(f"{path}: cannot read the model ({exc.strerror})") from None
    if not data:
        raise ModelImportError(f"{path}: the file is empty; expected an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as exc:  # protobuf raises DecodeError, others RuntimeError
        raise ModelImportError(f"{path}: not a valid ONNX file (corrupt or truncated: "
                               f"{type(exc).__name__})") from None
    if not model.graph.node:
        raise ModelImportError(f"{path}: not a valid ONNX file (corrupt or truncated: the graph has no nodes)")
    return model


def import_onnx(path: str | os.PathLike) -> FloatGraph:
    """Import an ONNX file into a float graph with BatchNorm folded and activations fused.

    Parameters
    ----------
    path : path
        ``.onnx`` file, opset 13 or newer, one input (batch first, the batch
        dimension may be dynamic), only :data:`SUPPORTED_OPS`.

    Returns
    -------
    FloatGraph

    Raises
    ------
    ModelImportError
        Unreadable, corrupt or truncated file; opset below 13; unsupported
        nodes (all listed, with the supported ops); missing initializers;
        NaN or Inf weights; inconsistent shapes. The message names the file.
    """
    import onnx

    path = Path(path)
    model = _load(path)
    imp = _Importer(str(path))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise imp.fail(f"opset {opset} is not supported; expected {MIN_OPSET} or newer "
                       f"(re-export with opset_version={MIN_OPSET} or later)")
    bad = [n for n in model.graph.node if n.op_type not in SUPPORTED_OPS or n.domain not in ("", "ai.onnx")]
    if bad:
        listing = ", ".join(f"{n.op_type} {n.name or '(unnamed)'!r}" for n in bad)
        raise imp.fail(f"{len(bad)} unsupported node(s): {listing}; supported ops: {', '.join(SUPPORTED_OPS)}")

    for init in model.graph.initializer:
        try:
            imp.consts[init.name] = onnx.numpy_helper.to_array(init)
        except Exception as exc:
            raise imp.fail(f"initializer {init.name!r} cannot be read ({exc})") from None
    inputs = [i for i in model.graph.input if i.name not in imp.consts]
    if len(inputs) != 1:
        raise imp.fail(f"expected exactly one input tensor, got {len(inputs)} "
                       f"({', '.join(i.name for i in inputs) or 'none'})")
    inp = inputs[0]
    dims = inp.type.tensor_type.shape.dim
    if len(dims) < 2 or any(not d.HasField("dim_value") or d.dim_value <= 0 for d in dims[1:]):
        shown = [d.dim_param or d.dim_value for d in dims]
        raise imp.fail(f"input {inp.name!r} has shape {shown}; expected a batch dimension followed by "
                       f"fixed sizes, e.g. [batch, 1, 28, 28]")
    imp.shapes[inp.name] = tuple(int(d.dim_value) for d in dims[1:])
    outputs = {o.name for o in model.graph.output}
    for index, node in enumerate(model.graph.node):
        imp.convert(node, index, outputs)
    out_names = [imp.alias.get(o.name, o.name) for o in model.graph.output]
    for o in out_names:
        if o not in imp.shapes or o == inp.name:
            raise imp.fail(f"output {o!r} is not computed by any supported node")
    graph = FloatGraph(path.stem, str(path), inp.name, imp.shapes, imp.nodes, out_names)
    _prune(graph)
    fold_batchnorm(graph)
    fuse_activations(graph)
    return graph


def _prune(graph: FloatGraph) -> None:
    """Drop nodes whose outputs nothing uses (dead branches)."""
    needed = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if node.output in needed:
            keep.append(node)
            needed.update(node.inputs)
    graph.nodes = keep[::-1]
    graph.shapes = {k: v for k, v in graph.shapes.items()
                    if k == graph.input or any(n.output == k for n in graph.nodes)}
