"""Quantization-aware training: learned power-of-two scales and LUT levels, exported bit-exact.

See :mod:`accel.frontend.qat.network` (the trainable integer model) and
:mod:`accel.frontend.qat.train` (the loop, checkpoints, export); docs/QAT.md.
"""

from .network import QATNetwork, nearest_codes, scale_gradient, straight_through
from .train import (
           SCHEDULES,
           TrainOptions,
           check_export,
           export,
           initial_offsets,
           load_checkpoint,
           prepare,
           save_checkpoint,
           train,
)

__all__ = ["QATNetwork", "SCHEDULES", "TrainOptions", "check_export", "export", "initial_offsets", "load_checkpoint",
           "nearest_codes", "prepare", "save_checkpoint", "scale_gradient", "straight_through", "train"]
