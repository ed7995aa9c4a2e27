"""Lowering layers onto the MAC array: im2col, tiling, memory images, cycle schedule.

Pure: it imports no engine, data or simulator code. Shared by the RTL
simulation (:mod:`accel.rtlsim`), the Amaranth tests and the performance model.
"""

from .images import CoreLayout, JobImage, pack_job, pack_outputs, unpack_outputs
from .lower import GemmProblem, PointEpilogue, assemble_output, lower_layer
from .schedule import TileCycles, schedule
from .tiling import Tile, TilePlan, plan_tiles, split_plan

__all__ = ["CoreLayout", "GemmProblem", "JobImage", "PointEpilogue", "Tile", "TileCycles", "TilePlan",
           "assemble_output", "lower_layer", "pack_job", "pack_outputs", "plan_tiles", "schedule", "split_plan",
           "unpack_outputs"]
