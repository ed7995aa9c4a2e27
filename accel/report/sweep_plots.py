"""Pareto plots of a sweep (matplotlib, headless): accuracy against one cost, one panel per model.

Every measured point is a faint dot coloured by its LUT family; the front is a step line with
markers (a step, because between two front points the better accuracy is only reached at the
next point's cost).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from .pareto import Cost, pareto_front
from .sweepdb import SweepPoint

__all__ = ["Front", "fronts", "plot_cost"]


@dataclass(frozen=True)
class Front:
    """The points of one model measured on one cost, and which of them are on its front."""

    model: str
    cost: Cost
    points: list[SweepPoint]  # the model's done points that have this cost and an accuracy
    front: list[SweepPoint]  # by ascending cost


def fronts(points: list[SweepPoint], cost: Cost, models: list[str]) -> list[Front]:
    """One :class:`Front` per model that has at least one point measured on ``cost``."""
    result = []
    for model in models:
        measured = [p for p in points if p.model == model and p.status == "done"
                    and getattr(p, cost.column) is not None and p.accuracy is not None]
        if measured:
            on_front = pareto_front([getattr(p, cost.column) for p in measured], [p.accuracy for p in measured])
            result.append(Front(model, cost, measured, [measured[i] for i in on_front]))
    return result


def plot_cost(model_fronts: list[Front], families: list[str]) -> bytes:
    """A PNG: one panel per model, accuracy against the fronts' cost; ``families`` fixes the colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cost = model_fronts[0].cost
    colours = {family: plt.get_cmap("tab10")(i % 10) for i, family in enumerate(families)}
    fig, axes = plt.subplots(1, len(model_fronts), figsize=(5.2 * len(model_fronts), 4.2), squeeze=False)
    for ax, front in zip(axes[0], model_fronts):
        for family in families:
            mine = [p for p in front.points if p.lut_family == family]
            if mine:
                ax.scatter([getattr(p, cost.column) for p in mine], [p.accuracy for p in mine], s=18, alpha=0.35,
                           color=colours[family], label=f"lut {family}")
        ax.plot([getattr(p, cost.column) for p in front.front], [p.accuracy for p in front.front], "-o",
                drawstyle="steps-post", color="black", markersize=5, linewidth=1.2, label="Pareto front")
        values = [getattr(p, cost.column) for p in front.points]
        if cost.log_scale and min(values) > 0 and max(values) > 10 * min(values):
            ax.set_xscale("log")
        ax.set_xlabel(cost.label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.set_title(f"{front.model}: {len(front.front)} of {len(front.points)} points on the front",
                     fontsize="medium")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    return png.getvalue()
