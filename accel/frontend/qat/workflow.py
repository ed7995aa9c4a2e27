"""``accel train``: an ONNX file to a trained integer model, resumable, exported exactly; the
pieces that ``accel search-precision`` (:mod:`accel.precision`) reuses."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from ...data import Dataset, load_dataset
from ...errors import DataError, OutputError
from ...ir import Model, save_model
from ...report.files import check_output
from ..calibrate import DEFAULT_METHOD
from ..evaluate import evaluate
from ..graph import FloatGraph
from ..onnx_import import import_onnx
from ..quantize import QuantizeOptions
from ..workflow import calibration_images, make_config
from .network import QATNetwork
from .train import TrainOptions, export, prepare, train

__all__ = ["checkpoint_path", "train_file", "check_outputs", "onnx_graph", "data_splits", "finish"]


def checkpoint_path(output: str | os.PathLike) -> Path:
    """Where ``-o OUT.qmodel`` keeps its training state: ``OUT.qmodel.ckpt``."""
    return Path(f"{output}.ckpt")


def check_outputs(output, overwrite: bool, resume: bool) -> tuple[Path, Path]:
    """The checked output path and its checkpoint (refused when left behind without ``resume``)."""
    output = check_output(output, overwrite=overwrite)
    checkpoint = checkpoint_path(output)
    if checkpoint.exists() and not resume:
        raise OutputError(f"{checkpoint}: a checkpoint of an interrupted run exists; add --resume to continue "
                          f"it, or delete it to start again")
    return output, checkpoint


def onnx_graph(model_path) -> FloatGraph:
    model_path = Path(model_path)
    if model_path.suffix.lower() != ".onnx" or not model_path.is_file():
        raise DataError(f"{model_path}: expected an existing .onnx file")
    return import_onnx(model_path)


def data_splits(graph: FloatGraph, data: str) -> tuple[Dataset, Dataset]:
    train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
    if tuple(train_set.x.shape[1:]) != graph.input_shape:
        raise DataError(f"{data}: images have shape {tuple(train_set.x.shape[1:])}; model {graph.source} "
                        f"expects {graph.input_shape}")
    return train_set, test_set


def finish(net: QATNetwork, test_set: Dataset, checkpoint: Path, output: Path, overwrite: bool,
            calib_name: str, record: dict, metadata: dict | None = None) -> tuple[Model, dict]:
    """Export with the engine check on the test split, write the model, drop the checkpoint."""
    model, check = export(net, test_set.x, test_set.y)
    model.metadata["frontend"]["calibration_data"] = calib_name
    model.metadata["qat"] = {**record, "export_check": check}
    model.metadata.update(metadata or {})
    save_model(model, output, overwrite=overwrite)
    checkpoint.unlink(missing_ok=True)
    return model, check


def train_file(model_path: str | os.PathLike, output: str | os.PathLike, *, train_data: str,
               calib: str | None = None, config_path: str | os.PathLike | None = None,
               weight_bits: int | None = None, act_bits: int | None = None, calib_method: str = DEFAULT_METHOD,
               options: TrainOptions | None = None, resume: bool = False, overwrite: bool = False,
               progress: bool = False) -> tuple[Model, str]:
    """Quantize an ONNX file, train it on ``train_data``'s training split, check the export on its
    test split and write the ``.qmodel``; returns the model and a one-line summary.

    A checkpoint (:func:`checkpoint_path`) is written after every epoch and removed once the model
    is written; ``resume`` continues from it. ``calib_method`` calibrates the starting activation
    exponents (``mse`` suits 4-bit activations, docs/QAT.md).

    Raises
    ------
    OutputError
        ``output`` exists without ``overwrite``; a checkpoint exists without ``resume``.
    ModelImportError, DataError, ConfigError, ModelError
        Bad model, data, configuration, or an export that the engine does not reproduce.
    """
    options = options or TrainOptions()
    output, checkpoint = check_outputs(output, overwrite, resume)
    config = make_config(config_path, weight_bits=weight_bits, act_bits=act_bits)
    graph = onnx_graph(model_path)
    train_set, test_set = data_splits(graph, train_data)
    calib_x, calib_name = calibration_images(graph, calib)
    net, start = prepare(graph, calib_x, config, QuantizeOptions(seed=options.seed, calib_method=calib_method),
                         learn_lut=options.learn_lut, learn_scales=options.learn_scales,
                         learn_offsets=options.learn_offsets)
    ptq_top1 = evaluate(start, test_set, sqnr=False).quant_top1
    began = time.perf_counter()
    history = train(net, train_set.x, train_set.y, options, checkpoint=checkpoint, resume=resume, progress=progress)
    seconds = time.perf_counter() - began
    model, check = finish(net, test_set, checkpoint, output, overwrite, calib_name,
                           {"train_data": str(train_data), "options": asdict(options), "history": history,
                            "post_training_top1": ptq_top1})
    summary = (f"wrote {output}: W{config.weight_bits}A{config.act_bits} trained {options.epochs} epochs in "
               f"{seconds:.0f} s (loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}); top-1 "
               f"{check['top1']:.2f}% on {check['images']} test images of {train_data} (post-training "
               f"{ptq_top1:.2f}%); engine logits equal to the trained network's on {check['equal_logits']} of "
               f"{check['images']}")
    return model, summary
