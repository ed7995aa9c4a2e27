"""File-level front-end workflows behind ``accel quantize``, ``accel eval`` and ``accel demo``.

The command-line modules only parse arguments and print; everything they do is here.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig, load_config
from ..data import bundled_for_shape, load_dataset
from ..errors import ConfigError, DataError, ModelImportError
from ..ir import MAC_OPS, Model, load_model, save_model
from .calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD
from .evaluate import EvalResult, evaluate
from .graph import FloatGraph
from .onnx_import import import_onnx
from .quantize import DEFAULT_GRANULARITY, DEFAULT_LUT, QuantizeOptions, default_config, quantize_graph

__all__ = ["MODELS_DIR", "bundled_models", "make_config", "calibration_images", "quantize_file",
           "evaluate_file", "run_demo", "format_demo"]

#: Folder of the bundled ONNX models and their ``models.json`` index.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"


def bundled_models(models_dir: str | os.PathLike = MODELS_DIR) -> dict[str, dict]:
    """The bundled models' index (``models/models.json``): name -> data set, float top-1, ..."""
    path = Path(models_dir) / "models.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelImportError(f"{path}: cannot read the bundled models' index ({exc})") from None


def make_config(config_path: str | os.PathLike | None = None, *, weight_bits: int | None = None,
                act_bits: int | None = None, lut_scope: str | None = None) -> AcceleratorConfig:
    """The accelerator configuration from a TOML file, with fields overridden.

    Without a file it is the front end's :func:`~accel.frontend.quantize.default_config`
    (one LUT per output channel); a file's ``lut_scope`` is kept unless ``lut_scope`` is given.
    """
    config = load_config(config_path) if config_path is not None else default_config()
    changes = {k: v for k, v in (("weight_bits", weight_bits), ("act_bits", act_bits), ("lut_scope", lut_scope))
               if v is not None}
    return config.replace(**changes) if changes else config


def calibration_images(graph: FloatGraph, calib: str | os.PathLike | None) -> tuple[np.ndarray, str]:
    """Calibration images for ``graph``: the named set's training split, an ``.npz``, or (when
    ``calib`` is ``None``) the bundled set whose images match the model's input shape."""
    if calib is None:
        calib = bundled_for_shape(graph.input_shape)
        if calib is None:
            raise DataError(f"{graph.source}: no bundled data set has images of shape {graph.input_shape}; "
                            f"give calibration data with --calib (an .npz with 'x' and 'y')")
    data = load_dataset(calib, "calib")
    if tuple(data.x.shape[1:]) != graph.input_shape:
        raise DataError(f"{calib}: images have shape {tuple(data.x.shape[1:])}; model {graph.source} expects "
                        f"{graph.input_shape}")
    return data.x, str(calib)


def _check_onnx_path(path: Path) -> None:
    if path.suffix.lower() != ".onnx":
        raise ModelImportError(f"{path}: expected an .onnx file")
    if not path.is_file():
        raise ModelImportError(f"{path}: no such file")


def parse_levels(text: str | None) -> tuple[int, ...] | None:
    """``"-64,-16,0,16,64"`` -> ``(-64, -16, 0, 16, 64)``; ``None`` stays ``None``."""
    if text is None:
        return None
    try:
        levels = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        levels = ()
    if not levels or any(not -128 <= v <= 127 for v in levels):
        raise ConfigError(f"--user-lut {text!r}: expected comma-separated integers in -128..127")
    return levels


def quantize_file(model_path: str | os.PathLike, output: str | os.PathLike, *,
                  config_path: str | os.PathLike | None = None, calib: str | None = None,
                  lut: str = DEFAULT_LUT, granularity: str = DEFAULT_GRANULARITY,
                  weight_bits: int | None = None, act_bits: int | None = None, lut_scope: str | None = None,
                  levels: int | None = None,
                  calib_method: str = DEFAULT_METHOD, calib_size: int = DEFAULT_CALIB_SIZE, seed: int = 0,
                  user_lut: str | None = None, overwrite: bool = False,
                  progress: bool = False) -> tuple[Model, str]:
    """Quantize an ONNX file and write the ``.qmodel``; returns the model and a one-line summary.

    Raises
    ------
    ModelFormatError
        ``output`` exists and ``overwrite`` is false (checked before any work).
    ModelImportError, DataError, ConfigError
        Bad model, data or configuration.
    """
    model_path, output = Path(model_path), Path(output)
    if output.exists() and not overwrite:
        from ..errors import ModelFormatError

        raise ModelFormatError(f"{output}: already exists; refusing to overwrite it (use --force)")
    _check_onnx_path(model_path)
    config = make_config(config_path, weight_bits=weight_bits, act_bits=act_bits, lut_scope=lut_scope)
    options = QuantizeOptions(lut=lut, granularity=granularity, levels=levels, calib_method=calib_method,
                              calib_size=calib_size, seed=seed, user_lut=parse_levels(user_lut))
    graph = import_onnx(model_path)
    x, calib_name = calibration_images(graph, calib)
    model = quantize_graph(graph, x, config, options, progress=progress)
    model.metadata["frontend"]["calibration_data"] = calib_name
    save_model(model, output, overwrite=overwrite)
    n_mac = sum(layer.op in MAC_OPS for layer in model.layers)
    summary = (f"wrote {output}: {len(model.layers)} layers ({n_mac} on the MAC array), "
               f"W{config.weight_bits} {lut} LUT{'s per channel' if config.lut_scope.value == 'channel' else ''} "
               f"({granularity} power-of-two scales, "
               f"requant {config.requant.value}), A{config.act_bits}, calibrated ({calib_method}) on "
               f"{min(calib_size, len(x))} images of {calib_name}")
    return model, summary


def evaluate_file(model_path: str | os.PathLike, data: str, *, calib: str | None = None,
                  config_path: str | os.PathLike | None = None, progress: bool = False) -> EvalResult:
    """Evaluate a ``.qmodel`` (or an ``.onnx`` quantized on the fly with the defaults) on ``data``'s test split."""
    model_path = Path(model_path)
    test = load_dataset(data, "test")
    if model_path.suffix.lower() == ".onnx":
        _check_onnx_path(model_path)
        graph = import_onnx(model_path)
        if tuple(test.x.shape[1:]) != graph.input_shape:
            raise DataError(f"{data}: images have shape {tuple(test.x.shape[1:])}; model {model_path} expects "
                            f"{graph.input_shape}")
        if calib is None and bundled_for_shape(graph.input_shape) is None:
            x = test.x  # a user's .npz: calibrate on a seeded sample of it
        else:
            x, _ = calibration_images(graph, calib or (data if data in ("mnist5k", "digits") else None))
        model = quantize_graph(graph, x, make_config(config_path), progress=progress)
        return evaluate(model, test, graph=graph, onnx_path=model_path, progress=progress)
    model = load_model(model_path)
    return evaluate(model, test, progress=progress)


def run_demo(out_dir: str | os.PathLike = "out", *, models_dir: str | os.PathLike = MODELS_DIR,
             progress: bool = True) -> dict:
    """The project's main job on the bundled models: quantize with the defaults, evaluate
    through the engine, write ``demo_report.md``/``demo_report.json`` and the ``.qmodel`` files.

    Returns
    -------
    dict
        The report (also written as JSON).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = bundled_models(models_dir)
    config = default_config()
    rows = []
    for name, info in index.items():
        start = time.time()
        graph = import_onnx(Path(models_dir) / f"{name}.onnx")
        x, _ = calibration_images(graph, info["data"])
        model = quantize_graph(graph, x, config, QuantizeOptions(), progress=progress)
        save_model(model, out_dir / f"{name}.qmodel", overwrite=True)
        result = evaluate(model, load_dataset(info["data"], "test"), graph=graph,
                          onnx_path=Path(models_dir) / f"{name}.onnx", progress=progress)
        sqnrs = [layer["sqnr_db"] for layer in result.layers if layer["sqnr_db"] is not None]
        rows.append({**result.to_dict(), "drop": round(result.float_top1 - result.quant_top1, 2),
                     "min_layer_sqnr_db": min(sqnrs) if sqnrs else None,
                     "seconds": round(time.time() - start, 1)})
    report = {"config": {"weight_bits": config.weight_bits, "act_bits": config.act_bits,
                         "lut": DEFAULT_LUT, "granularity": DEFAULT_GRANULARITY,
                         "requant": config.requant.value, "lut_scope": config.lut_scope.value},
              "models": rows}
    (out_dir / "demo_report.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = ["# accel demo: bundled models at the default quantization", "",
             f"W{config.weight_bits} ({DEFAULT_LUT} LUT per {config.lut_scope.value}, "
             f"per-{DEFAULT_GRANULARITY} power-of-two scales, "
             f"shift requantization), A{config.act_bits}; bit-exact engine on the test splits.", "",
             "| model | data | images | float top-1 | quantized top-1 | drop | agreement | worst layer SQNR (dB) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        worst = "exact" if r["min_layer_sqnr_db"] is None else f"{r['min_layer_sqnr_db']:.1f}"
        lines.append(f"| {r['model']} | {r['data']} | {r['images']} | {r['float_top1']:.2f} | "
                     f"{r['quant_top1']:.2f} | {r['drop']:.2f} | {r['agreement']:.2f} | {worst} |")
    (out_dir / "demo_report.md").write_text("\n".join(lines) + "\n")
    return report


def format_demo(report: dict) -> str:
    """The short table ``accel demo`` prints."""
    lines = [f"{'model':18s} {'data':8s} {'float':>7s} {'quant':>7s} {'drop':>6s} {'agree':>7s}"]
    for r in report["models"]:
        lines.append(f"{r['model']:18s} {r['data']:8s} {r['float_top1']:7.2f} {r['quant_top1']:7.2f} "
                     f"{r['drop']:6.2f} {r['agreement']:7.2f}")
    return "\n".join(lines)
