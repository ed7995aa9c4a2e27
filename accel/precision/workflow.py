"""``accel search-precision``: per-layer weight and activation bits for a budget, optionally fine-tuned,
written exactly."""

from __future__ import annotations

import os
from dataclasses import asdict

from ..data import sample
from ..frontend.calibrate import calibrate
from ..frontend.qat import QATNetwork, TrainOptions, train
from ..frontend.qat.workflow import check_outputs, data_splits, finish, onnx_graph
from ..frontend.quantize import QuantizeOptions
from ..frontend.workflow import calibration_images, make_config
from ..ir import Model, save_model
from ..report import Column, Table
from .search import Budget, search_precision

__all__ = ["search_file"]


def search_file(model_path: str | os.PathLike, output: str | os.PathLike, *, budget: str,
                calib: str | None = None, config_path: str | os.PathLike | None = None,
                act_bits: int | None = None, train_data: str | None = None, options: TrainOptions | None = None,
                resume: bool = False, overwrite: bool = False,
                progress: bool = False) -> tuple[Model, Table, str]:
    """Search per-layer weight (and, for an energy budget, activation) bits for ``budget``
    (:class:`~accel.precision.Budget` text),
    optionally fine-tune with self-distillation on ``train_data`` (``options.epochs``; the LUTs stay, so
    the widths do), and write the ``.qmodel``; returns the model, a table of the chosen bits per layer
    and a one-line summary."""
    options = options or TrainOptions(epochs=0)
    wanted = Budget.parse(budget)
    output, checkpoint = check_outputs(output, overwrite, resume)
    config = make_config(config_path, act_bits=act_bits)
    graph = onnx_graph(model_path)
    calib_x, calib_name = calibration_images(graph, calib)
    quant = QuantizeOptions(seed=options.seed)
    calibration = calibrate(graph, calib_x, method=quant.calib_method, act_bits=config.act_bits,
                            size=quant.calib_size, seed=quant.seed)
    result = search_precision(graph, calibration, sample(calib_x, quant.calib_size, quant.seed), config, wanted,
                              quant, progress=progress)
    model, tuned = result.model, ""
    if train_data is not None and options.epochs > 0:
        train_set, test_set = data_splits(graph, train_data)
        opts = TrainOptions(**{**asdict(options), "learn_lut": False, "distill": True})
        net = QATNetwork(graph, result.calibration, model, result.weights, quant, learn_scales=opts.learn_scales)
        history = train(net, train_set.x, train_set.y, opts, checkpoint=checkpoint, resume=resume,
                        progress=progress)
        model, check = finish(net, test_set, checkpoint, output, overwrite, calib_name,
                               {"train_data": str(train_data), "options": asdict(opts), "history": history},
                               {"precision": model.metadata["precision"]})
        tuned = (f"; fine-tuned {opts.epochs} epochs with self-distillation: top-1 {check['top1']:.2f}% on "
                 f"{check['images']} test images of {train_data}")
    else:
        model.metadata["frontend"]["calibration_data"] = calib_name
        save_model(model, output, overwrite=overwrite)
    rows = []
    for name, bits in result.bits.items():
        act = result.act_bits.get(name)
        rows.append((name, bits, act, result.sensitivity[name][bits],
                     None if act is None else result.act_sensitivity[name][act]))
    table = Table(["layer", Column("weight bits", align="right"), Column("act bits", align="right"),
                   Column("sensitivity W (KL)", fmt=".4f", align="right"),
                   Column("sensitivity A (KL)", fmt=".4f", align="right")], rows)
    counted = ("packed activations and weight codes, accel perf's energy model" if wanted.unit == "uJ"
               else "LUTs, shifts and biases included")
    summary = (f"wrote {output}: per-layer bits for a budget of {wanted}: {result.cost:.4g} {wanted.unit_name} "
               f"({counted}){tuned}")
    return model, table, summary
