"""The fake-quant PyTorch model: an integer model's arithmetic in floating point.

:class:`FakeQuantModel` (or :func:`to_torch`) turns an :class:`accel.ir.Model`
into a :class:`torch.nn.Module` that takes the same integer input as the engine
(as a float tensor) and computes every layer's contract (DESIGN.md) with
explicit rounding, wrapping or saturation, shifts and clamps:

* the multiply-accumulate (``conv2d``/``linear``) and the window sums of the
  pools run as float convolutions on the integer values; in ``float64`` every
  partial sum is an integer below ``2**53``, so they are exact; in ``float32``
  they are exact while accumulators stay below ``2**24`` (a training mode,
  not a reference);
* the integer steps after it (``acc_bits`` wrap, rounding right shift, the
  ``multiply_shift`` product, clamps) run in ``int64`` inside
  :class:`torch.autograd.Function` s, so the forward pass is bit-exact and the
  backward pass is a straight-through estimator (see below);
* ``overflow="saturate"`` (clamp after every addition, bias first) is done
  exactly: when no partial sum of a layer can leave the accumulator range the
  plain sum is used, otherwise the reduction runs sequentially over ``k``.

The model's outputs equal :func:`accel.engine.run_model`'s bit for bit in
``float64`` (tests/frontend/test_fakequant.py holds it to the datapath contract
on random layers and configurations, and to the engine on the bundled models'
test sets).

Plan for AdaRound and quantization-aware training (not implemented here)
-----------------------------------------------------------------------
The module keeps what training will make differentiable apart from what is
fixed by the hardware:

* each MAC layer holds its LUT as a float parameter ``lut`` (frozen by
  default) and its ``codes`` as a buffer; the effective weights are
  ``lut[row, codes]`` (:meth:`FakeQuantMAC.weight`). QAT of the codebook
  unfreezes ``lut`` (rounded to int8 through :func:`round_ste` in the forward
  pass); AdaRound replaces :meth:`FakeQuantMAC.weight` by
  ``L[lo] + h(V) (L[hi] - L[lo])``, the soft choice between the levels just
  below and just above each float weight (LITERATURE.md), and writes the
  hardened choice back into ``codes``;
* every rounding and clamp goes through the straight-through helpers
  (:class:`RShiftRound`, :class:`Clamp`, :func:`round_ste`): the forward pass is
  the integer contract, the backward pass the derivative of the real-valued
  reading (``v / 2**s`` for a shift, ``1`` inside a clamp's range and ``0``
  outside), so gradients reach the weights and the activations;
* learning power-of-two exponents (LSQ+ style) would make the shifts
  ``log2``-parameters rounded with :func:`round_ste`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config import Overflow, Requant, Rounding
from ..datapath import conv_gemm_groups, conv_output_size, window_counts
from ..errors import ModelError
from ..ir import MAC_OPS, Layer, Model

__all__ = ["FAKEQUANT_MODULES", "FakeQuantModel", "FakeQuantMAC", "to_torch", "round_ste", "RShiftRound", "Clamp",
           "WrapAcc"]


# ----------------------------------------------------------------------------------------------
# Straight-through integer steps: exact forward (int64), real-valued backward.


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """``floor(x + 1/2)`` in the forward pass, identity in the backward pass."""
    return x + (torch.floor(x + 0.5) - x).detach()


def _to_int(v: torch.Tensor) -> torch.Tensor:
    return torch.round(v).to(torch.int64)


class RShiftRound(torch.autograd.Function):
    """``rshift_round(v * mult, shift)`` exactly (int64); backward ``d/dv = mult / 2**shift``.

    ``shift`` and ``mult`` are int64 tensors broadcasting against ``v``; ``half_up``
    adds ``2**(s-1)`` for ``s > 0`` before the arithmetic shift, ``floor`` does not.
    """

    @staticmethod
    def forward(ctx, v, shift, mult, half_up: bool):
        vi = _to_int(v)
        if mult is not None:
            vi = vi * mult
        if half_up:
            vi = vi + torch.where(shift > 0, torch.ones_like(shift) << torch.clamp(shift - 1, min=0),
                                  torch.zeros_like(shift))
        out = vi >> shift
        scale = torch.pow(2.0, -shift.to(v.dtype))
        if mult is not None:
            scale = scale * mult.to(v.dtype)
        ctx.save_for_backward(scale)
        return out.to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (scale,) = ctx.saved_tensors
        g = grad * scale
        return g, None, None, None


class Clamp(torch.autograd.Function):
    """Clamp to ``[lo, hi]``; backward passes the gradient inside the range (clipped STE)."""

    @staticmethod
    def forward(ctx, v, lo, hi):
        inside = (v >= lo) & (v <= hi)
        ctx.save_for_backward(inside)
        return torch.clamp(v, lo, hi)

    @staticmethod
    def backward(ctx, grad):
        (inside,) = ctx.saved_tensors
        return grad * inside.to(grad.dtype), None, None


class WrapAcc(torch.autograd.Function):
    """Two's complement wrap to ``bits`` bits (exact, int64); identity backward."""

    @staticmethod
    def forward(ctx, v, bits: int):
        half = 1 << (bits - 1)
        vi = _to_int(v)
        return (((vi + half) & ((half << 1) - 1)) - half).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


# ----------------------------------------------------------------------------------------------
# Layers


def _channel_view(t: torch.Tensor, ndim: int) -> torch.Tensor:
    """Per-channel vector (N,) shaped to broadcast along dim 1 of an ``ndim`` tensor."""
    return t.reshape((1, -1) + (1,) * (ndim - 2))


class FakeQuantMAC(nn.Module):
    """A ``conv2d`` or ``linear`` layer of the integer model.

    Parameters
    ----------
    layer : accel.ir.Layer
    config : accel.config.AcceleratorConfig
    dtype : torch.dtype
    in_range : tuple of int
        The input tensor's integer range (bounds the saturation check).

    Attributes
    ----------
    lut : torch.nn.Parameter
        The LUT levels (float, frozen: ``requires_grad=False``), (1 or N, entries).
    codes : torch.Tensor
        Buffer, int64 codes, the shape of the weight tensor.
    """

    def __init__(self, layer: Layer, config, dtype: torch.dtype, in_range: tuple[int, int]):
        super().__init__()
        self.name, self.op = layer.name, layer.op
        a, arr = layer.attrs, layer.arrays
        self.config = config
        self.lut = nn.Parameter(torch.as_tensor(np.asarray(arr["lut"], np.float64), dtype=dtype),
                                requires_grad=False)
        self.register_buffer("codes", torch.as_tensor(np.asarray(arr["codes"], np.int64)))
        n = self.codes.shape[0]
        self.register_buffer("bias", torch.as_tensor(np.broadcast_to(np.asarray(arr["bias"], np.float64), (n,)).copy(),
                                                     dtype=dtype))
        self.register_buffer("shift", torch.as_tensor(np.broadcast_to(np.asarray(arr["shift"], np.int64), (n,)).copy()))
        mult = None
        if config.requant is Requant.MULTIPLY_SHIFT:
            mult = torch.as_tensor(np.broadcast_to(np.asarray(arr["mult"], np.int64), (n,)).copy())
        self.register_buffer("mult", mult)
        self.lo, self.hi, self.raw = int(a["lo"]), int(a["hi"]), bool(a["raw"])
        if layer.op == "conv2d":
            self.stride = tuple(a["stride"])
            self.padding = tuple(a["padding"])  # top, left, bottom, right
            self.dilation = tuple(a["dilation"])
            self.groups = int(a["groups"])
            self.pad_value = int(a["pad_value"])
        self.in_max = max(abs(in_range[0]), abs(in_range[1]), abs(a.get("pad_value", 0)))
        # multipoint (contract v1.3): extra rows through their channel's LUT row, shifted onto the channel
        pc, ch, sh = layer.points if layer.points is not None else (None, None, None)
        self.register_buffer("point_codes", None if pc is None else torch.as_tensor(np.asarray(pc, np.int64)))
        self.register_buffer("point_channel", None if ch is None else torch.as_tensor(np.asarray(ch, np.int64)))
        self.register_buffer("point_scale", None if sh is None else
                             torch.as_tensor(np.ldexp(1.0, np.asarray(sh, np.int64)), dtype=dtype))

    def weight(self) -> torch.Tensor:
        """Effective weights ``lut[row(n), codes[n, ...]]`` (float, the shape of ``codes``)."""
        n = self.codes.shape[0]
        flat = self.codes.reshape(n, -1)
        rows = self.lut.expand(n, -1) if self.lut.shape[0] == 1 else self.lut
        return torch.gather(rows, 1, flat).reshape(self.codes.shape)

    def point_weight(self) -> torch.Tensor:
        """The extra rows' effective weights (P, ...) through the LUT row of their channel."""
        p = self.point_codes.shape[0]
        rows = self.lut.expand(p, -1) if self.lut.shape[0] == 1 else self.lut[self.point_channel]
        return torch.gather(rows, 1, self.point_codes.reshape(p, -1)).reshape(self.point_codes.shape)

    def _lanes_may_saturate(self, w: torch.Tensor, wp: torch.Tensor) -> bool:
        """Whether a lane, a shifted lane or a step of their combination could leave the accumulator range."""
        bound = w.detach().abs().reshape(w.shape[0], -1).sum(1)
        lanes = wp.detach().abs().reshape(wp.shape[0], -1).sum(1) * self.point_scale
        bound = bound.index_add(0, self.point_channel, lanes) * self.in_max + self.bias.detach().abs()
        return bool((bound > self.config.acc_max).any())

    def _accumulate_points(self, x: torch.Tensor) -> torch.Tensor:
        """A multipoint layer's accumulators: the equivalent ordinary layer (exact under wrap and wherever
        nothing can overflow), else each lane clamped in order and joined by the contract's clamps."""
        w, wp = self.weight(), self.point_weight()
        view = (-1,) + (1,) * (w.ndim - 1)
        if self.config.overflow is Overflow.WRAP or not self._lanes_may_saturate(w, wp):
            return self._accumulate(x, w.index_add(0, self.point_channel, wp * self.point_scale.reshape(view)))
        lo, hi = float(self.config.acc_min), float(self.config.acc_max)
        acc = self._accumulate_saturating(x, w, self.bias, self.groups if self.op == "conv2d" else 1)
        if self.op == "conv2d" and self.groups > 1:  # each lane reads its channel's group: dense rows, zeros elsewhere
            cg, ng = w.shape[1], w.shape[0] // self.groups
            dense = wp.new_zeros((wp.shape[0], cg * self.groups) + tuple(wp.shape[2:]))
            for p, group in enumerate((self.point_channel // ng).tolist()):
                dense[p, group * cg:(group + 1) * cg] = wp[p]
            wp = dense
        lanes = self._accumulate_saturating(x, wp, wp.new_zeros(wp.shape[0]), 1)
        cols = list(acc.unbind(1))
        for p, n in enumerate(self.point_channel.tolist()):
            cols[n] = Clamp.apply(cols[n] + Clamp.apply(lanes[:, p] * self.point_scale[p], lo, hi), lo, hi)
        return torch.stack(cols, 1)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        pt, pl, pb, pr = self.padding
        if pt == pl == pb == pr == 0:
            return x
        return F.pad(x, (pl, pr, pt, pb), value=float(self.pad_value))

    def _may_saturate(self, w: torch.Tensor) -> bool:
        """Whether some partial sum could leave the accumulator range."""
        cfg = self.config
        bound = self.bias.detach().abs() + w.detach().abs().reshape(w.shape[0], -1).sum(1) * self.in_max
        return bool((bound > cfg.acc_max).any()) or bool((self.bias.detach().abs() > cfg.acc_max).any())

    def _accumulate(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        if cfg.overflow is Overflow.SATURATE and self._may_saturate(w):
            return self._accumulate_saturating(x, w, self.bias, self.groups if self.op == "conv2d" else 1)
        if self.op == "conv2d":
            acc = F.conv2d(self._pad(x), w, None, self.stride, 0, self.dilation, self.groups)
        else:
            acc = x @ w.t()
        acc = acc + _channel_view(self.bias, acc.ndim)
        if cfg.overflow is Overflow.WRAP:
            acc = WrapAcc.apply(acc, cfg.acc_bits)
        return acc

    def _accumulate_saturating(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor,
                               groups: int) -> torch.Tensor:
        """Clamp after every addition, bias first, ``k`` ascending (exact, slow)."""
        cfg = self.config
        lo, hi = float(cfg.acc_min), float(cfg.acc_max)
        n = w.shape[0]
        if self.op == "conv2d":
            b, c = x.shape[:2]
            kh, kw = w.shape[2:]
            xp = self._pad(x)
            oh = conv_output_size(xp.shape[2], kh, self.stride[0], 0, 0, self.dilation[0])
            ow = conv_output_size(xp.shape[3], kw, self.stride[1], 0, 0, self.dilation[1])
            # unfold lays each patch out as (c, kernel row, kernel column): the contract's im2col order.
            cols = F.unfold(xp, (kh, kw), dilation=self.dilation, stride=self.stride)  # (B, C*KH*KW, OH*OW)
            cols = cols.transpose(1, 2).reshape(b, oh, ow, c, kh, kw)
            outs = [self._seq(patch, w[sl].reshape(-1, patch.shape[1]), bias[sl], lo, hi)
                    for sl, patch in conv_gemm_groups(cols, n, groups)]
            return torch.cat(outs, 1).reshape(b, oh, ow, n).permute(0, 3, 1, 2)
        return self._seq(x, w, bias, lo, hi)

    @staticmethod
    def _seq(x, w, bias, lo, hi):
        acc = Clamp.apply(bias.unsqueeze(0).expand(x.shape[0], -1), lo, hi)
        for k in range(x.shape[1]):
            acc = Clamp.apply(acc + x[:, k:k + 1] * w[:, k].unsqueeze(0), lo, hi)
        return acc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        acc = self._accumulate(x, self.weight()) if self.point_codes is None else self._accumulate_points(x)
        if self.raw:
            return acc
        shift = _channel_view(self.shift, acc.ndim)
        mult = None if self.mult is None else _channel_view(self.mult, acc.ndim)
        y = RShiftRound.apply(acc, shift, mult, self.config.rounding is Rounding.HALF_UP)
        return Clamp.apply(y, float(self.lo), float(self.hi))


class _Op(nn.Module):
    """A layer without weights (add, pools, data movement)."""

    def __init__(self, layer: Layer, config, dtype: torch.dtype):
        super().__init__()
        self.name, self.op, self.attrs = layer.name, layer.op, dict(layer.attrs)
        self.half_up = config.rounding is Rounding.HALF_UP
        self.dtype = dtype
        # an average pool that excludes padding: a multiplier and a shift per window size
        self.count_mult = self.count_shift = None
        if "count_mult" in layer.arrays:
            self.count_mult = torch.as_tensor(np.asarray(layer.arrays["count_mult"], np.int64))
            self.count_shift = torch.as_tensor(np.asarray(layer.arrays["count_shift"], np.int64))

    def _requant(self, total, mult, shift, lo, hi):
        s = torch.tensor(int(shift), dtype=torch.int64)
        m = None if mult is None else torch.tensor(int(mult), dtype=torch.int64)
        y = RShiftRound.apply(total, s, m, self.half_up)
        return Clamp.apply(y, float(lo), float(hi))

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        forward = _OP_FORWARD.get(self.op)
        if forward is None:
            raise ModelError(f"layer {self.name!r}: op {self.op!r} has no fake-quant implementation")
        return forward(self, xs)


def _add(op: _Op, xs) -> torch.Tensor:
    a = op.attrs
    total = xs[0] * float(1 << int(a["shift_a"])) + xs[1] * float(1 << int(a["shift_b"]))
    return op._requant(total, None, a["shift"], a["lo"], a["hi"])


def _max_pool(op: _Op, xs) -> torch.Tensor:
    a = op.attrs
    pt, pl, pb, pr = a["padding"]
    xp = F.pad(xs[0], (pl, pr, pt, pb), value=-math.inf) if any(a["padding"]) else xs[0]
    return F.max_pool2d(xp, tuple(a["kernel"]), tuple(a["stride"]))


def _avg_pool(op: _Op, xs) -> torch.Tensor:
    a, x = op.attrs, xs[0]
    pt, pl, pb, pr = a["padding"]
    exclude = op.count_mult is not None  # padding excluded: zeros in the sum, a divisor per position
    pad_value = 0.0 if exclude else float(a["pad_value"])
    xp = F.pad(x, (pl, pr, pt, pb), value=pad_value) if any(a["padding"]) else x
    c = x.shape[1]
    ones = torch.ones((c, 1) + tuple(a["kernel"]), dtype=x.dtype)
    total = F.conv2d(xp, ones, None, tuple(a["stride"]), 0, 1, c)
    if exclude:
        counts = torch.as_tensor(window_counts(tuple(x.shape[2:]), a["kernel"], a["stride"], a["padding"]) - 1)
        y = RShiftRound.apply(total, op.count_shift[counts], op.count_mult[counts], op.half_up)
        return Clamp.apply(y, float(a["lo"]), float(a["hi"]))
    return op._requant(total, a["mult"], a["shift"], a["lo"], a["hi"])


def _global_avg_pool(op: _Op, xs) -> torch.Tensor:
    a = op.attrs
    total = xs[0].sum(dim=(2, 3), keepdim=True)
    return op._requant(total, a["mult"], a["shift"], a["lo"], a["hi"])


def _flatten(op: _Op, xs) -> torch.Tensor:
    return xs[0].reshape(xs[0].shape[0], -1)


def _reshape(op: _Op, xs) -> torch.Tensor:
    return xs[0].reshape((xs[0].shape[0],) + tuple(op.attrs["shape"]))


def _concat(op: _Op, xs) -> torch.Tensor:
    return torch.cat(xs, dim=int(op.attrs["axis"]))


#: The forward pass of every op off the MAC array: (module, inputs) -> output.
_OP_FORWARD = {
    "add": _add, "max_pool": _max_pool, "avg_pool": _avg_pool, "global_avg_pool": _global_avg_pool,
    "flatten": _flatten, "reshape": _reshape, "concat": _concat,
}


def _mac_module(layer: Layer, model: Model, dtype: torch.dtype) -> nn.Module:
    return FakeQuantMAC(layer, model.config, dtype, model.tensors[layer.inputs[0]].range)


def _op_module(layer: Layer, model: Model, dtype: torch.dtype) -> nn.Module:
    return _Op(layer, model.config, dtype)


#: Per op of :data:`accel.ir.OPS`: (layer, model, dtype) -> the module that runs it.
FAKEQUANT_MODULES = {op: _mac_module for op in MAC_OPS} | {op: _op_module for op in _OP_FORWARD}


class FakeQuantModel(nn.Module):
    """An integer model as a PyTorch module (float arithmetic, integer contract).

    Parameters
    ----------
    model : accel.ir.Model
        The integer model (validated).
    dtype : torch.dtype
        ``torch.float64`` (default; bit-exact against the engine) or ``torch.float32``.

    Examples
    --------
    >>> fq = FakeQuantModel(model)                          # doctest: +SKIP
    >>> logits = fq(torch.as_tensor(x_int, dtype=torch.float64))  # doctest: +SKIP
    """

    def __init__(self, model: Model, dtype: torch.dtype = torch.float64):
        super().__init__()
        if dtype not in (torch.float64, torch.float32):
            raise ModelError(f"fake-quant dtype {dtype}: expected torch.float64 or torch.float32")
        self.model = model
        self.dtype = dtype
        self.inputs = list(model.inputs)
        self.outputs = list(model.outputs)
        self.layers = nn.ModuleDict()
        self._order: list[tuple[str, list[str], str]] = []
        for i, layer in enumerate(model.layers):
            make = FAKEQUANT_MODULES.get(layer.op)
            if make is None:
                raise ModelError(f"layer {layer.name!r}: op {layer.op!r} has no fake-quant implementation")
            key = f"l{i}"
            self.layers[key] = make(layer, model, dtype)
            self._order.append((key, list(layer.inputs), layer.output))

    def run(self, inputs, return_all: bool = False) -> dict[str, torch.Tensor]:
        """All output tensors (every tensor with ``return_all``) as float tensors of integer values.

        Parameters
        ----------
        inputs : torch.Tensor, numpy.ndarray or dict
            The integer input (N, ...) of a single-input model, or a dict name -> array.
        return_all : bool
        """
        if not isinstance(inputs, dict):
            inputs = {self.inputs[0]: inputs}
        values = {k: torch.as_tensor(np.asarray(v) if not isinstance(v, torch.Tensor) else v).to(self.dtype)
                  for k, v in inputs.items()}
        for name in self.inputs:
            if name not in values:
                raise ModelError(f"fake-quant model: input {name!r} is missing")
            want = tuple(self.model.tensors[name].shape)
            if tuple(values[name].shape[1:]) != want:
                raise ModelError(f"fake-quant model: input {name!r} has shape {tuple(values[name].shape)}, "
                                 f"expected (N, {', '.join(map(str, want))})")
        for key, ins, out in self._order:
            values[out] = self.layers[key](*[values[t] for t in ins])
        return values if return_all else {k: values[k] for k in self.outputs}

    def forward(self, x):
        """The output tensor (a dict of them for a model with several outputs)."""
        out = self.run(x)
        return out[self.outputs[0]] if len(self.outputs) == 1 else out


def to_torch(model: Model, dtype: torch.dtype = torch.float64) -> FakeQuantModel:
    """Same as ``FakeQuantModel(model, dtype)``."""
    return FakeQuantModel(model, dtype)
