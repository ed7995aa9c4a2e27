"""The bit-exact execution engine (numba kernels, with a BLAS-backed fast path)."""

from .contract_runner import run_layer_contract, run_model_contract
from .runner import BACKENDS, Engine, run_layer, run_model

__all__ = ["BACKENDS", "Engine", "run_layer", "run_layer_contract", "run_model", "run_model_contract"]
