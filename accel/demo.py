"""The main job (``accel demo`` / ``make demo``), end to end on the bundled models and data.

1. every bundled ONNX model is quantized with the defaults and evaluated through the
   bit-exact engine on its test split (:func:`evaluate_bundled`);
2. the conv/linear layers of one of them run on the generated Verilog under a real
   simulator and are compared with the engine bit for bit, with their cycles held to
   the cycle schedule (:func:`rtl_check`);
3. the cycles and energy of every layer of that model come from the performance model, and the
   core's area and Fmax on an ECP5-85k from the synthesis cache when ``accel rtl synth`` has run
   (:func:`area_from_cache`; the demo never starts a place-and-route);
4. a small sweep (:data:`DEMO_SWEEP`: LUT family x weight bits x array size on cnn_digits) runs on
   Dask into ``sweep.db`` and becomes the HTML report ``report/report.html`` with its Pareto plots;
5. the summary is written once, at the end: ``demo_report.md`` and ``demo_report.json``, with the
   ``.qmodel`` files and the per-tile cycles (``rtl_cycles.json``) beside them.

Every output file is checked before the work starts, and none is replaced without ``overwrite``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from .errors import ModelImportError
from .report import Column, Table, check_output_dir, write_json, write_text

__all__ = ["RTL_MODEL", "REPORT_FILES", "DEMO_SWEEP", "run_main_job", "evaluate_bundled", "rtl_check",
           "layer_costs", "area_from_cache", "run_demo_sweep", "models_table", "rtl_table", "report_markdown",
           "report_text"]

#: The bundled model whose layers the demo runs on the RTL (the smallest: seconds under Verilator).
RTL_MODEL = "cnn_digits"

#: The report files the demo writes (beside one ``<model>.qmodel`` per bundled model).
REPORT_FILES = ("demo_report.md", "demo_report.json")
_CYCLES_FILE = "rtl_cycles.json"
_SWEEP_DB = "sweep.db"
_SWEEP_REPORT_DIR = "report"

#: The demo's sweep: 12 quantizations of the smallest bundled model, each priced on two arrays (the
#: array does not change the integer model, so the sweep quantizes and evaluates 12 times, not 24).
DEMO_SWEEP = """\
name = "demo"
model = "cnn_digits"
data = "digits"

[grid]
lut = ["mse", "apot", "pot", "uniform"]
weight_bits = [2, 3, 4]
array = ["4x4", "8x8"]
"""


def run_main_job(out_dir: str | os.PathLike = "out", *, rtl: bool = True, sim: str = "verilator",
                 rtl_images: int = 2, progress: bool = True, overwrite: bool = False, sweep: bool = True,
                 sweep_limit: int | None = None,
                 models_dir: str | os.PathLike | None = None,
                 build_dir: str | os.PathLike | None = None) -> dict:
    """Run the main job and write its report to ``out_dir``; returns the report.

    ``build_dir``: cache folder for the simulator build and the synthesis results (default
    :func:`accel.rtlsim.cache_dir`). ``sweep``: run :data:`DEMO_SWEEP` (its first ``sweep_limit`` points)
    and write its HTML report.

    Raises
    ------
    OutputError
        An output file exists (without ``overwrite``) or ``out_dir`` cannot be written; checked
        before any model is quantized.
    """
    from .frontend.workflow import MODELS_DIR, bundled_models

    models_dir = Path(models_dir) if models_dir is not None else MODELS_DIR
    index = bundled_models(models_dir)
    if rtl and RTL_MODEL not in index:
        raise ModelImportError(f"{models_dir / 'models.json'}: the RTL check needs the bundled model "
                               f"{RTL_MODEL!r}")
    sweep_files = [_SWEEP_DB, f"{_SWEEP_REPORT_DIR}/report.html"] if sweep else []
    names = [*REPORT_FILES, *(f"{name}.qmodel" for name in index), *([_CYCLES_FILE] if rtl else []), *sweep_files]
    paths = dict(zip(names, check_output_dir(out_dir, names, overwrite=overwrite)))
    report = evaluate_bundled(index, models_dir, {name: paths[f"{name}.qmodel"] for name in index},
                              overwrite=overwrite, progress=progress)
    if RTL_MODEL in index:
        from .ir import load_model

        model = load_model(paths[f"{RTL_MODEL}.qmodel"])
        report["layers"] = layer_costs(model, RTL_MODEL)
        report["area"] = area_from_cache(model.config, cache=build_dir)
    if rtl:
        report["rtl"] = rtl_check(paths[f"{RTL_MODEL}.qmodel"], paths[_CYCLES_FILE], sim=sim, images=rtl_images,
                                  overwrite=overwrite, cache=build_dir)
    if sweep:
        report["sweep"] = run_demo_sweep(paths[_SWEEP_DB], Path(out_dir) / _SWEEP_REPORT_DIR,
                                         overwrite=overwrite, progress=progress, limit=sweep_limit)
    write_json(paths["demo_report.json"], report, overwrite=overwrite)
    write_text(paths["demo_report.md"], report_markdown(report) + "\n", overwrite=overwrite)
    return report


def evaluate_bundled(index: dict[str, dict], models_dir: Path, qmodel_paths: dict[str, Path], *,
                     overwrite: bool = False, progress: bool = True) -> dict:
    """Quantize every model of ``index`` with the defaults, save it, evaluate it through the engine.

    Returns the report without its RTL section: the configuration and one row per model.
    """
    from .data import load_dataset
    from .frontend.evaluate import evaluate
    from .frontend.onnx_import import import_onnx
    from .frontend.quantize import DEFAULT_GRANULARITY, DEFAULT_LUT, QuantizeOptions, default_config, quantize_graph
    from .frontend.workflow import calibration_images
    from .ir import save_model
    from .perf import estimate

    config = default_config()
    rows = []
    for name, info in index.items():
        start = time.time()
        onnx_path = Path(models_dir) / f"{name}.onnx"
        graph = import_onnx(onnx_path)
        x, _ = calibration_images(graph, info["data"])
        model = quantize_graph(graph, x, config, QuantizeOptions(), progress=progress)
        save_model(model, qmodel_paths[name], overwrite=overwrite)
        result = evaluate(model, load_dataset(info["data"], "test"), graph=graph, onnx_path=onnx_path,
                          progress=progress)
        sqnrs = [layer["sqnr_db"] for layer in result.layers if layer["sqnr_db"] is not None]
        rows.append({**result.to_dict(), "drop": round(result.float_top1 - result.quant_top1, 2),
                     "min_layer_sqnr_db": min(sqnrs) if sqnrs else None,
                     "cost": estimate(model).inference_summary(),
                     "seconds": round(time.time() - start, 1)})
    return {"config": {"weight_bits": config.weight_bits, "act_bits": config.act_bits,
                       "lut": DEFAULT_LUT, "granularity": DEFAULT_GRANULARITY,
                       "requant": config.requant.value, "lut_scope": config.lut_scope.value},
            "models": rows}


def rtl_check(qmodel_path: Path, cycles_path: Path, *, sim: str, images: int, overwrite: bool = False,
              cache: str | os.PathLike | None = None) -> dict:
    """Run the MAC layers of a quantized model on the RTL against the engine; per-tile cycles to ``cycles_path``."""
    from .ir import load_model
    from .rtlsim.verify import model_inputs, verify_model, write_cycles

    model = load_model(qmodel_path)
    x = model_inputs(model, None, images)
    reports = verify_model(model, x, sim=sim, cache=cache)
    write_cycles(reports, cycles_path, config=model.config, sim=sim, overwrite=overwrite)
    return {"model": qmodel_path.stem, "simulator": sim, "images": int(x.shape[0]),
            "array": f"{model.config.rows}x{model.config.cols}", "cycles_file": str(cycles_path),
            "ok": all(r.ok for r in reports), "layers": [r.to_dict() for r in reports]}


def layer_costs(model, name: str) -> dict:
    """Per-layer cycles and energy of ``model`` on its configured array (``accel perf``'s table)."""
    from .perf import estimate
    from .perf.compare import LAYER_HEADER, layer_rows

    perf = estimate(model)
    return {"model": name, "array": f"{perf.config.rows}x{perf.config.cols}", "header": list(LAYER_HEADER),
            "rows": [list(row) for row in layer_rows(perf)]}


#: The FPGA whose cached synthesis result the demo shows (the target of docs/FPGA.md's main table).
AREA_TARGET = "ecp5-85k"


def area_from_cache(config, cache: str | os.PathLike | None = None) -> dict:
    """LUTs, DSPs and Fmax of the core for ``config`` when ``accel rtl synth`` has cached them; else a
    line saying how to get them (a place-and-route takes minutes, too long for the demo)."""
    from .synth import get_target, synthesize

    target = get_target(AREA_TARGET)
    result = synthesize(config, target, cache=cache, cached_only=True)
    if result is None:
        return {"target": AREA_TARGET, "cached": False,
                "hint": f"not synthesized yet: accel rtl synth --target {AREA_TARGET} (about 10 minutes on 2 cores)"}
    return {"target": AREA_TARGET, "cached": True, "device": result.device, "lut4": result.luts, "ffs": result.ffs,
            "dsp": result.dsp, "fmax_mhz": result.fmax_mhz, "constraint_mhz": result.constraint_mhz,
            "critical_path": result.critical_path}


def run_demo_sweep(db: Path, report_dir: Path, *, overwrite: bool = False, progress: bool = True,
                   limit: int | None = None) -> dict:
    """Run :data:`DEMO_SWEEP` into a new ``db`` (an old one is replaced only with ``overwrite``) and write
    its HTML report into ``report_dir``."""
    from .frontend.workflow import MODELS_DIR
    from .report.sweep_report import write_sweep_report
    from .sweep import parse_spec, run_sweep

    if overwrite:  # the demo's database is its own output: start afresh rather than resume an old one
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
    spec = parse_spec(DEMO_SWEEP, path=MODELS_DIR / "demo_sweep.toml")
    summary = run_sweep(spec, db, workers=1, progress=progress, limit=limit)
    written = write_sweep_report(db, report_dir, overwrite=overwrite,
                                 model_path=lambda name: str(MODELS_DIR / f"{name}.onnx"))
    return {**summary.to_dict(), "report": str(written.report), "plots": [str(p) for p in written.plots],
            "pareto_points": written.counts["pareto_points"], "summary": written.counts_text()}


def _pct(value: float) -> str:
    return f"{value:.2f}"


def models_table(report: dict, *, detailed: bool = True) -> Table:
    """Accuracy per bundled model; ``detailed`` adds the image count and the worst layer SQNR."""
    columns = [Column("model"), Column("data"), Column("images", align="right"),
               Column("float top-1", _pct, "right"), Column("quantized top-1", _pct, "right"),
               Column("drop", _pct, "right"), Column("agreement", _pct, "right"),
               Column("worst layer SQNR (dB)", ".1f", "right", missing="exact")]
    keys = ["model", "data", "images", "float_top1", "quant_top1", "drop", "agreement", "min_layer_sqnr_db"]
    if not detailed:
        columns, keys = columns[:2] + columns[3:7], keys[:2] + keys[3:7]
    # What one inference costs on the configured array (accel perf's totals).
    columns += [Column("cycles", ",d", "right"), Column("uJ/inference", ".3f", "right"),
                Column("bits/weight", ".2f", "right")]
    return Table(columns, [[row[k] for k in keys] + [row["cost"]["cycles"], row["cost"]["energy_uj"],
                                                     row["cost"]["bits_per_weight"]] for row in report["models"]])


def rtl_table(rtl: dict) -> Table:
    """Per layer on the RTL: outputs, mismatches, cycles and whether the cycle model is exact."""
    return Table([Column("layer"), Column("op"), Column("outputs", ",", "right"),
                  Column("mismatches", align="right"), Column("cycles", ",", "right"),
                  Column("cycle model", lambda v: v if isinstance(v, str) else f"{v:,}", "right")],
                 [(r["layer"], r["op"], r["outputs"], r["mismatches"], r["cycles"],
                   "exact" if r["cycles_exact"] else r["schedule_cycles"]) for r in rtl["layers"]])


def _rtl_title(rtl: dict) -> str:
    return (f"RTL: {rtl['model']} ({rtl['images']} test images) on the {rtl['array']} array under "
            f"{rtl['simulator']}, compared with the engine")


def _rtl_verdict(rtl: dict) -> str:
    return "all outputs match the engine" if rtl["ok"] else "MISMATCH between the RTL and the engine"


def report_markdown(report: dict) -> str:
    """The whole report as markdown (``demo_report.md``)."""
    cfg = report["config"]
    lines = ["# accel demo: bundled models at the default quantization", "",
             f"W{cfg['weight_bits']} ({cfg['lut']} LUT per {cfg['lut_scope']}, per-{cfg['granularity']} "
             f"power-of-two scales, {cfg['requant']} requantization), A{cfg['act_bits']}; bit-exact engine on "
             f"the test splits.", "", models_table(report).markdown()]
    if "layers" in report:
        costs = report["layers"]
        lines += ["", f"## Cycles and energy per layer: {costs['model']} on the {costs['array']} array "
                      "(`accel perf`)", "", Table(costs["header"], costs["rows"]).markdown()]
    if "area" in report:
        lines += ["", f"## Area and Fmax on {report['area']['target']}", "", _area_line(report["area"])]
    if "rtl" in report:
        rtl = report["rtl"]
        lines += ["", f"## {_rtl_title(rtl)}", "", rtl_table(rtl).markdown(), "",
                  f"{_rtl_verdict(rtl)}; per-tile cycles in `{rtl['cycles_file']}`."]
    if "sweep" in report:
        sw = report["sweep"]
        lines += ["", "## Sweep: LUT family x weight bits x array on cnn_digits", "",
                  f"{sw['summary']}; in {sw['seconds']:.0f} s. Report: `{sw['report']}`, database `{sw['db']}`."]
        lines += [f"![{Path(plot).stem}]({Path(plot).relative_to(Path(sw['db']).parent)})" for plot in sw["plots"]]
    return "\n".join(lines)


def _area_line(area: dict) -> str:
    if not area["cached"]:
        return area["hint"]
    fmax = ", ".join(f"{mhz:.1f} MHz" for mhz in (area["fmax_mhz"] or {}).values())
    return f"{area['lut4']:,} LUT4, {area['dsp']} DSP, Fmax {fmax} (cached `accel rtl synth`)"


def report_text(report: dict) -> str:
    """The short report ``accel demo`` prints."""
    lines = [models_table(report, detailed=False).text()]
    if "rtl" in report:
        rtl = report["rtl"]
        lines += ["", _rtl_title(rtl), rtl_table(rtl).text(), _rtl_verdict(rtl)]
    if "area" in report:
        lines += ["", f"area on {report['area']['target']}: {_area_line(report['area'])}"]
    if "sweep" in report:
        lines += ["", f"sweep: {report['sweep']['summary']} -> {report['sweep']['report']}"]
    return "\n".join(lines)
