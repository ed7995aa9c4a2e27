"""Lowering of conv2d (im2col) and linear layers to matrix products for the MAC array.

A multipoint layer (contract v1.3) is scheduled, not built: each group's extra rows become extra
columns of its product, after the group's own channels (bias 0, the LUT row of their channel), the
array emits every column's raw accumulator, and the vector unit's epilogue
(:class:`PointEpilogue`) joins the extra columns to their channels by shift-and-add and requantizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import datapath
from ..config import AcceleratorConfig, Requant
from ..errors import DataError, ModelError
from ..ir import MAC_OPS, Layer, Model

__all__ = ["GemmProblem", "PointEpilogue", "lower_layer", "assemble_output"]


@dataclass
class PointEpilogue:
    """The vector unit's work after the array for a multipoint product: columns ``0 .. channels - 1``
    are the channels' own accumulators, column ``channels + p`` joins channel ``point_channel[p]``
    shifted left by ``point_shift[p]`` (:func:`accel.datapath.combine_points`); then the channels
    requantize with ``shift``/``mult``/``lo``/``hi`` (or stay raw)."""

    channels: int
    point_channel: np.ndarray
    point_shift: np.ndarray
    shift: np.ndarray
    mult: np.ndarray | None
    lo: int
    hi: int
    raw: bool

    def finish(self, lanes: np.ndarray, config: AcceleratorConfig) -> np.ndarray:
        """(P, channels + points) raw accumulators of the array -> (P, channels) layer outputs."""
        lanes = np.asarray(lanes, dtype=np.int64)
        acc = datapath.combine_points(lanes[:, :self.channels], lanes[:, self.channels:], self.point_channel,
                                      self.point_shift, config.acc_bits, config.overflow)
        if self.raw:
            return acc
        return datapath.requantize(acc, self.shift, self.mult if self.mult is not None else 1, self.lo, self.hi,
                                   config)


@dataclass
class GemmProblem:
    """``out[p, n] = requant(bias[n] + sum_k lut[n][codes[n, k]] * act[p, k])`` for one layer (group).

    Attributes
    ----------
    name : str
        Layer name (with ``/g<i>`` for groups of a grouped convolution).
    act : ndarray (P, K) int64
        Activations: one row per output pixel (and batch item), ``k`` in the contract's order.
    codes : ndarray (N, K) uint8
    lut : ndarray (1 or N, 2**weight_bits) int64
    bias, shift : ndarray (N,) int64
    mult : ndarray (N,) int64 or None
        Multipliers for ``requant = "multiply_shift"``.
    lo, hi : int
        Clamp bounds of the output type.
    raw : bool
        Emit accumulators unrequantized.
    act_signed : bool
        Activations are int8 (True) or uint8 (False).
    channels : slice
        The layer's output channels this problem computes.
    epilogue : PointEpilogue or None
        A multipoint product: its extra columns follow the channels' own, ``raw`` is True (the array
        emits accumulators) and the epilogue makes the layer's outputs.
    """

    name: str
    act: np.ndarray
    codes: np.ndarray
    lut: np.ndarray
    bias: np.ndarray
    shift: np.ndarray
    mult: np.ndarray | None
    lo: int
    hi: int
    raw: bool
    act_signed: bool
    channels: slice
    epilogue: PointEpilogue | None = None

    @property
    def pixels(self) -> int:
        return self.act.shape[0]

    @property
    def depth(self) -> int:
        return self.act.shape[1]

    @property
    def channels_out(self) -> int:
        return self.codes.shape[0]

    def expected(self, config: AcceleratorConfig) -> np.ndarray:
        """The contract's answer (P, N), from :mod:`accel.datapath`."""
        w = datapath.decode_weights(self.codes, self.lut)
        mult = self.mult if self.mult is not None else 1
        return datapath.matmul_requant(self.act, w, self.bias, self.shift, mult, self.lo, self.hi,
                                       config, raw=self.raw)

    def outputs(self, config: AcceleratorConfig, results: np.ndarray | None = None) -> np.ndarray:
        """The layer's outputs (P, channels) from the array's ``results`` (default: the contract's), through
        the epilogue of a multipoint product."""
        results = self.expected(config) if results is None else results
        return results if self.epilogue is None else self.epilogue.finish(results, config)


def _check_act(layer: Layer, x: np.ndarray, config: AcceleratorConfig, signed: bool) -> None:
    lo, hi = config.act_range(signed)
    if x.size and (x.min() < lo or x.max() > hi):
        raise DataError(f"layer {layer.name!r}: input values {int(x.min())}..{int(x.max())} do not fit "
                        f"the array's {config.act_bits}-bit {'signed' if signed else 'unsigned'} "
                        f"activations ({lo}..{hi})")


def lower_layer(model: Model, layer: Layer, x: np.ndarray) -> list[GemmProblem]:
    """The matrix products of a conv2d or linear layer on input ``x`` (with batch), one per group.

    Raises
    ------
    ModelError
        The layer does not run on the MAC array.
    DataError
        The input does not fit the array's activation width.
    """
    if layer.op not in MAC_OPS:
        raise ModelError(f"layer {layer.name!r} ({layer.op}): only {', '.join(MAC_OPS)} layers run on "
                         f"the MAC array")
    cfg = model.config
    signed = model.tensors[layer.inputs[0]].signed
    x = np.asarray(x, dtype=np.int64)
    _check_act(layer, x, cfg, signed)
    a = layer.arrays
    codes = np.asarray(a["codes"])
    lut = np.asarray(a["lut"], dtype=np.int64)
    n = codes.shape[0]
    bias = np.asarray(a["bias"], dtype=np.int64)
    shift = np.asarray(a["shift"], dtype=np.int64)
    mult = np.asarray(a["mult"], dtype=np.int64) if cfg.requant is Requant.MULTIPLY_SHIFT else None
    common = dict(lo=int(layer.attrs["lo"]), hi=int(layer.attrs["hi"]), raw=bool(layer.attrs["raw"]),
                  act_signed=signed)
    if layer.op == "linear":
        problems = [GemmProblem(layer.name, x.reshape(x.shape[0], -1), codes.astype(np.uint8), lut, bias, shift,
                                mult, channels=slice(0, n), **common)]
    else:
        at = layer.attrs
        kh, kw = codes.shape[2:]
        lo, hi = cfg.act_range(signed)
        if any(at["padding"]) and not lo <= int(at["pad_value"]) <= hi:  # padded positions enter the array too
            raise DataError(f"layer {layer.name!r}: pad_value {int(at['pad_value'])} does not fit the array's "
                            f"{cfg.act_bits}-bit {'signed' if signed else 'unsigned'} activations ({lo}..{hi})")
        cols = datapath.im2col(x, (kh, kw), tuple(at["stride"]), tuple(at["padding"]), tuple(at["dilation"]),
                               int(at["pad_value"]))
        groups = int(at["groups"])
        problems = []
        for g, (sl, patch) in enumerate(datapath.conv_gemm_groups(cols, n, groups)):
            glut = lut if lut.shape[0] == 1 else lut[sl]
            problems.append(GemmProblem(
                layer.name if groups == 1 else f"{layer.name}/g{g}", patch,
                codes[sl].reshape(-1, patch.shape[1]).astype(np.uint8), glut, bias[sl], shift[sl],
                None if mult is None else mult[sl], channels=sl, **common))
    if layer.points is not None:
        problems = [_with_points(prob, layer.points) for prob in problems]
    return problems


def _with_points(prob: GemmProblem, points) -> GemmProblem:
    """The product with its group's extra rows as extra columns, raw out, the rest in its epilogue (a group
    without points too: every product of a job shares one output mode)."""
    point_codes, point_channel, point_shift = (np.asarray(a) for a in points)
    mine = np.flatnonzero((point_channel >= prob.channels.start) & (point_channel < prob.channels.stop))
    local = point_channel[mine].astype(np.int64) - prob.channels.start
    n, p = prob.channels_out, len(mine)
    codes = np.concatenate([prob.codes, point_codes[mine].reshape(p, prob.depth).astype(np.uint8)])
    lut = prob.lut if prob.lut.shape[0] == 1 else np.concatenate([prob.lut, prob.lut[local]])
    epilogue = PointEpilogue(n, local, point_shift[mine].astype(np.int64), prob.shift, prob.mult, prob.lo, prob.hi,
                             prob.raw)
    zeros = np.zeros(p, np.int64)
    return GemmProblem(prob.name, prob.act, codes, lut, np.concatenate([prob.bias, zeros]),
                       np.concatenate([prob.shift, zeros]),
                       None if prob.mult is None else np.concatenate([prob.mult, zeros]),
                       prob.lo, prob.hi, True, prob.act_signed, prob.channels, epilogue)


def assemble_output(model: Model, layer: Layer, batch: int, results: list[np.ndarray]) -> np.ndarray:
    """The layer's output tensor (B, N[, OH, OW]) from the (P, N_g) outputs of its problems (after a
    multipoint product's epilogue: :meth:`GemmProblem.outputs`)."""
    shape = model.tensors[layer.output].shape
    n = shape[0]
    if layer.op == "linear":
        return results[0].reshape(batch, n)
    oh, ow = shape[1], shape[2]
    out = np.concatenate([r.reshape(batch, oh * ow, -1) for r in results], axis=2)
    return out.reshape(batch, oh, ow, n).transpose(0, 3, 1, 2)
