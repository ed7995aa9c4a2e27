"""Accuracy of an integer model against its float network: top-1, agreement, per-layer SQNR.

The integer model runs through the bit-exact engine (:class:`accel.engine.Engine`, prepared once for all batches);
the float network's logits come from onnxruntime on the source ONNX file, and
its intermediate tensors from the float graph (:func:`~accel.frontend.graph.run_float`),
so that every integer tensor is compared with the float tensor it stands for.

Both passes stream the test set in batches and keep only each image's predicted
class, so memory does not grow with the number of images. The source ONNX file
is trusted only when its SHA-256 is the one recorded at quantization
(:func:`check_source`); a model written before the hash was recorded is
evaluated with a warning.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..datapath import quantize_input
from ..errors import DataError, ModelImportError
from ..ir import Model
from .calibrate import input_statistics, warn_if_statistics_differ
from .graph import FloatGraph, run_float
from .metrics import signal_noise_energy, sqnr_db
from .quantize import dequantize_output, source_sha256

__all__ = ["EvalResult", "evaluate", "onnx_logits", "check_source"]

_log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """What ``accel eval`` reports.

    Members
    -------
    model, data : str
        Names of the model and the data set.
    images : int
        Test images evaluated.
    float_top1, quant_top1 : float or None
        Top-1 accuracy in percent of the float network and of the integer model.
    agreement : float or None
        Percentage of images where both predict the same class.
    layers : list of dict
        Per layer: ``name``, ``op``, ``tensor``, ``sqnr_db`` (``None`` when the
        integer tensor is exact).
    engine : dict
        How the engine ran the model (:meth:`accel.engine.Engine.describe`): backend,
        CPU flags, the integer kernels' self-test verdicts, each layer's path.
    integer_model : Model
        The model that was evaluated (not part of the report; callers price it with
        :mod:`accel.perf`).
    """

    model: str
    data: str
    images: int
    float_top1: float | None
    quant_top1: float | None
    agreement: float | None
    layers: list[dict] = field(default_factory=list)
    engine: dict = field(default_factory=dict)
    integer_model: Model | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "images": self.images,
                "float_top1": self.float_top1, "quant_top1": self.quant_top1,
                "agreement": self.agreement, "layers": self.layers, "engine": self.engine}


def _reported_sqnr(signal_energy: float, noise_energy: float) -> float | None:
    """SQNR in dB rounded to 0.01 for the report; ``None`` for an exact tensor (JSON has no inf)."""
    value = sqnr_db(signal_energy, noise_energy)
    return None if value == math.inf else round(value, 2)


def _onnx_session(path: str | os.PathLike):
    """onnxruntime on the model as the importer prepared it
    (:func:`~accel.frontend.onnx_import.load_prepared`): a fixed-batch export then accepts any batch."""
    import onnxruntime as ort

    from .onnx_import import load_prepared

    return ort.InferenceSession(load_prepared(path).SerializeToString(), providers=["CPUExecutionProvider"])


def onnx_logits(path: str | os.PathLike, x: np.ndarray, batch_size: int = 250) -> np.ndarray:
    """Float outputs (the first graph output) of an ONNX file through onnxruntime, ``batch_size`` images at a time."""
    session = _onnx_session(path)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: np.asarray(x[i:i + batch_size], np.float32)})[0]
                           for i in range(0, len(x), batch_size)])


def check_source(model: Model, onnx_path: str | os.PathLike, where: str = "") -> bool:
    """Whether ``onnx_path`` is the network ``model`` was quantized from, by the SHA-256 recorded
    in the model.

    Returns ``True`` when the hashes agree, ``False`` (after one warning line) when the model
    predates the hash and cannot tell.

    Raises
    ------
    ModelImportError
        The file's hash differs from the recorded one: it was replaced or retrained.
    """
    recorded = model.metadata.get("source_sha256")
    name = where or str(model.metadata.get("name", "the model"))
    if not recorded:
        _log.warning(f"{name}: records no SHA-256 of its source network (written by an older accel); "
                     f"the float results of {onnx_path} are unverified")
        return False
    actual = source_sha256(onnx_path)
    if actual != recorded:
        raise ModelImportError(f"{name}: its source network {onnx_path} has changed since it was quantized "
                               f"(SHA-256 {actual[:12] or 'unreadable'}, recorded {recorded[:12]}); "
                               f"re-quantize it or restore that file")
    return True


def _check_shape(model: Model, data: Dataset) -> None:
    expected = model.tensors[model.inputs[0]].shape
    if tuple(data.x.shape[1:]) != tuple(expected):
        raise DataError(f"{data.name}: images have shape {tuple(data.x.shape[1:])}; model "
                        f"{model.metadata.get('name', '')!r} expects {tuple(expected)}")


def evaluate(model: Model, data: Dataset, *, graph: FloatGraph | None = None,
             onnx_path: str | os.PathLike | None = None, batch_size: int = 250,
             sqnr: bool = True, progress: bool = False, where: str = "", backend: str = "fast") -> EvalResult:
    """Evaluate an integer model (and its float network) on a labelled data set.

    Parameters
    ----------
    model : accel.ir.Model
        The integer model; its ``metadata["source"]`` names the ONNX file it came from
        and ``metadata["source_sha256"]`` that file's hash (see :func:`check_source`).
    data : Dataset
        Test images and labels.
    graph : FloatGraph, optional
        The float graph (imported from the source ONNX file when absent and the file exists);
        without one there is no per-layer SQNR.
    onnx_path : path, optional
        ONNX file for the float logits (default: the model's source, when it exists).
    batch_size : int
        Images per batch of both passes (the float network and the engine); memory is
        bounded by one batch, whatever the number of images.
    sqnr : bool
        Measure the per-layer SQNR (runs the float graph too).
    progress : bool
        Show a progress bar (images, on stderr).
    where : str
        How errors and warnings name the model (say its file).
    backend : str
        Engine backend (:data:`accel.engine.BACKENDS` or "cuda"); all are bit-exact.

    Returns
    -------
    EvalResult

    Raises
    ------
    DataError
        Images whose shape does not match the model, or labels beyond its outputs.
    ModelImportError
        The source ONNX file differs from the one the model was quantized from.
    """
    from ..engine import Engine
    from .onnx_import import import_onnx

    _check_shape(model, data)
    if batch_size <= 0:
        raise DataError(f"batch size {batch_size}: expected a positive number of images")
    source = model.metadata.get("source") or None
    if onnx_path is None and source and Path(source).is_file():
        onnx_path = source
    if onnx_path is not None:
        check_source(model, onnx_path, where)
    frontend = model.metadata.get("frontend") or {}
    warn_if_statistics_differ(frontend.get("calibration_input"), str(frontend.get("calibration_data", "")
                              or "of the model"), input_statistics(data.x), f"{data.name} ({data.split})")
    if not sqnr:
        graph = None
    elif graph is None and onnx_path is not None:
        graph = import_onnx(onnx_path)
    out_name = model.outputs[0]
    n_classes = model.tensors[out_name].shape[0]
    if data.y.max() >= n_classes:
        raise DataError(f"{data.name}: label {int(data.y.max())} is beyond the model's {n_classes} outputs")
    in_info = model.tensors[model.inputs[0]]
    lo, hi = model.config.act_range(in_info.dtype == "int8")
    energies: dict[str, list[float]] = {}
    session = _onnx_session(onnx_path) if onnx_path is not None else None
    quant_pred = np.empty(len(data), np.int64)
    float_pred = np.empty(len(data), np.int64) if session is not None else None
    engine = Engine(model, backend)  # prepared once: its sessions (or device weights) serve every batch
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(data), desc=f"eval {data.name}", unit="img", leave=False)
    try:
        for start in range(0, len(data), batch_size):
            xb = data.x[start:start + batch_size]
            stop = start + len(xb)
            if session is not None:
                logits = session.run(None, {session.get_inputs()[0].name: np.asarray(xb, np.float32)})[0]
                float_pred[start:stop] = logits.argmax(axis=1)
            xi = quantize_input(xb, in_info.exponent, lo, hi).astype(np.dtype(in_info.dtype))
            ints = engine.run(xi, return_all=graph is not None)
            quant_pred[start:stop] = dequantize_output(model, out_name, ints[out_name]).argmax(axis=1)
            if graph is not None:
                _accumulate_noise(model, run_float(graph, xb, return_all=True), ints, energies)
            if bar is not None:
                bar.update(len(xb))
    finally:
        if bar is not None:
            bar.close()
    quant_top1 = float(np.mean(quant_pred == data.y) * 100)
    float_top1 = agreement = None
    if float_pred is not None:
        float_top1 = float(np.mean(float_pred == data.y) * 100)
        agreement = float(np.mean(float_pred == quant_pred) * 100)
    layers = [{"name": layer.name, "op": layer.op, "tensor": layer.output,
               "sqnr_db": _reported_sqnr(*energies[layer.output])}
              for layer in model.layers if layer.output in energies]
    return EvalResult(str(model.metadata.get("name", "")), str(data.name), len(data), float_top1, quant_top1,
                      agreement, layers, engine.describe(), integer_model=model)


def _accumulate_noise(model: Model, floats: dict, ints: dict, energies: dict[str, list[float]]) -> None:
    """Add one batch's signal and noise energy per layer output to ``energies``."""
    for layer in model.layers:
        t = layer.output
        if t not in floats or t not in ints:
            continue
        f = floats[t].astype(np.float64)
        q = dequantize_output(model, t, ints[t]).reshape(f.shape)
        acc = energies.setdefault(t, [0.0, 0.0])
        signal, noise = signal_noise_energy(f, q)
        acc[0] += signal
        acc[1] += noise
