"""File-level front-end workflows behind ``accel quantize`` and ``accel eval``, and the pieces
``accel demo`` (:mod:`accel.demo`) reuses: the bundled models' index, calibration data.

The command-line modules only parse arguments and print; everything they do is here.
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import numpy as np

from ..config import AcceleratorConfig, load_config
from ..data import load_dataset
from ..errors import ConfigError, DataError, ModelImportError
from ..ir import MAC_OPS, Model, load_model, save_model
from ..report.files import check_output
from .calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, input_statistics, warn_if_statistics_differ
from .evaluate import EvalResult, evaluate
from .graph import FloatGraph
from .onnx_import import import_onnx
from .quantize import DEFAULT_GRANULARITY, DEFAULT_LUT, QuantizeOptions, default_config, quantize_graph

__all__ = ["MODELS_DIR", "bundled_models", "bundled_data", "make_config", "calibration_images", "quantize_file",
           "evaluate_file"]

#: Folder of the bundled ONNX models and their ``models.json`` index (package data: ``accel/bundled``).
MODELS_DIR = Path(str(resources.files("accel.bundled")))


def bundled_models(models_dir: str | os.PathLike = MODELS_DIR) -> dict[str, dict]:
    """The bundled models' index (``models.json``): name -> data set, float top-1, ..."""
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


def bundled_data(model_path: str | os.PathLike, models_dir: str | os.PathLike = MODELS_DIR) -> str | None:
    """The data set that the bundled models' index names for ``model_path``, or ``None`` when the
    file is not one of the bundled models."""
    path = Path(model_path).resolve()
    if path.parent != Path(models_dir).resolve():
        return None
    info = bundled_models(models_dir).get(path.stem)
    return info["data"] if info else None


def calibration_images(graph: FloatGraph, calib: str | os.PathLike | None,
                       data: str | os.PathLike | None = None) -> tuple[np.ndarray, str]:
    """Calibration images for ``graph`` and their name: the calibration split of ``calib``;
    without it, of ``data`` (``accel eval``'s test set, so both are normalized alike), or for a
    bundled model of the set its index names. Any other model needs ``calib``: a guess would be
    silently wrong for a network trained on differently normalized inputs.

    Warns (one line) when explicit calibration data for a bundled model differs grossly in its
    statistics from the model's own data set.
    """
    declared = bundled_data(graph.source) if graph.source else None
    if calib is None:
        calib = data if data is not None else declared
        if calib is None:
            raise DataError(f"{graph.source}: no calibration data; give --calib DATA (mnist5k, digits or an "
                            f".npz with 'x' normalized as the network expects)")
    images = load_dataset(calib, "calib")
    if tuple(images.x.shape[1:]) != graph.input_shape:
        raise DataError(f"{calib}: images have shape {tuple(images.x.shape[1:])}; model {graph.source} expects "
                        f"{graph.input_shape}")
    if declared is not None and str(calib) != declared:
        warn_if_statistics_differ(input_statistics(images.x), str(calib),
                                  input_statistics(load_dataset(declared, "calib").x), f"{declared}, the data set "
                                  f"of {graph.name}")
    return images.x, str(calib)


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
                  progress: bool = False, ptq=None) -> tuple[Model, str]:
    """Quantize an ONNX file and write the ``.qmodel``; returns the model and a one-line summary.

    ``ptq`` (:class:`~accel.frontend.ptq.pipeline.PTQOptions`) selects post-training methods
    (equalization, bias correction, AdaRound).

    Raises
    ------
    OutputError
        ``output`` exists and ``overwrite`` is false, or its folder is missing or read-only
        (checked before any work).
    ModelImportError, DataError, ConfigError
        Bad model, data or configuration.
    """
    model_path, output = Path(model_path), check_output(output, overwrite=overwrite)
    _check_onnx_path(model_path)
    config = make_config(config_path, weight_bits=weight_bits, act_bits=act_bits, lut_scope=lut_scope)
    options = QuantizeOptions(lut=lut, granularity=granularity, levels=levels, calib_method=calib_method,
                              calib_size=calib_size, seed=seed, user_lut=parse_levels(user_lut))
    graph = import_onnx(model_path)
    x, calib_name = calibration_images(graph, calib)
    if ptq is not None and ptq.active:
        from .ptq.pipeline import quantize_graph_ptq

        model = quantize_graph_ptq(graph, x, config, options, ptq, progress=progress)
    else:
        model = quantize_graph(graph, x, config, options, progress=progress)
    model.metadata["frontend"]["calibration_data"] = calib_name
    save_model(model, output, overwrite=overwrite)
    n_mac = sum(layer.op in MAC_OPS for layer in model.layers)
    summary = (f"wrote {output}: {len(model.layers)} layers ({n_mac} on the MAC array), "
               f"W{config.weight_bits} {lut} LUT{'s per channel' if config.lut_scope.value == 'channel' else ''} "
               f"({granularity} power-of-two scales, "
               f"requant {config.requant.value}), A{config.act_bits}, calibrated ({calib_method}) on "
               f"{min(calib_size, len(x))} images of {calib_name}")
    if ptq is not None and ptq.active:
        summary += f"; post-training: {ptq.describe()}"
    return model, summary


def evaluate_file(model_path: str | os.PathLike, data: str, *, calib: str | None = None,
                  config_path: str | os.PathLike | None = None, progress: bool = False,
                  backend: str = "fast") -> EvalResult:
    """Evaluate a ``.qmodel`` (or an ``.onnx`` quantized on the fly with the defaults, calibrated on
    ``calib`` or else on ``data``'s calibration split) on ``data``'s test split."""
    model_path = Path(model_path)
    test = load_dataset(data, "test")
    if model_path.suffix.lower() == ".onnx":
        _check_onnx_path(model_path)
        graph = import_onnx(model_path)
        if tuple(test.x.shape[1:]) != graph.input_shape:
            raise DataError(f"{data}: images have shape {tuple(test.x.shape[1:])}; model {model_path} expects "
                            f"{graph.input_shape}")
        x, calib_name = calibration_images(graph, calib, data)
        model = quantize_graph(graph, x, make_config(config_path), progress=progress)
        model.metadata["frontend"]["calibration_data"] = calib_name
        return evaluate(model, test, graph=graph, onnx_path=model_path, progress=progress, where=str(model_path),
                        backend=backend)
    model = load_model(model_path)
    return evaluate(model, test, progress=progress, where=str(model_path), backend=backend)
