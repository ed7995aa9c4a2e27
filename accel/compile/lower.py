"""Lowering of conv2d (im2col) and linear layers to matrix products for the MAC array."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import datapath
from ..config import AcceleratorConfig, Requant
from ..errors import DataError, ModelError
from ..ir import MAC_OPS, Layer, Model

__all__ = ["GemmProblem", "lower_layer", "assemble_output"]


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
        return [GemmProblem(layer.name, x.reshape(x.shape[0], -1), codes.astype(np.uint8), lut, bias, shift,
                            mult, channels=slice(0, n), **common)]
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
    return problems


def assemble_output(model: Model, layer: Layer, batch: int, results: list[np.ndarray]) -> np.ndarray:
    """The layer's output tensor (B, N[, OH, OW]) from the (P, N_g) results of its problems."""
    shape = model.tensors[layer.output].shape
    n = shape[0]
    if layer.op == "linear":
        return results[0].reshape(batch, n)
    oh, ow = shape[1], shape[2]
    out = np.concatenate([r.reshape(batch, oh * ow, -1) for r in results], axis=2)
    return out.reshape(batch, oh, ow, n).transpose(0, 3, 1, 2)
