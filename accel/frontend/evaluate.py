"""Accuracy of an integer model against its float network: top-1, agreement, per-layer SQNR.

The integer model runs through the bit-exact engine (:class:`accel.engine.Engine`, prepared once for all batches);
the float network's logits come from onnxruntime on the source ONNX file, and
its intermediate tensors from the float graph (:func:`~accel.frontend.graph.run_float`),
so that every integer tensor is compared with the float tensor it stands for.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..datapath import quantize_input
from ..errors import DataError
from ..ir import Model
from .graph import FloatGraph, run_float
from .metrics import signal_noise_energy, sqnr_db
from .quantize import dequantize_output

__all__ = ["EvalResult", "evaluate", "onnx_logits"]


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
    """

    model: str
    data: str
    images: int
    float_top1: float | None
    quant_top1: float | None
    agreement: float | None
    layers: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.model, "data": self.data, "images": self.images,
                "float_top1": self.float_top1, "quant_top1": self.quant_top1,
                "agreement": self.agreement, "layers": self.layers}


def _reported_sqnr(signal_energy: float, noise_energy: float) -> float | None:
    """SQNR in dB rounded to 0.01 for the report; ``None`` for an exact tensor (JSON has no inf)."""
    value = sqnr_db(signal_energy, noise_energy)
    return None if value == math.inf else round(value, 2)


def onnx_logits(path: str | os.PathLike, x: np.ndarray) -> np.ndarray:
    """Float outputs (the first graph output) of an ONNX file through onnxruntime, for any batch size.

    onnxruntime runs the model as the importer prepared it
    (:func:`~accel.frontend.onnx_import.load_prepared`): a fixed-batch export
    then accepts any number of images.
    """
    import onnxruntime as ort

    from .onnx_import import load_prepared

    session = ort.InferenceSession(load_prepared(path).SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: np.asarray(x, np.float32)})[0]


def _check_shape(model: Model, data: Dataset) -> None:
    expected = model.tensors[model.inputs[0]].shape
    if tuple(data.x.shape[1:]) != tuple(expected):
        raise DataError(f"{data.name}: images have shape {tuple(data.x.shape[1:])}; model "
                        f"{model.metadata.get('name', '')!r} expects {tuple(expected)}")


def evaluate(model: Model, data: Dataset, *, graph: FloatGraph | None = None,
             onnx_path: str | os.PathLike | None = None, batch_size: int = 250,
             sqnr: bool = True, progress: bool = False) -> EvalResult:
    """Evaluate an integer model (and its float network) on a labelled data set.

    Parameters
    ----------
    model : accel.ir.Model
        The integer model; its ``metadata["source"]`` names the ONNX file it came from.
    data : Dataset
        Test images and labels.
    graph : FloatGraph, optional
        The float graph (imported from the source ONNX file when absent and the file exists);
        without one there is no per-layer SQNR.
    onnx_path : path, optional
        ONNX file for the float logits (default: the model's source, when it exists).
    batch_size : int
        Images per engine call.
    sqnr : bool
        Measure the per-layer SQNR (runs the float graph too).
    progress : bool
        Show a progress bar.

    Returns
    -------
    EvalResult

    Raises
    ------
    DataError
        Images whose shape does not match the model, or labels beyond its outputs.
    """
    from ..engine import Engine
    from .onnx_import import import_onnx

    _check_shape(model, data)
    source = model.metadata.get("source") or None
    if onnx_path is None and source and Path(source).is_file():
        onnx_path = source
    if not sqnr:
        graph = None
    elif graph is None and onnx_path is not None:
        graph = import_onnx(onnx_path)
    out_name = model.outputs[0]
    in_info = model.tensors[model.inputs[0]]
    lo, hi = model.config.act_range(True) if in_info.dtype == "int8" else model.config.act_range(False)
    energies: dict[str, list[float]] = {}
    float_logits = onnx_logits(onnx_path, data.x) if onnx_path is not None else None
    quant_logits = []
    engine = Engine(model)  # prepared once: its onnxruntime sessions serve every batch
    starts = range(0, len(data), batch_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc=f"eval {data.name}", unit="batch", leave=False)
    for start in starts:
        xb = data.x[start:start + batch_size]
        xi = quantize_input(xb, in_info.exponent, lo, hi).astype(np.dtype(in_info.dtype))
        ints = engine.run(xi, return_all=graph is not None)
        quant_logits.append(dequantize_output(model, out_name, ints[out_name]))
        if graph is not None:
            floats = run_float(graph, xb, return_all=True)
            for layer in model.layers:
                t = layer.output
                if t not in floats or t not in ints:
                    continue
                f = floats[t].astype(np.float64)
                q = dequantize_output(model, t, ints[t]).reshape(f.shape)
                signal, noise = signal_noise_energy(f, q)
                acc = energies.setdefault(t, [0.0, 0.0])
                acc[0] += signal
                acc[1] += noise
    quant = np.concatenate(quant_logits)
    if data.y.max() >= quant.shape[1]:
        raise DataError(f"{data.name}: label {int(data.y.max())} is beyond the model's {quant.shape[1]} outputs")
    quant_pred = quant.argmax(axis=1)
    quant_top1 = float(np.mean(quant_pred == data.y) * 100)
    float_top1 = agreement = None
    if float_logits is not None:
        float_pred = float_logits.argmax(axis=1)
        float_top1 = float(np.mean(float_pred == data.y) * 100)
        agreement = float(np.mean(float_pred == quant_pred) * 100)
    layers = [{"name": layer.name, "op": layer.op, "tensor": layer.output,
               "sqnr_db": _reported_sqnr(*energies[layer.output])}
              for layer in model.layers if layer.output in energies]
    return EvalResult(str(model.metadata.get("name", "")), str(data.name), len(data), float_top1, quant_top1,
                      agreement, layers)
