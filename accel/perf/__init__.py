"""The performance model: cycles, memory traffic, energy and weight storage of integer models.

Pure: it reads the integer model, the :class:`~accel.config.AcceleratorConfig`,
the tiling and the cycle schedule of :mod:`accel.compile`. Only
:mod:`accel.perf.activations` runs the engine (activation statistics on data).
"""

from .coding import coded_bits, decode, encode
from .cycles import ArrayWork, VectorWork, array_work, plan_cycles, vector_work
from .footprint import WeightStorage, weight_storage
from .network import ENERGY_PARTS, ActivationStats, LayerPerf, NetworkPerf, check_compatible, estimate, int8_baseline

__all__ = ["ENERGY_PARTS", "ActivationStats", "ArrayWork", "LayerPerf", "NetworkPerf", "VectorWork", "WeightStorage",
           "array_work", "check_compatible", "coded_bits", "decode", "encode", "estimate", "int8_baseline",
           "plan_cycles", "vector_work", "weight_storage"]
