"""Exact execution of an integer model with PyTorch, on a CUDA GPU or on the CPU (the same code).

Convolutions are lowered to im2col (``unfold``) and GEMMs, never to ``conv2d``:
cuDNN picks its algorithm per shape, and some (transform-based) are not exact
on integer-valued float tensors even when every true partial sum is small (see
DESIGN.md, "Facts checked"). A GEMM of integers in float32 is exact in any
summation order while every partial sum stays within 2^24, in float64 within
2^53 (:mod:`accel.engine.onnx_lowering` explains the bound); TF32 is switched
off so that cuBLAS keeps full float32 products. Each conv/linear layer takes
float32 below 2^24, float64 below 2^53; sums are then moved to int64, where the
bias, the wrap and the requantization follow :mod:`accel.datapath` exactly. A
saturating accumulator that can overflow runs in the engine's numba kernel.

Where ``torch._int_mm`` (int8 x int8 -> int32) passed its exactness self-test on
the device (:func:`accel.engine.capability.torch_int_mm_verdict`), a layer
without groups whose sums fit int32 runs on it instead (path ``int8``): a uint8
input is shifted by -128 into int8 and ``128 * sum_k w[n, k]`` added back in
int64, exact because every term is an integer.

``device="cpu"`` runs the same lowering on the CPU, which is how CI checks it
bit for bit against the other backends on every bundled model.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..config import Overflow, Requant, Rounding
from ..datapath import DTYPE_RANGES, effective_weights
from ..errors import ModelError
from ..ir import MAC_OPS, Layer, Model
from .onnx_lowering import F32_EXACT_BOUND, F64_EXACT_BOUND, _abs_weights, _worst_acc, product_bounds

__all__ = ["TORCH_HANDLERS", "TorchExecutor", "cuda_available"]


def cuda_available() -> bool:
    """Whether PyTorch is installed and sees a CUDA device."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _torch_dtype(dtype: str):
    import torch

    return {"int8": torch.int8, "uint8": torch.uint8, "int32": torch.int32}[dtype]


class _MacPlan:
    """A conv2d/linear layer on the device: (G, N/G, K) weights in the exact float type, requant arrays."""

    def __init__(self, layer: Layer, model: Model, device):
        import torch

        cfg = model.config
        a, arr = layer.attrs, layer.arrays
        worst = _worst_acc(model, layer)
        self.can_overflow = worst > cfg.acc_max
        self.numba = (self.can_overflow and cfg.overflow is Overflow.SATURATE) or worst >= F64_EXACT_BOUND
        # The GEMM sums the products only (the bias joins in int64): its bound decides the float type.
        sums_bound = int(product_bounds(model, layer).max(initial=0))
        self.float_dtype = torch.float32 if sums_bound < F32_EXACT_BOUND else torch.float64
        self.path = "numba" if self.numba else ("f32" if self.float_dtype is torch.float32 else "f64")
        # A multipoint layer runs as its one equivalent layer (datapath.effective_weights): exact under
        # wrap, and under saturate only when nothing can overflow (else the numba path above).
        w = effective_weights(arr["codes"], arr["lut"], layer.points).astype(np.float64)
        n = w.shape[0]
        self.groups = int(a.get("groups", 1))
        self.kernel = tuple(w.shape[2:]) if layer.op == "conv2d" else None
        self.w = torch.from_numpy(w.reshape(self.groups, n // self.groups, -1)).to(device, self.float_dtype)
        self.bias = torch.from_numpy(arr["bias"].astype(np.int64)).to(device)
        self.shift = torch.from_numpy(arr["shift"].astype(np.int64)).to(device)
        multiply = cfg.requant is Requant.MULTIPLY_SHIFT
        self.mult = torch.from_numpy(arr["mult"].astype(np.int64)).to(device) if multiply else None
        self.attrs = a
        self.acc_bits = cfg.acc_bits
        self.half_up = cfg.rounding is Rounding.HALF_UP
        self.pad_value = int(a.get("pad_value", 0))
        self.out_dtype = _torch_dtype(model.tensors[layer.output].dtype)
        self.int8 = not self.numba and self._int8_fits(model, layer, device)
        if self.int8:
            self.path = "int8"
            wi = w.reshape(n, -1).astype(np.int64)
            from .capability import int_mm_weights

            self.w_int = int_mm_weights(wi.T.astype(np.int8), str(device))  # (K, N), column-major
            # a uint8 input runs shifted by -128: the sums lose 128 * sum_k w[n, k], added back here
            self.x_offset = 128 if model.tensors[layer.inputs[0]].dtype == "uint8" else 0
            self.correction = torch.from_numpy(self.x_offset * wi.sum(axis=1)).to(device)

    def _int8_fits(self, model: Model, layer: Layer, device) -> bool:
        """No groups, the padding value in the input's type, |w| * 128 sums within int32, an exact kernel."""
        from .capability import torch_int_mm_verdict

        lo, hi = DTYPE_RANGES[model.tensors[layer.inputs[0]].dtype]
        bound = int(_abs_weights(layer).reshape(layer.arrays["codes"].shape[0], -1).sum(axis=1).max(initial=0)) * 128
        k = layer.arrays["codes"][0].size
        # cuBLAS's int8 GEMM takes K and N in multiples of 8 only (rows are padded to 17 where fewer, see _int_mm)
        shapes_ok = device.type == "cpu" or (k % 8 == 0 and layer.arrays["codes"].shape[0] % 8 == 0)
        # a multipoint layer's equivalent weights leave int8
        return (self.groups == 1 and layer.points is None and lo <= self.pad_value <= hi and bound < 1 << 31
                and shapes_ok and torch_int_mm_verdict(str(device)))

    def int8_sums(self, x):
        """The bias-free sums through ``torch._int_mm``: int8 (im2col) rows times the int8 weights, as int64."""
        import torch
        import torch.nn.functional as F

        xs = (x.to(torch.int16) - self.x_offset).to(torch.int8) if self.x_offset else x
        if self.kernel is None:
            return _int_mm(xs, self.w_int) + self.correction
        a = self.attrs
        pt, pl, pb, pr = a["padding"]
        if any(a["padding"]):
            xs = F.pad(xs, (pl, pr, pt, pb), value=self.pad_value - self.x_offset)
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, a["stride"], a["dilation"]
        # (B, C, OH, OW, KH', KW') windows, every dilation-th tap kept: the (C, KH, KW) order of the weights
        cols = xs.unfold(2, dh * (kh - 1) + 1, sh).unfold(3, dw * (kw - 1) + 1, sw)[..., ::dh, ::dw]
        b, c, oh, ow = cols.shape[:4]
        rows = cols.permute(0, 2, 3, 1, 4, 5).reshape(b * oh * ow, c * kh * kw)
        acc = _int_mm(rows, self.w_int) + self.correction
        return acc.view(b, oh, ow, -1).permute(0, 3, 1, 2)

    def sums(self, x):
        """bias-free exact sums as int64, (B, N, OH, OW) or (B, N)."""
        import torch
        import torch.nn.functional as F

        if self.int8:
            return self.int8_sums(x)
        xf = x.to(self.float_dtype)
        if self.kernel is None:
            return torch.matmul(xf, self.w[0].T).to(torch.int64)
        a = self.attrs
        pt, pl, pb, pr = a["padding"]
        if any(a["padding"]):
            xf = F.pad(xf, (pl, pr, pt, pb), value=float(self.pad_value))
        b, _, h, w = xf.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel, a["stride"], a["dilation"]
        oh, ow = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
        cols = F.unfold(xf, (kh, kw), dilation=(dh, dw), stride=(sh, sw))  # (B, C*KH*KW, L), the im2col order
        g, ng, k = self.w.shape
        if g == 1:
            acc = torch.matmul(self.w[0], cols)
        elif ng == 1:  # depthwise: a product and a sum per channel (exact in any order under the bound)
            acc = (cols.view(b, g, k, -1) * self.w.view(1, g, k, 1)).sum(dim=2)
        else:
            acc = torch.matmul(self.w.unsqueeze(0), cols.view(b, g, k, -1))
        return acc.reshape(b, g * ng, oh, ow).to(torch.int64)

    def finish(self, sums):
        """bias, wrap, requantization and clamp (int64) -> the output type."""
        import torch

        shape = (1, -1) + (1,) * (sums.dim() - 2)
        acc = sums + self.bias.view(shape)
        if self.can_overflow:
            half = 1 << (self.acc_bits - 1)
            acc = ((acc + half) & ((half << 1) - 1)) - half
        if self.attrs["raw"]:
            return acc.to(torch.int32)
        mult = None if self.mult is None else self.mult.view(shape)
        return _requant(acc, mult, self.shift.view(shape), self.attrs["lo"], self.attrs["hi"], self.half_up,
                        self.out_dtype)


def _int_mm(a, b):
    """``torch._int_mm(a, b)`` as int64; on a GPU, fewer than 17 rows are padded with zeros (cuBLAS's minimum)."""
    import torch

    m, k = a.shape
    if a.stride() != (k, 1):
        # row-major with unit strides: torch 2.13's CPU kernel misreads a "contiguous" (M, 1) view whose size-1
        # dimension has another stride (a 1x1 convolution's im2col) and returns uninitialized memory
        a = a.clone(memory_format=torch.contiguous_format)
    if a.device.type != "cpu" and m <= 16:
        a = torch.cat([a, a.new_zeros((17 - m, a.shape[1]))])
    return torch._int_mm(a, b)[:m].to(torch.int64)


def _requant(v, mult, shift, lo: int, hi: int, half_up: bool, out_dtype):
    """``clamp(rshift_round(v [* mult], shift), lo, hi)`` in int64 (:func:`accel.datapath.rshift_round`)."""
    import torch

    if mult is not None:
        v = v * mult
    shift = torch.as_tensor(shift, dtype=torch.int64, device=v.device)
    if half_up:
        one = torch.ones((), dtype=torch.int64, device=v.device)
        v = v + torch.where(shift > 0, torch.bitwise_left_shift(one, (shift - 1).clamp(min=0)), 0)
    v = torch.bitwise_right_shift(v, shift)
    return v.clamp(lo, hi).to(out_dtype)


class TorchExecutor:
    """An integer model prepared for PyTorch on ``device`` ("cuda", "cuda:1", "cpu").

    ``numba_mac``: (layer, numpy input) -> numpy output, used for the layers that need a
    saturating accumulator's order of additions.
    """

    def __init__(self, model: Model, device: str, numba_mac: Callable[[Layer, np.ndarray], np.ndarray]):
        import torch

        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ModelError("backend cuda: PyTorch sees no CUDA device")
        # Full float32 products: TF32 would round the operands to 10 mantissa bits.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        self.model = model
        self.numba_mac = numba_mac
        self.plans = {layer.name: _MacPlan(layer, model, self.device)
                      for layer in model.layers if layer.op in MAC_OPS}

    def device_name(self) -> str:
        import torch

        if self.device.type == "cuda":
            return f"{torch.cuda.get_device_name(self.device)} (torch {torch.__version__})"
        return f"cpu (torch {torch.__version__})"

    def layer_paths(self) -> dict[str, str]:
        """Per layer: "f32", "f64", "int8" or "numba" for conv2d/linear (the GEMM's type), "int64" otherwise."""
        return {layer.name: self.plans[layer.name].path if layer.name in self.plans else "int64"
                for layer in self.model.layers}

    def run(self, inputs: dict[str, np.ndarray], return_all: bool) -> dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            values = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device) for k, v in inputs.items()}
            for layer in self.model.layers:
                handler = TORCH_HANDLERS.get(layer.op)
                if handler is None:
                    raise ModelError(f"layer {layer.name!r}: op {layer.op!r} has no torch handler")
                values[layer.output] = handler(self, layer, [values[t] for t in layer.inputs])
            names = list(values) if return_all else self.model.outputs
            return {k: values[k].cpu().numpy() for k in names}


def _mac(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch

    plan = ex.plans[layer.name]
    if plan.numba:
        out = ex.numba_mac(layer, inputs[0].cpu().numpy())
        return torch.from_numpy(out).to(ex.device)
    return plan.finish(plan.sums(inputs[0]))


def _out_dtype(ex: TorchExecutor, layer: Layer):
    return _torch_dtype(ex.model.tensors[layer.output].dtype)


def _half_up(ex: TorchExecutor) -> bool:
    return ex.model.config.rounding is Rounding.HALF_UP


def _add(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch

    a = layer.attrs
    total = (torch.bitwise_left_shift(inputs[0].to(torch.int64), a["shift_a"])
             + torch.bitwise_left_shift(inputs[1].to(torch.int64), a["shift_b"]))
    return _requant(total, None, a["shift"], a["lo"], a["hi"], _half_up(ex), _out_dtype(ex, layer))


def _max_pool(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch
    import torch.nn.functional as F

    a = layer.attrs
    pt, pl, pb, pr = a["padding"]
    x = inputs[0].to(torch.float32)  # 8-bit values: exact
    if any(a["padding"]):
        x = F.pad(x, (pl, pr, pt, pb), value=float("-inf"))  # padding is never the maximum
    return F.max_pool2d(x, tuple(a["kernel"]), tuple(a["stride"])).to(inputs[0].dtype)


def _avg_pool(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch
    import torch.nn.functional as F

    a = layer.attrs
    pt, pl, pb, pr = a["padding"]
    x = inputs[0].to(torch.float64)  # window sums of 8-bit values: exact far below 2^53
    if any(a["padding"]):
        x = F.pad(x, (pl, pr, pt, pb), value=float(a["pad_value"]))
    total = F.avg_pool2d(x, tuple(a["kernel"]), tuple(a["stride"]), divisor_override=1).to(torch.int64)
    return _requant(total, a["mult"], a["shift"], a["lo"], a["hi"], _half_up(ex), _out_dtype(ex, layer))


def _global_avg_pool(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch

    a = layer.attrs
    total = inputs[0].to(torch.int64).sum(dim=(2, 3), keepdim=True)
    return _requant(total, a["mult"], a["shift"], a["lo"], a["hi"], _half_up(ex), _out_dtype(ex, layer))


def _flatten(ex: TorchExecutor, layer: Layer, inputs: list):
    return inputs[0].reshape(inputs[0].shape[0], -1)


def _reshape(ex: TorchExecutor, layer: Layer, inputs: list):
    return inputs[0].reshape((inputs[0].shape[0],) + tuple(layer.attrs["shape"]))


def _concat(ex: TorchExecutor, layer: Layer, inputs: list):
    import torch

    return torch.cat(inputs, dim=layer.attrs["axis"])


#: One handler per op of :data:`accel.ir.OPS`: (executor, layer, device tensors) -> device tensor.
TORCH_HANDLERS = {
    "conv2d": _mac, "linear": _mac, "add": _add, "max_pool": _max_pool, "avg_pool": _avg_pool,
    "global_avg_pool": _global_avg_pool, "flatten": _flatten, "reshape": _reshape, "concat": _concat,
}
