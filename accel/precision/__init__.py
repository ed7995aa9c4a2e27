"""Mixed-precision search: per-layer weight bits for a weight-storage budget (``accel search-precision``).

It sits above the front end and the performance model (it quantizes with one and prices with the
other), so it is a package of its own.
"""

from .search import (
           WEIGHT_BITS,
           Budget,
           PrecisionResult,
           layer_cost_bits,
           model_weight_bits,
           network_cost,
           search_precision,
)

__all__ = ["WEIGHT_BITS", "Budget", "PrecisionResult", "layer_cost_bits", "model_weight_bits", "network_cost",
           "search_precision"]
