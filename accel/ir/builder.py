"""A small builder for integer models: adds layers, infers shapes, validates at the end."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..config import AcceleratorConfig
from ..errors import ModelError
from .model import Layer, Model, TensorInfo
from .ops import infer_shape, validate_layer

__all__ = ["ModelBuilder"]


def _dtype_for(lo: int, hi: int) -> str:
    return "uint8" if lo >= 0 and hi > 127 else ("int8" if hi <= 127 and lo >= -128 else "uint8")


class ModelBuilder:
    """Build a :class:`Model` layer by layer; every method returns the output tensor name.

    Example
    -------
    >>> import numpy as np
    >>> from accel.config import AcceleratorConfig
    >>> b = ModelBuilder(AcceleratorConfig())
    >>> x = b.input("x", (4,), "int8", exponent=4)
    >>> y = b.linear("fc", x, codes=np.zeros((2, 4), np.uint8), lut=np.arange(-8, 8)[None],
    ...              bias=np.zeros(2, int), shift=np.zeros(2, int), raw=True)
    >>> model = b.build([y])
    >>> model.tensors[y].shape, model.tensors[y].dtype
    ((2,), 'int32')
    """

    def __init__(self, config: AcceleratorConfig, metadata: dict[str, Any] | None = None):
        self.model = Model(config, [], [], {}, [], dict(metadata or {}))

    def _fresh(self, name: str) -> str:
        if name in self.model.tensors:
            raise ModelError(f"tensor {name!r} is defined twice")
        return name

    def input(self, name: str, shape: Sequence[int], dtype: str = "int8", exponent: int | None = 0) -> str:
        self.model.tensors[self._fresh(name)] = TensorInfo(name, tuple(shape), dtype, exponent)
        self.model.inputs.append(name)
        return name

    def add_layer(self, name: str, op: str, inputs: Sequence[str], attrs: dict[str, Any],
                  arrays: dict[str, Any] | None = None, *, dtype: str, exponent: int | None,
                  output: str | None = None) -> str:
        """Append a layer writing a new tensor (named ``output`` or after the layer)."""
        output = self._fresh(output or name)
        arrays = {k: np.asarray(v) for k, v in (arrays or {}).items()}
        layer = Layer(name, op, list(inputs), output, dict(attrs), arrays)
        for t in inputs:
            if t not in self.model.tensors:
                raise layer.error("inputs", f"tensor {t!r} is not defined")
        shape = infer_shape(layer, [self.model.tensors[t].shape for t in inputs])
        self.model.tensors[output] = TensorInfo(output, shape, dtype, exponent)
        try:
            validate_layer(layer, self.model)
        except ModelError:
            del self.model.tensors[output]
            raise
        self.model.layers.append(layer)
        return output

    def _mac(self, name, op, x, attrs, codes, lut, bias, shift, mult, lo, hi, raw, exponent,
             weight_exponent, dtype, points=None):
        arrays = {"codes": codes, "lut": np.atleast_2d(lut), "bias": bias, "shift": shift}
        if points is not None:  # multipoint (contract v1.3): (point_codes, point_channel, point_shift)
            arrays.update(zip(("point_codes", "point_channel", "point_shift"), points))
        if mult is not None:
            arrays["mult"] = mult
        if weight_exponent is not None:
            arrays["weight_exponent"] = weight_exponent
        if raw:
            dtype, exponent = "int32", None
        else:
            dtype = dtype or _dtype_for(lo, hi)
        attrs = {**attrs, "lo": int(lo), "hi": int(hi), "raw": bool(raw)}
        return self.add_layer(name, op, [x], attrs, arrays, dtype=dtype, exponent=exponent)

    def conv2d(self, name: str, x: str, *, codes, lut, bias, shift, mult=None, stride=(1, 1),
               padding=(0, 0, 0, 0), dilation=(1, 1), groups: int = 1, pad_value: int = 0,
               lo: int = -128, hi: int = 127, raw: bool = False, exponent: int | None = 0,
               weight_exponent=None, dtype: str | None = None, points=None) -> str:
        attrs = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation),
                 "groups": int(groups), "pad_value": int(pad_value)}
        return self._mac(name, "conv2d", x, attrs, codes, lut, bias, shift, mult, lo, hi, raw,
                         exponent, weight_exponent, dtype, points)

    def linear(self, name: str, x: str, *, codes, lut, bias, shift, mult=None, lo: int = -128,
               hi: int = 127, raw: bool = False, exponent: int | None = 0, weight_exponent=None,
               dtype: str | None = None, points=None) -> str:
        return self._mac(name, "linear", x, {}, codes, lut, bias, shift, mult, lo, hi, raw,
                         exponent, weight_exponent, dtype, points)

    def add(self, name: str, a: str, b: str, *, shift_a: int = 0, shift_b: int = 0, shift: int = 0,
            lo: int = -128, hi: int = 127, exponent: int | None = 0, dtype: str | None = None) -> str:
        attrs = {"shift_a": shift_a, "shift_b": shift_b, "shift": shift, "lo": lo, "hi": hi}
        return self.add_layer(name, "add", [a, b], attrs, dtype=dtype or _dtype_for(lo, hi),
                              exponent=exponent)

    def max_pool(self, name: str, x: str, *, kernel, stride=None, padding=(0, 0, 0, 0)) -> str:
        t = self.model.tensors[x]
        attrs = {"kernel": list(kernel), "stride": list(stride or kernel), "padding": list(padding)}
        return self.add_layer(name, "max_pool", [x], attrs, dtype=t.dtype, exponent=t.exponent)

    def avg_pool(self, name: str, x: str, *, kernel, stride=None, padding=(0, 0, 0, 0), pad_value=0,
                 mult: int = 1, shift: int = 0, lo: int = -128, hi: int = 127,
                 exponent: int | None = None, dtype: str | None = None) -> str:
        t = self.model.tensors[x]
        attrs = {"kernel": list(kernel), "stride": list(stride or kernel), "padding": list(padding),
                 "pad_value": pad_value, "mult": mult, "shift": shift, "lo": lo, "hi": hi}
        return self.add_layer(name, "avg_pool", [x], attrs, dtype=dtype or t.dtype,
                              exponent=t.exponent if exponent is None else exponent)

    def global_avg_pool(self, name: str, x: str, *, mult: int = 1, shift: int = 0, lo: int = -128,
                        hi: int = 127, exponent: int | None = None, dtype: str | None = None) -> str:
        t = self.model.tensors[x]
        attrs = {"mult": mult, "shift": shift, "lo": lo, "hi": hi}
        return self.add_layer(name, "global_avg_pool", [x], attrs, dtype=dtype or t.dtype,
                              exponent=t.exponent if exponent is None else exponent)

    def flatten(self, name: str, x: str) -> str:
        t = self.model.tensors[x]
        return self.add_layer(name, "flatten", [x], {}, dtype=t.dtype, exponent=t.exponent)

    def reshape(self, name: str, x: str, shape: Sequence[int]) -> str:
        t = self.model.tensors[x]
        return self.add_layer(name, "reshape", [x], {"shape": list(shape)}, dtype=t.dtype,
                              exponent=t.exponent)

    def concat(self, name: str, xs: Sequence[str], axis: int = 1) -> str:
        t = self.model.tensors[xs[0]]
        return self.add_layer(name, "concat", list(xs), {"axis": axis}, dtype=t.dtype,
                              exponent=t.exponent)

    def build(self, outputs: Sequence[str]) -> Model:
        self.model.outputs = list(outputs)
        return self.model.validate()
