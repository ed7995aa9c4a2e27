"""``accel train`` and ``accel search-precision``: an ONNX file to a trained or mixed-precision
integer model, resumable, exported exactly."""

from __future__ import annotations

import os
import time
from dataclasses import asdict
from pathlib import Path

from ...data import Dataset, load_dataset, sample
from ...errors import DataError, OutputError
from ...ir import Model, save_model
from ...report import Column, Table
from ...report.files import check_output
from ..calibrate import calibrate
from ..evaluate import evaluate
from ..graph import FloatGraph
from ..onnx_import import import_onnx
from ..quantize import QuantizeOptions
from ..workflow import calibration_images, make_config
from .network import QATNetwork
from .precision import Budget, search_precision
from .train import TrainOptions, export, prepare, train

__all__ = ["checkpoint_path", "train_file", "search_file"]


def checkpoint_path(output: str | os.PathLike) -> Path:
    """Where ``-o OUT.qmodel`` keeps its training state: ``OUT.qmodel.ckpt``."""
    return Path(f"{output}.ckpt")


def _outputs(output, overwrite: bool, resume: bool) -> tuple[Path, Path]:
    """The checked output path and its checkpoint (refused when left behind without ``resume``)."""
    output = check_output(output, overwrite=overwrite)
    checkpoint = checkpoint_path(output)
    if checkpoint.exists() and not resume:
        raise OutputError(f"{checkpoint}: a checkpoint of an interrupted run exists; add --resume to continue "
                          f"it, or delete it to start again")
    return output, checkpoint


def _graph(model_path) -> FloatGraph:
    model_path = Path(model_path)
    if model_path.suffix.lower() != ".onnx" or not model_path.is_file():
        raise DataError(f"{model_path}: expected an existing .onnx file")
    return import_onnx(model_path)


def _splits(graph: FloatGraph, data: str) -> tuple[Dataset, Dataset]:
    train_set, test_set = load_dataset(data, "train"), load_dataset(data, "test")
    if tuple(train_set.x.shape[1:]) != graph.input_shape:
        raise DataError(f"{data}: images have shape {tuple(train_set.x.shape[1:])}; model {graph.source} "
                        f"expects {graph.input_shape}")
    return train_set, test_set


def _finish(net: QATNetwork, test_set: Dataset, checkpoint: Path, output: Path, overwrite: bool,
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
               weight_bits: int | None = None, act_bits: int | None = None, options: TrainOptions | None = None,
               resume: bool = False, overwrite: bool = False, progress: bool = False) -> tuple[Model, str]:
    """Quantize an ONNX file, train it on ``train_data``'s training split, check the export on its
    test split and write the ``.qmodel``; returns the model and a one-line summary.

    A checkpoint (:func:`checkpoint_path`) is written after every epoch and removed once the model
    is written; ``resume`` continues from it.

    Raises
    ------
    OutputError
        ``output`` exists without ``overwrite``; a checkpoint exists without ``resume``.
    ModelImportError, DataError, ConfigError, ModelError
        Bad model, data, configuration, or an export that the engine does not reproduce.
    """
    options = options or TrainOptions()
    output, checkpoint = _outputs(output, overwrite, resume)
    config = make_config(config_path, weight_bits=weight_bits, act_bits=act_bits)
    graph = _graph(model_path)
    train_set, test_set = _splits(graph, train_data)
    calib_x, calib_name = calibration_images(graph, calib)
    net, start = prepare(graph, calib_x, config, QuantizeOptions(seed=options.seed), learn_lut=options.learn_lut,
                         learn_scales=options.learn_scales)
    ptq_top1 = evaluate(start, test_set, sqnr=False).quant_top1
    began = time.perf_counter()
    history = train(net, train_set.x, train_set.y, options, checkpoint=checkpoint, resume=resume, progress=progress)
    seconds = time.perf_counter() - began
    model, check = _finish(net, test_set, checkpoint, output, overwrite, calib_name,
                           {"train_data": str(train_data), "options": asdict(options), "history": history,
                            "post_training_top1": ptq_top1})
    summary = (f"wrote {output}: W{config.weight_bits}A{config.act_bits} trained {options.epochs} epochs in "
               f"{seconds:.0f} s (loss {history[0]['loss']:.3f} -> {history[-1]['loss']:.3f}); top-1 "
               f"{check['top1']:.2f}% on {check['images']} test images of {train_data} (post-training "
               f"{ptq_top1:.2f}%); engine logits equal to the trained network's on {check['equal_logits']} of "
               f"{check['images']}")
    return model, summary


def search_file(model_path: str | os.PathLike, output: str | os.PathLike, *, budget: str,
                calib: str | None = None, config_path: str | os.PathLike | None = None,
                act_bits: int | None = None, train_data: str | None = None, options: TrainOptions | None = None,
                resume: bool = False, overwrite: bool = False,
                progress: bool = False) -> tuple[Model, Table, str]:
    """Search per-layer weight bits for ``budget`` (:class:`~accel.frontend.qat.precision.Budget` text),
    optionally fine-tune with self-distillation on ``train_data`` (``options.epochs``; the LUTs stay, so
    the widths do), and write the ``.qmodel``; returns the model, a table of the chosen bits per layer
    and a one-line summary."""
    options = options or TrainOptions(epochs=0)
    wanted = Budget.parse(budget)
    output, checkpoint = _outputs(output, overwrite, resume)
    config = make_config(config_path, act_bits=act_bits)
    graph = _graph(model_path)
    calib_x, calib_name = calibration_images(graph, calib)
    quant = QuantizeOptions(seed=options.seed)
    calibration = calibrate(graph, calib_x, method=quant.calib_method, act_bits=config.act_bits,
                            size=quant.calib_size, seed=quant.seed)
    result = search_precision(graph, calibration, sample(calib_x, quant.calib_size, quant.seed), config, wanted,
                              quant, progress=progress)
    model, tuned = result.model, ""
    if train_data is not None and options.epochs > 0:
        train_set, test_set = _splits(graph, train_data)
        opts = TrainOptions(**{**asdict(options), "learn_lut": False, "distill": True})
        net = QATNetwork(graph, calibration, model, result.weights, quant, learn_scales=opts.learn_scales)
        history = train(net, train_set.x, train_set.y, opts, checkpoint=checkpoint, resume=resume,
                        progress=progress)
        model, check = _finish(net, test_set, checkpoint, output, overwrite, calib_name,
                               {"train_data": str(train_data), "options": asdict(opts), "history": history},
                               {"precision": model.metadata["precision"]})
        tuned = (f"; fine-tuned {opts.epochs} epochs with self-distillation: top-1 {check['top1']:.2f}% on "
                 f"{check['images']} test images of {train_data}")
    else:
        model.metadata["frontend"]["calibration_data"] = calib_name
        save_model(model, output, overwrite=overwrite)
    rows = [(name, result.bits[name], result.sensitivity[name][result.bits[name]]) for name in result.bits]
    table = Table(["layer", Column("weight bits", align="right"),
                   Column("sensitivity (KL)", fmt=".4f", align="right")], rows)
    summary = (f"wrote {output}: per-layer weight bits for a budget of {wanted}: "
               f"{result.cost:.4g} {'bits per weight' if wanted.unit == 'bpw' else 'bytes'} (LUTs, shifts and "
               f"biases included){tuned}")
    return model, table, summary
