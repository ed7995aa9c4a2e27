"""The trainable network of quantization-aware training: an integer model with learnable parts.

:class:`QATNetwork` holds, for an imported float graph, everything that training may change:

* per MAC layer the latent float weights and biases (from the ONNX file), the LUT levels
  (float, rounded to int8 in the forward pass; trained only with ``learn_lut``) and the
  log2 of each output channel's weight scale;
* per activation tensor (one per group of tensors that share an exponent: max pool,
  flatten, reshape and concat outputs with their inputs) the log2 of its scale.

Every forward pass first *emits the integer model* that these parameters stand for
(:meth:`QATNetwork.plan`: exponents rounded, each latent weight on its nearest LUT level,
biases rounded onto the accumulator grid, through the front end's own
:func:`~accel.frontend.quantize.emit_integer_model`), then computes that model's contract
in real units (``x_real = q * 2^-e``) with straight-through gradients:

* the forward value of every quantized quantity is the plan's integer times a power of
  two, written ``exact + (latent - latent.detach())`` so that the float addition cannot
  move it by an ulp;
* a MAC layer's real accumulator is ``acc_int * 2^-(e_x + e_w[n])``, and requantization
  ``clamp(floor(acc_real * 2^e_y + 1/2), lo, hi)`` equals the contract's
  ``rshift_round(acc_int, e_x + e_w - e_y)``; in ``float64`` every one of these values is
  exact, so the exported model (the plan) gives the same logits through the engine
  (tests/frontend/qat/test_train.py holds them equal on a whole test set);
* the gradient of a log2 scale is LSQ's (``ln 2 * (x - x_hat)`` inside the clamp range,
  the clipped bound outside), scaled by LSQ's ``1 / sqrt(elements * q_max)``.

With ``learn_offsets``, every signed activation group whose offset folds exactly
(:func:`~accel.frontend.quantize.offset_groups`: made and read by conv/linear layers) also
learns an integer offset ``o`` in the spirit of LSQ+ (``x_real = (q + o) * 2^-e``, rounded
with a straight-through estimator: its gradient is the clipped bound's, as LSQ+'s); the
emitter folds it into the biases around the tensor and the consumers' ``pad_value``.

The network ignores accumulator wrap-around (``acc_bits``); the export check runs the
engine and reports any disagreement.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...config import Requant, Rounding
from ...datapath import quantize_input
from ...errors import ConfigError
from ...ir import MAC_OPS, Model
from ..calibrate import Calibration
from ..graph import MAC_NODE_OPS, FloatGraph
from ..quantize import QuantizeOptions, emit_integer_model, offset_bias, offset_groups, weight_tensor
from ..weights import WeightQuant

__all__ = ["QATNetwork", "straight_through", "scale_gradient", "nearest_codes"]

#: Ops whose output shares its inputs' exponent (assign_exponents makes them one group).
_SHARED_EXPONENT_OPS = ("max_pool", "flatten", "reshape", "concat")


def straight_through(exact: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
    """``exact`` in the forward pass (bit for bit), the gradient of ``latent`` in the backward pass."""
    return exact + (latent - latent.detach())


def scale_gradient(x: torch.Tensor, factor: float) -> torch.Tensor:
    """``x`` in the forward pass; its gradient times ``factor`` (LSQ's gradient scaling)."""
    return (x - x * factor).detach() + x * factor


def nearest_codes(scaled: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Index of the nearest level in each row: ``scaled`` (N, K) against ``levels`` (1 or N, E)."""
    dist = np.abs(scaled[:, :, None] - levels[:, None, :])
    return np.argmin(dist, axis=2).astype(np.uint8)


def _channel(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape((-1,) + (1,) * (ndim - 1))


class _Groups:
    """Tensors that share one exponent (union-find by name)."""

    def __init__(self, graph: FloatGraph):
        self.parent: dict[str, str] = {}
        for node in graph.nodes:
            if node.op in _SHARED_EXPONENT_OPS:
                for t in node.inputs:
                    self.parent[self.find(node.output)] = self.find(t)

    def find(self, t: str) -> str:
        while self.parent.get(t, t) != t:
            t = self.parent[t]
        return t


class QATNetwork(nn.Module):
    """An imported network as a trainable integer model (see the module docstring).

    Parameters
    ----------
    graph : FloatGraph
        The imported float network (BatchNorm folded).
    calib : Calibration
        The post-training calibration (signedness of every tensor, the input exponent).
    start : accel.ir.Model
        The post-training integer model that training starts from (its exponents, LUTs, codes).
    weights : dict
        Node name -> the post-training :class:`~accel.frontend.weights.WeightQuant`.
    options : QuantizeOptions
    learn_lut : bool
        Train the LUT levels (int8 codebook per layer or channel).
    learn_scales : bool
        Train the log2 scales of weights and activations.
    learn_offsets : bool
        Train the integer activation offsets of the signed tensors where they fold exactly
        (starting from ``calib.offsets``).

    Members
    -------
    input_exponent : int
        The network input's exponent (fixed: the engine quantizes the input with it).
    """

    def __init__(self, graph: FloatGraph, calib: Calibration, start: Model, weights: dict[str, WeightQuant],
                 options: QuantizeOptions, *, learn_lut: bool = False, learn_scales: bool = True,
                 learn_offsets: bool = False):
        super().__init__()
        config = start.config
        if config.requant is not Requant.SHIFT:
            raise ConfigError(f"requant {config.requant.value!r}: quantization-aware training learns power-of-two "
                              f"scales and needs requant = 'shift'")
        self.graph, self.calib, self.config, self.options = graph, calib, config, options
        self.groups = _Groups(graph)
        self.input_exponent = int(start.tensors[graph.input].exponent)
        self.mac_nodes = [n for n in graph.nodes if n.op in MAC_NODE_OPS]
        self._key = {n.name: f"m{i}" for i, n in enumerate(self.mac_nodes)}
        self.latent_weight = nn.ParameterDict()
        self.latent_bias = nn.ParameterDict()
        self.lut = nn.ParameterDict()
        self.weight_log2 = nn.ParameterDict()
        for node in self.mac_nodes:
            k, q = self._key[node.name], weights[node.name]
            w = weight_tensor(node, graph.shapes[node.inputs[0]])
            self.latent_weight[k] = nn.Parameter(torch.tensor(w, dtype=torch.float32))
            if node.op == "affine" and w.ndim == 2:  # a diagonal linear: only the diagonal is a weight
                mask = torch.eye(w.shape[0], dtype=torch.float32)
                self.latent_weight[k].register_hook(lambda g, m=mask: g * m)
            bias = node.params["bias"] if node.op in ("conv", "linear") else node.params["shift"]
            self.latent_bias[k] = nn.Parameter(torch.tensor(np.broadcast_to(bias, (w.shape[0],)).copy(),
                                                            dtype=torch.float32))
            self.lut[k] = nn.Parameter(torch.tensor(q.lut, dtype=torch.float32), requires_grad=learn_lut)
            self.weight_log2[k] = nn.Parameter(torch.tensor(q.exponent, dtype=torch.float32),
                                               requires_grad=learn_scales)
        self.act_log2 = nn.ParameterDict()
        self._act_key: dict[str, str] = {}
        for t in [n.output for n in graph.nodes]:
            root = self.groups.find(t)
            if root == graph.input or start.tensors[t].exponent is None:
                continue
            if root not in self._act_key:
                key = f"a{len(self._act_key)}"
                self._act_key[root] = key
                self.act_log2[key] = nn.Parameter(torch.tensor(float(start.tensors[t].exponent)),
                                                  requires_grad=learn_scales)
        # Offsets: one per foldable signed group (keyed as its log2 scale), fixed at calib's unless learned.
        self.act_offset = nn.ParameterDict()
        for members in offset_groups(graph).values():
            key = self._act_key.get(self.groups.find(members[0]))
            if key is None or not start.tensors[members[0]].dtype == "int8":
                continue
            initial = next((calib.offsets[t] for t in members if calib.offsets.get(t)), 0)
            if learn_offsets or initial:
                self.act_offset[key] = nn.Parameter(torch.tensor(float(initial)), requires_grad=learn_offsets)
        self._plan: Model | None = None

    # ------------------------------------------------------------------------------------------
    # The integer model that the parameters stand for

    def tensor_exponent(self, tensor: str) -> int:
        """The rounded exponent that the parameters give ``tensor`` (before the legality rules)."""
        root = self.groups.find(tensor)
        if root == self.graph.input:
            return self.input_exponent
        key = self._act_key.get(root)
        return 0 if key is None else int(math.floor(float(self.act_log2[key].detach()) + 0.5))

    def tensor_offset(self, tensor: str) -> int:
        """The rounded activation offset that the parameters give ``tensor`` (0 where none is learned)."""
        key = self._act_key.get(self.groups.find(tensor))
        if key is None or key not in self.act_offset:
            return 0
        lo, hi = self.config.act_range(True)  # the pad value -o must be an activation the array takes
        return int(min(max(math.floor(float(self.act_offset[key].detach()) + 0.5), -hi), -lo))

    def quantized_weights(self) -> dict[str, WeightQuant]:
        """Every MAC node's weights on its LUT: rounded exponents, int8 levels, nearest codes."""
        out = {}
        for node in self.mac_nodes:
            k = self._key[node.name]
            exponent = np.floor(self.weight_log2[k].detach().cpu().double().numpy() + 0.5)
            levels = np.clip(np.floor(self.lut[k].detach().cpu().double().numpy() + 0.5), -128, 127)
            w = self.latent_weight[k].detach().cpu().double().numpy()
            scaled = w.reshape(w.shape[0], -1) * np.exp2(exponent)[:, None]
            codes = nearest_codes(scaled, levels).reshape(w.shape)
            out[node.name] = WeightQuant(codes=codes, lut=levels.astype(np.int8), step=np.exp2(-exponent))
        return out

    def plan(self) -> Model:
        """The integer model of the current parameters (what :meth:`forward` computes and export writes)."""
        nodes = []
        for node in self.graph.nodes:
            if node.op in MAC_NODE_OPS:
                bias = self.latent_bias[self._key[node.name]].detach().cpu().double().numpy()
                params = dict(node.params, **({"bias": bias} if node.op in ("conv", "linear") else {"shift": bias}))
                node = replace(node, params=params)
            nodes.append(node)
        graph = replace(self.graph, nodes=nodes)
        exponents = {t: self.tensor_exponent(t) for t in [graph.input] + [n.output for n in graph.nodes]}
        offsets = {t: o for t in exponents if (o := self.tensor_offset(t))}
        calib = replace(self.calib, exponents=exponents, offsets=offsets)
        self._plan = emit_integer_model(graph, calib, self.config, self.options, weights=self.quantized_weights())
        return self._plan

    # ------------------------------------------------------------------------------------------
    # The forward pass: the plan's contract in real units, straight-through gradients

    def quantize_input(self, x) -> torch.Tensor:
        """Real-valued images to the real reading of the engine's integer input."""
        lo, hi = self.config.act_range(True)
        q = quantize_input(np.asarray(x, np.float64), self.input_exponent, lo, hi)
        dtype = self.latent_bias[self._key[self.mac_nodes[0].name]].dtype
        return torch.as_tensor(q, dtype=dtype) * math.ldexp(1.0, -self.input_exponent)

    def _exponent(self, plan: Model, tensor: str, numel: int, q_max: int) -> torch.Tensor:
        """The plan's exponent of ``tensor`` with the gradient of its log2 parameter (LSQ-scaled)."""
        exact = float(plan.tensors[tensor].exponent)
        key = self._act_key.get(self.groups.find(tensor))
        if key is None:
            return torch.tensor(exact)
        latent = scale_gradient(self.act_log2[key], 1.0 / math.sqrt(max(numel * q_max, 1)))
        return straight_through(torch.tensor(exact, dtype=latent.dtype), latent)

    def _offset(self, plan: Model, tensor: str) -> tuple[int, torch.Tensor | None]:
        """The plan's activation offset of ``tensor`` and, where it has one, its value with the
        straight-through gradient of its latent parameter (``None`` otherwise)."""
        exact = int(plan.metadata.get("activation_offsets", {}).get(tensor, 0))
        key = self._act_key.get(self.groups.find(tensor))
        if key is None or key not in self.act_offset:
            return exact, torch.tensor(float(exact)) if exact else None
        latent = self.act_offset[key]
        return exact, straight_through(torch.tensor(float(exact), dtype=latent.dtype), latent)

    def _requantize(self, v: torch.Tensor, lo: int, hi: int, offset: torch.Tensor | None = None) -> torch.Tensor:
        """``clamp(round(v), lo, hi)`` with the contract's rounding; straight-through inside the range.

        With an activation ``offset`` ``o``: ``clamp(round(v) - o, lo, hi) + o`` (the stored code plus
        its offset), whose gradient in ``o`` is LSQ+'s: 1 where clipped, 0 inside.
        """
        exact = torch.floor(v + 0.5) if self.config.rounding is Rounding.HALF_UP else torch.floor(v)
        rounded = straight_through(exact.detach(), v)
        if offset is None:
            return torch.clamp(rounded, float(lo), float(hi))
        return torch.clamp(rounded - offset.to(v.dtype), float(lo), float(hi)) + offset.to(v.dtype)

    def _mac(self, plan: Model, layer, values) -> torch.Tensor:
        k = self._key[layer.name]
        x = values[layer.inputs[0]]
        arr, attrs = layer.arrays, layer.attrs
        ndim = self.latent_weight[k].ndim
        e_x = self._exponent(plan, layer.inputs[0], 1, 1).detach()  # its own gradient comes from its producer
        w_param = self.latent_weight[k]
        n_out = w_param.shape[0]
        e_w = straight_through(torch.as_tensor(np.asarray(arr["weight_exponent"], np.float64), dtype=x.dtype),
                               scale_gradient(self.weight_log2[k], 1.0 / math.sqrt(w_param[0].numel() * 127)))
        w_scale = torch.exp2(_channel(e_w, ndim))
        lut = torch.as_tensor(np.asarray(arr["lut"], np.float64), dtype=x.dtype)
        lut = straight_through(lut, self.lut[k].to(x.dtype)) if self.lut[k].requires_grad else lut
        rows = lut.expand(n_out, -1) if lut.shape[0] == 1 else lut
        codes = torch.as_tensor(np.asarray(arr["codes"], np.int64)).reshape(n_out, -1)
        levels = torch.gather(rows, 1, codes).reshape(w_param.shape)
        scaled = w_param.to(x.dtype) * w_scale
        weight = (levels + (scaled - scaled.detach())) / w_scale
        acc_scale = torch.exp2(e_x + e_w)
        b_latent = self.latent_bias[k].to(x.dtype) * acc_scale
        o_x, _ = self._offset(plan, layer.inputs[0])
        o_y, offset = (0, None) if attrs["raw"] else self._offset(plan, layer.output)
        # The real network's bias: the plan's less what the offsets folded into it (x already holds q + o_x).
        core = np.asarray(arr["bias"], np.float64) - offset_bias(arr["codes"], arr["lut"], arr["shift"], o_x, o_y)
        bias = straight_through(torch.as_tensor(core, dtype=x.dtype), b_latent) / acc_scale
        if layer.op == "conv2d":
            pt, pl, pb, pr = attrs["padding"]
            xp = F.pad(x, (pl, pr, pt, pb), value=0.0) if any(attrs["padding"]) else x
            acc = F.conv2d(xp, weight, None, tuple(attrs["stride"]), 0, tuple(attrs["dilation"]), attrs["groups"])
            acc = acc + bias.reshape(1, -1, 1, 1)
        else:
            acc = x @ weight.t() + bias
        if attrs["raw"]:
            return acc
        e_y = self._exponent(plan, layer.output, acc[0].numel(), max(abs(attrs["lo"]), abs(attrs["hi"])))
        q = self._requantize(acc * torch.exp2(e_y), attrs["lo"], attrs["hi"], offset)
        self._activations.append(q * torch.exp2(-e_y))
        return self._activations[-1]

    def _add(self, plan: Model, layer, values) -> torch.Tensor:
        a = layer.attrs
        total = values[layer.inputs[0]] + values[layer.inputs[1]]
        e_y = self._exponent(plan, layer.output, total[0].numel(), max(abs(a["lo"]), abs(a["hi"])))
        return self._requantize(total * torch.exp2(e_y), a["lo"], a["hi"]) * torch.exp2(-e_y)

    def _average(self, plan: Model, layer, values) -> torch.Tensor:
        a, x = layer.attrs, values[layer.inputs[0]]
        if layer.op == "avg_pool":
            pt, pl, pb, pr = a["padding"]
            xp = F.pad(x, (pl, pr, pt, pb), value=0.0) if any(a["padding"]) else x
            c = x.shape[1]
            total = F.conv2d(xp, torch.ones((c, 1) + tuple(a["kernel"]), dtype=x.dtype), None,
                             tuple(a["stride"]), 0, 1, c)
        else:
            total = x.sum(dim=(2, 3), keepdim=True)
        e_x, e_y_exact = plan.tensors[layer.inputs[0]].exponent, plan.tensors[layer.output].exponent
        # sum_int * M * 2^-s, with sum_int = total * 2^e_x; the exponent's gradient as if e_y were free
        ratio = a["mult"] * math.ldexp(1.0, e_x - a["shift"])
        e_y = self._exponent(plan, layer.output, total[0].numel(), max(abs(a["lo"]), abs(a["hi"])))
        v = total * ratio * torch.exp2(e_y - float(e_y_exact))
        return self._requantize(v, a["lo"], a["hi"]) * torch.exp2(-e_y)

    def _max_pool(self, plan: Model, layer, values) -> torch.Tensor:
        a = layer.attrs
        pt, pl, pb, pr = a["padding"]
        x = values[layer.inputs[0]]
        xp = F.pad(x, (pl, pr, pt, pb), value=-math.inf) if any(a["padding"]) else x
        return F.max_pool2d(xp, tuple(a["kernel"]), tuple(a["stride"]))

    def _movement(self, plan: Model, layer, values) -> torch.Tensor:
        xs = [values[t] for t in layer.inputs]
        if layer.op == "flatten":
            return xs[0].reshape(xs[0].shape[0], -1)
        if layer.op == "reshape":
            return xs[0].reshape((xs[0].shape[0],) + tuple(layer.attrs["shape"]))
        return torch.cat(xs, dim=int(layer.attrs["axis"]))

    def forward(self, x, *, plan: Model | None = None) -> torch.Tensor:
        """Real-valued logits of real-valued images ``x`` (the plan's raw accumulators times their scales).

        ``plan`` reuses an integer model from :meth:`plan` (evaluation); by default it is emitted anew
        from the current parameters.
        """
        plan = plan or self.plan()
        values = {self.graph.input: x if isinstance(x, torch.Tensor) else self.quantize_input(x)}
        self._activations: list[torch.Tensor] = []
        for layer in plan.layers:
            values[layer.output] = _FORWARD[layer.op](self, plan, layer, values)
        return values[plan.outputs[0]]

    def activations(self) -> list[torch.Tensor]:
        """The requantized MAC outputs (real units) of the last forward pass (for an L1 penalty)."""
        return list(self._activations)


#: Per op of the integer model: the forward pass in real units.
_FORWARD = {op: QATNetwork._mac for op in MAC_OPS} | {
    "add": QATNetwork._add, "avg_pool": QATNetwork._average, "global_avg_pool": QATNetwork._average,
    "max_pool": QATNetwork._max_pool, "flatten": QATNetwork._movement, "reshape": QATNetwork._movement,
    "concat": QATNetwork._movement,
}
