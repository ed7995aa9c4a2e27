"""Pareto fronts of a sweep: the points that no other point beats on both accuracy and a cost.

A point is *dominated* when another has at least its accuracy at no more than its cost, and is
strictly better in one of the two. The front is every point that is not dominated; two points
with the same accuracy and cost are both on it (two configurations measured equal).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["COSTS", "Cost", "pareto_front"]


@dataclass(frozen=True)
class Cost:
    """A cost column of the sweep database that a report plots accuracy against."""

    column: str  # the ``points`` column, and the plot's file name (``pareto_<column>.png``)
    label: str  # axis label
    short: str  # in text: "on the front of energy, cycles"
    log_scale: bool = False  # spans orders of magnitude across array sizes


#: The costs of a report, in its order; LUT4 and DSP are NULL when a sweep ran without synthesis.
COSTS = (
    Cost("energy_uj", "energy per inference (µJ)", "energy", log_scale=True),
    Cost("cycles", "cycles per inference", "cycles", log_scale=True),
    Cost("lut4", "FPGA LUT4 cells", "LUT4"),
    Cost("dsp", "FPGA DSP blocks", "DSP"),
    Cost("bits_per_weight", "bits per weight (LUT tables included)", "bits/weight"),
)


def _usable(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def pareto_front(costs: Sequence[float | None], accuracies: Sequence[float | None]) -> list[int]:
    """Indices of the points on the front (minimise cost, maximise accuracy), by ascending cost.

    Points with a missing (``None``) or NaN cost or accuracy take no part.

    >>> pareto_front([1, 2, 3, 2], [50, 70, 60, 40])
    [0, 1]
    """
    if len(costs) != len(accuracies):
        raise ValueError(f"{len(costs)} costs but {len(accuracies)} accuracies")
    usable = [i for i in range(len(costs)) if _usable(costs[i]) and _usable(accuracies[i])]
    # Cheapest first, the most accurate first among equal costs: a point is on the front when it is
    # more accurate than everything cheaper, or an exact twin of the last point taken.
    usable.sort(key=lambda i: (costs[i], -accuracies[i], i))
    front: list[int] = []
    for i in usable:
        if not front or accuracies[i] > accuracies[front[-1]]:
            front.append(i)
        elif accuracies[i] == accuracies[front[-1]] and costs[i] == costs[front[-1]]:
            front.append(i)
    return front
