"""Lowering layers onto the MAC array: im2col, tiling, memory images, cycle schedule.

Shared by the cocotb testbench, ``accel rtl verify`` and the performance model.
"""

from .lower import GemmProblem, assemble_output, lower_layer
from .schedule import TileCycles, schedule
from .tiling import JobImage, Tile, TilePlan, pack_job, plan_tiles, split_plan, unpack_outputs

__all__ = ["GemmProblem", "JobImage", "Tile", "TileCycles", "TilePlan", "assemble_output", "lower_layer",
           "pack_job", "plan_tiles", "schedule", "split_plan", "unpack_outputs"]
