"""``accel report``: a sweep database to a folder holding ``report.html``, the Pareto plots as PNG
files and the accelerator TOML of every Pareto point (``configs/<point>.toml``).

Every destination is checked before any work; without ``overwrite`` an existing report is
refused; each file is written atomically (:mod:`accel.report.files`), the page last.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import ResultsError
from .files import check_output_dir, write_bytes, write_text
from .html import ParetoEntry, PlotImage, render_report
from .pareto import COSTS
from .sweep_plots import fronts, plot_cost
from .sweepdb import load_sweep

__all__ = ["REPORT_NAME", "CONFIGS_DIR", "SweepReport", "write_sweep_report"]

#: The page, in the output folder.
REPORT_NAME = "report.html"
#: Subfolder of the Pareto points' accelerator TOML files.
CONFIGS_DIR = "configs"


@dataclass(frozen=True)
class SweepReport:
    """What :func:`write_sweep_report` wrote and counted."""

    report: Path
    plots: list[Path]
    configs: list[Path]
    counts: dict[str, int]  # points_total, points_done, points_failed, points_invalid, pareto_points
    models: list[str]

    def counts_text(self) -> str:
        c = self.counts
        return (f"{c['points_total']} points ({c['points_done']} done, {c['points_failed']} "
                f"failed, {c['points_invalid']} invalid) of {len(self.models)} model(s), {c['pareto_points']} on a "
                f"Pareto front, {len(self.plots)} plot(s)")

    def summary(self) -> str:
        return f"wrote {self.report}: {self.counts_text()}"

    def to_dict(self) -> dict:
        return {"report": str(self.report), "plots": [str(p) for p in self.plots],
                "configs": [str(p) for p in self.configs], "models": self.models, **self.counts}


def write_sweep_report(db: str | os.PathLike, out_dir: str | os.PathLike, *, overwrite: bool = False,
                       model_path: Callable[[str], str] = str) -> SweepReport:
    """Read ``db`` and write the report into ``out_dir`` (created when missing).

    ``model_path`` turns a point's model (as the sweep names it: a bundled name or a path) into the
    ONNX file of its ``accel quantize`` command line.

    Raises
    ------
    ResultsError
        ``db`` is not a sweep database (:func:`~accel.report.sweepdb.load_sweep`) or holds no point.
    OutputError
        A file of the report exists and ``overwrite`` is false, or ``out_dir`` cannot be written.
    """
    results = load_sweep(db)
    if not results.points:
        raise ResultsError(f"{db}: holds no points yet; run accel sweep first")
    out_dir = Path(out_dir)
    done = results.with_status("done")
    models = results.models
    families = sorted({p.lut_family for p in done})

    plots, on_front, pareto_keys = [], {}, []
    for cost in COSTS:
        cost_fronts = fronts(done, cost, models)
        if not cost_fronts:
            continue  # a cost the sweep did not measure (LUT4/DSP without synthesis)
        plots.append((cost, cost_fronts))
        for front in cost_fronts:
            for p in front.front:
                on_front.setdefault(p.key, []).append(cost.short)
                pareto_keys.append(p.key)
    by_key = {p.key: p for p in done}
    # Pareto points by model, then the most accurate first.
    pareto_points = sorted((by_key[k] for k in dict.fromkeys(pareto_keys)),
                           key=lambda p: (models.index(p.model), -p.accuracy, p.key))

    plot_names = [f"pareto_{cost.column}.png" for cost, _ in plots]
    config_names = [f"{p.short_key}.toml" for p in pareto_points]
    # Everything is checked before anything is written (or plotted).
    report_path, *plot_paths = check_output_dir(out_dir, [REPORT_NAME, *plot_names], overwrite=overwrite)
    config_paths = check_output_dir(out_dir / CONFIGS_DIR, config_names, overwrite=overwrite) if config_names else []

    images = []
    for (cost, cost_fronts), path in zip(plots, plot_paths):
        png = plot_cost(cost_fronts, families)
        write_bytes(path, png, overwrite=overwrite)
        images.append(PlotImage(f"Accuracy against {cost.label}", path.name, png))
    entries = []
    for p, path in zip(pareto_points, config_paths):
        write_text(path, p.accelerator_toml, overwrite=overwrite)
        entries.append(ParetoEntry(p, on_front[p.key], str(path), model_path(p.model)))

    counts = {"points_total": len(results.points), "points_done": len(done),
              "points_failed": len(results.with_status("failed")),
              "points_invalid": len(results.with_status("invalid")), "pareto_points": len(pareto_points)}
    report = SweepReport(report_path, plot_paths, config_paths, counts, models)
    page = render_report(title=f"Sweep report: {results.path.name}", summary=report.counts_text(),
                         plots=images, points=done, problems=results.with_status("failed", "invalid"),
                         pareto=entries, on_front=on_front, sweeps=results.sweeps)
    write_text(report_path, page, overwrite=overwrite)
    return report
