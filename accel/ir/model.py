"""Integer model data structures and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import AcceleratorConfig
from ..datapath import DTYPE_RANGES
from ..errors import ModelError
from .ops import validate_model

__all__ = ["TensorInfo", "Layer", "Model"]


@dataclass
class TensorInfo:
    """A named activation tensor.

    ``shape`` excludes the batch dimension. ``exponent`` is the power-of-two
    scale of the real-valued reading ``x_real = x * 2^-exponent``; it is
    ``None`` for raw accumulator outputs, whose scale is per channel.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    exponent: int | None = None

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)
        if self.dtype not in DTYPE_RANGES:
            raise ModelError(f"tensor {self.name!r}: dtype {self.dtype!r} is not one of "
                             f"{', '.join(DTYPE_RANGES)}")
        if any(s <= 0 for s in self.shape):
            raise ModelError(f"tensor {self.name!r}: shape {self.shape} has a non-positive dimension")

    @property
    def signed(self) -> bool:
        return self.dtype != "uint8"

    @property
    def range(self) -> tuple[int, int]:
        return DTYPE_RANGES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "exponent": self.exponent}


@dataclass
class Layer:
    """One operation: ``op`` reads ``inputs`` (tensor names) and writes ``output``.

    ``attrs`` holds scalars and short lists (JSON); ``arrays`` the numpy data
    (codes, LUT, bias, shift, multiplier).
    """

    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def error(self, field_name: str, message: str) -> ModelError:
        return ModelError(f"layer {self.name!r} ({self.op}): field {field_name!r}: {message}")

    @property
    def points(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """``(point_codes, point_channel, point_shift)`` of a multipoint conv/linear layer (contract
        v1.3: extra weight rows whose accumulators join their channel's, shifted left), else None."""
        if "point_codes" not in self.arrays:
            return None
        return self.arrays["point_codes"], self.arrays["point_channel"], self.arrays["point_shift"]

    @property
    def n_points(self) -> int:
        """Extra weight rows (array columns) of a multipoint layer; 0 for an ordinary one."""
        return 0 if self.points is None else len(self.arrays["point_channel"])


@dataclass
class Model:
    """A whole integer network for one accelerator configuration."""

    config: AcceleratorConfig
    inputs: list[str]
    outputs: list[str]
    tensors: dict[str, TensorInfo]
    layers: list[Layer]
    metadata: dict[str, Any] = field(default_factory=dict)

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ModelError(f"no layer named {name!r}; layers: {', '.join(l.name for l in self.layers)}")

    def producer(self, tensor: str) -> Layer | None:
        for layer in self.layers:
            if layer.output == tensor:
                return layer
        return None

    def validate(self) -> "Model":
        """Check every layer against its op's schema and the configuration; return ``self``."""
        validate_model(self)
        return self
