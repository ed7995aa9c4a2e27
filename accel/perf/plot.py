"""Where cycles and energy go, per layer: a two-panel bar chart (matplotlib, headless)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from ..errors import AccelError
from ..report.files import write_bytes
from .network import ENERGY_PARTS, NetworkPerf

__all__ = ["check_plot_path", "plot_network"]


def check_plot_path(path: str | os.PathLike) -> Path:
    """The chart's destination, refused when a file is there (checked before any work)."""
    path = Path(path)
    if path.exists():
        raise AccelError(f"{path}: already exists; refusing to overwrite it")
    return path


def plot_network(perf: NetworkPerf, path: str | os.PathLike, title: str = "") -> Path:
    """Stacked bars per layer: compute and stall cycles; energy by component. Written atomically;
    refuses to overwrite."""
    path = check_plot_path(path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [lay.name for lay in perf.layers]
    x = range(len(names))
    fig, (ax_c, ax_e) = plt.subplots(2, 1, figsize=(max(6.0, 0.6 * len(names) + 2), 8), sharex=True)
    compute = [lay.compute_cycles for lay in perf.layers]
    ax_c.bar(x, compute, label="compute")
    ax_c.bar(x, [lay.stall_cycles for lay in perf.layers], bottom=compute, label="DRAM stall")
    ax_c.set_ylabel("cycles")
    ax_c.legend()
    bottom = [0.0] * len(names)
    for part in ENERGY_PARTS:
        vals = [lay.energy_pj[part] / 1e3 for lay in perf.layers]
        if any(vals):
            ax_e.bar(x, vals, bottom=bottom, label=part)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax_e.set_ylabel("energy (nJ)")
    ax_e.legend(fontsize="small", ncol=2)
    ax_e.set_xticks(list(x), names, rotation=60, ha="right", fontsize="small")
    fig.suptitle(title or f"{perf.label}: {perf.cycles:,} cycles, {perf.energy_uj:.3f} uJ per inference")
    fig.tight_layout()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    return write_bytes(path, png.getvalue())
