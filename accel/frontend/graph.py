"""The float graph: an imported network before quantization, and its numpy executor.

A :class:`FloatGraph` holds the network in the few ops that the integer model
also has (``conv``, ``linear``, ``add``, ``max_pool``, ``avg_pool``,
``global_avg_pool``, ``flatten``, ``reshape``, ``concat``) plus ``affine``
(a per-channel ``scale * x + shift``: a BatchNorm or constant add that could
not be folded, or an activation with nothing to fuse into). Activations are
fused: a node's ``act`` attribute is ``(lo, hi)`` in real units (ReLU is
``(0, inf)``, ReLU6 ``(0, 6)``) or ``None``.

Shapes exclude the batch dimension. :func:`run_float` executes the graph in
float32 with numpy and returns every tensor, so calibration and per-layer SQNR
see exactly the tensors that the integer model produces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..datapath import conv_output_size, window_counts

__all__ = ["FloatNode", "FloatGraph", "run_float", "FLOAT_OPS", "MAC_NODE_OPS"]

#: Ops of the float graph.
FLOAT_OPS = ("conv", "linear", "affine", "add", "max_pool", "avg_pool", "global_avg_pool",
             "flatten", "reshape", "concat")
#: Float ops that become MAC-array layers (``affine`` as a depthwise 1x1 conv or a diagonal linear).
MAC_NODE_OPS = ("conv", "linear", "affine")


@dataclass
class FloatNode:
    """One float operation.

    Members
    -------
    name : str
        Layer name (from the ONNX node name).
    op : str
        One of :data:`FLOAT_OPS`.
    inputs : list of str
        Tensor names read.
    output : str
        Tensor name written.
    attrs : dict
        Op attributes (conv: ``stride``, ``padding`` [top, left, bottom, right],
        ``dilation``, ``groups``; pools: ``kernel``, ``stride``, ``padding`` (average pools also
        ``count_include_pad``, default true);
        ``reshape``: ``shape``; ``concat``: ``axis`` counting the batch; all:
        ``act`` = ``(lo, hi)`` or ``None``).
    params : dict of numpy.ndarray
        float64 ``weight`` (conv: (N, C/g, KH, KW); linear: (N, K)), ``bias`` (N,);
        affine: ``scale`` and ``shift`` (C,).
    """

    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def act(self) -> tuple[float, float] | None:
        return self.attrs.get("act")


@dataclass
class FloatGraph:
    """A whole float network with one input and fused activations.

    Members
    -------
    name : str
        The model's name (file stem).
    source : str
        The file it was imported from.
    input : str
        Name of the input tensor.
    shapes : dict
        Tensor name -> shape without the batch dimension.
    nodes : list of FloatNode
        In execution order.
    outputs : list of str
        Output tensor names.
    """

    name: str
    source: str
    input: str
    shapes: dict[str, tuple[int, ...]]
    nodes: list[FloatNode]
    outputs: list[str]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shapes[self.input]

    def producer(self, tensor: str) -> FloatNode | None:
        for node in self.nodes:
            if node.output == tensor:
                return node
        return None

    def consumers(self, tensor: str) -> list[FloatNode]:
        return [n for n in self.nodes if tensor in n.inputs]

    def summary(self) -> str:
        """One line per node: name, op, output shape."""
        lines = [f"input {self.input} {self.input_shape}"]
        for n in self.nodes:
            act = f" act={n.act}" if n.act else ""
            lines.append(f"{n.name:30s} {n.op:16s} -> {n.output} {self.shapes[n.output]}{act}")
        return "\n".join(lines)


def _pad(x: np.ndarray, padding, value: float) -> np.ndarray:
    t, l, b, r = padding
    if not any(padding):
        return x
    return np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def _windows(x: np.ndarray, kernel, stride, dilation=(1, 1)):
    """Yield ``(i, j, view)`` with ``view[b, c, oh, ow] = x[b, c, oh*s + i*d, ow*s + j*d]``."""
    _, _, h, w = x.shape
    kh, kw = kernel
    sh, sw = stride
    dh, dw = dilation
    oh = conv_output_size(h, kh, sh, 0, 0, dh)  # x is already padded
    ow = conv_output_size(w, kw, sw, 0, 0, dw)
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, :, i * dh: i * dh + sh * (oh - 1) + 1: sh, j * dw: j * dw + sw * (ow - 1) + 1: sw]


def _conv(x, weight, bias, stride, padding, dilation, groups):
    x = _pad(x, padding, 0.0)
    n, cg, kh, kw = weight.shape
    b = x.shape[0]
    ng = n // groups
    w = weight.astype(np.float32).reshape(groups, ng, cg, kh, kw)
    out = None
    for i, j, view in _windows(x, (kh, kw), stride, dilation):
        v = view.reshape(b, groups, cg, view.shape[2], view.shape[3])
        if cg == 1 and ng == 1:  # depthwise: no reduction, a broadcast multiply
            term = v * w[None, :, 0, 0, i, j, None, None, None]
        else:
            term = np.einsum("bgchw,gnc->bgnhw", v, w[:, :, :, i, j], optimize=True)
        out = term if out is None else out + term
    out = out.reshape(b, n, out.shape[3], out.shape[4])
    return out + bias.astype(np.float32)[None, :, None, None]


def _pool(x, kernel, stride, padding, reduce, count_include_pad=True):
    if reduce == "max":
        x = _pad(x, padding, -np.inf)
        out = None
        for _, _, view in _windows(x, kernel, stride):
            out = view.copy() if out is None else np.maximum(out, view)
        return out
    h, w = x.shape[2:]
    x = _pad(x, padding, 0.0)
    out = None
    for _, _, view in _windows(x, kernel, stride):
        out = view.astype(np.float32) if out is None else out + view
    if not count_include_pad:
        return out / window_counts((h, w), kernel, stride, padding).astype(np.float32)
    return out / np.float32(kernel[0] * kernel[1])


def _act(y: np.ndarray, act) -> np.ndarray:
    if act is None:
        return y
    lo, hi = act
    return np.clip(y, np.float32(lo) if math.isfinite(lo) else None,
                   np.float32(hi) if math.isfinite(hi) else None)


def run_node(node: FloatNode, inputs: list[np.ndarray]) -> np.ndarray:
    """Execute one node on float32 batches (batch first)."""
    a = node.attrs
    x = inputs[0]
    if node.op == "conv":
        y = _conv(x, node.params["weight"], node.params["bias"], a["stride"], a["padding"],
                  a["dilation"], a["groups"])
    elif node.op == "linear":
        y = x @ node.params["weight"].astype(np.float32).T + node.params["bias"].astype(np.float32)
    elif node.op == "affine":
        shape = (1, -1) + (1,) * (x.ndim - 2)
        y = x * node.params["scale"].astype(np.float32).reshape(shape) \
            + node.params["shift"].astype(np.float32).reshape(shape)
    elif node.op == "add":
        y = inputs[0] + inputs[1]
    elif node.op == "max_pool":
        y = _pool(x, a["kernel"], a["stride"], a["padding"], "max")
    elif node.op == "avg_pool":
        y = _pool(x, a["kernel"], a["stride"], a["padding"], "avg", a.get("count_include_pad", True))
    elif node.op == "global_avg_pool":
        y = x.mean(axis=(2, 3), keepdims=True, dtype=np.float32)
    elif node.op == "flatten":
        y = x.reshape(x.shape[0], -1)
    elif node.op == "reshape":
        y = x.reshape((x.shape[0],) + tuple(a["shape"]))
    elif node.op == "concat":
        y = np.concatenate(inputs, axis=a["axis"])
    else:  # pragma: no cover - the importer only emits FLOAT_OPS
        raise ValueError(f"unknown float op {node.op!r}")
    return _act(y.astype(np.float32, copy=False), node.act)


def run_float(graph: FloatGraph, x: np.ndarray, *, return_all: bool = False,
              batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run the float graph on ``x`` (N, ...) in float32.

    Parameters
    ----------
    graph : FloatGraph
    x : numpy.ndarray
        Inputs, batch first, shaped as ``graph.input_shape``.
    return_all : bool
        Return every tensor (input included), not only the outputs.
    batch_size : int
        Images per step (bounds memory).

    Returns
    -------
    dict
        Tensor name -> float32 array (N, ...).
    """
    x = np.asarray(x, dtype=np.float32)
    keep = None if return_all else set(graph.outputs)
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, max(x.shape[0], 1), batch_size):
        values = {graph.input: x[start:start + batch_size]}
        for node in graph.nodes:
            values[node.output] = run_node(node, [values[t] for t in node.inputs])
        for name, value in values.items():
            if keep is None or name in keep:
                chunks.setdefault(name, []).append(value)
    return {name: np.concatenate(parts) for name, parts in chunks.items()}
