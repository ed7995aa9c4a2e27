"""Measuring one point, in a Dask worker: quantize, evaluate on the bit-exact engine, price with the
performance model and, when asked, synthesize.

:func:`measure_point` takes and returns plain dicts (they cross process boundaries) and never
raises: a failure comes back as ``status = "failed"`` with a one-line error. Each worker process
keeps the imported float graph, the calibration images and the test images of the model it saw
last, so that only the first point a worker measures pays for them.
"""

from __future__ import annotations

import functools
import time
from collections import OrderedDict

__all__ = ["HARDWARE_ONLY", "measure_point", "one_line", "quantization_key"]


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line: a user error's message, else its type and message."""
    from ..errors import AccelError

    text = str(exc) if isinstance(exc, AccelError) else f"{type(exc).__name__}: {exc}"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@functools.lru_cache(maxsize=2)
def _graph(model_path: str, model_hash: str):
    """The float graph of a model file (``model_hash`` keys the cache to the file's content)."""
    from ..frontend.onnx_import import import_onnx

    return import_onnx(model_path)


@functools.lru_cache(maxsize=2)
def _calibration(model_path: str, model_hash: str, calib: str):
    from ..frontend.workflow import calibration_images

    return calibration_images(_graph(model_path, model_hash), calib)[0]


@functools.lru_cache(maxsize=2)
def _test_set(data: str, eval_images: int | None):
    """The test split of ``data``, its first ``eval_images`` images when given."""
    from ..data import Dataset, load_dataset

    test = load_dataset(data, "test")
    if eval_images is None or eval_images >= len(test):
        return test
    return Dataset(test.name, test.split, test.x[:eval_images], test.y[:eval_images])


#: AcceleratorConfig fields that only the performance model and the gateware read: the front end and the
#: engine never do, so the integer model and its accuracy do not depend on them, and points that differ
#: only here (an array-size axis) share one quantization and evaluation in a worker.
#: tests/sweep/test_point.py holds a shared point to the same point measured afresh.
HARDWARE_ONLY = frozenset({"rows", "cols", "clock_mhz", "weight_buffer_bytes", "act_buffer_bytes", "out_buffer_bytes",
                           "vector_lanes", "vector_latency", "dram_bytes_per_cycle", "activation_coding", "energy"})
_MODELS: OrderedDict = OrderedDict()


def _quantize(task: dict):
    from ..config import AcceleratorConfig
    from ..frontend.ptq.pipeline import PTQOptions, quantize_graph_ptq
    from ..frontend.quantize import QuantizeOptions, quantize_graph
    from .spec import ptq_kwargs, quantize_kwargs

    options = task["quantize"]
    config = AcceleratorConfig.from_dict(task["accelerator"])
    graph = _graph(task["model_path"], task["model_hash"])
    x = _calibration(task["model_path"], task["model_hash"], options["calib"])
    ptq = PTQOptions(**ptq_kwargs(options))
    quantize_options = QuantizeOptions(**quantize_kwargs(options))
    if ptq.active:
        model = quantize_graph_ptq(graph, x, config, quantize_options, ptq)
    else:
        model = quantize_graph(graph, x, config, quantize_options)
    model.metadata["frontend"]["calibration_data"] = options["calib"]
    return config, graph, model


def quantization_key(task: dict) -> str:
    """What the integer model and its accuracy depend on: the task without its :data:`HARDWARE_ONLY` fields."""
    from .store import canonical_json

    accelerator = {k: v for k, v in task["accelerator"].items() if k not in HARDWARE_ONLY}
    return canonical_json({"model_hash": task["model_hash"], "data": task["data"], "eval_images": task["eval_images"],
                           "quantize": task["quantize"], "accelerator": accelerator})


def _quantize_and_evaluate(task: dict):
    """The integer model of ``task`` and its top-1 and float top-1, shared by the points that differ only
    in :data:`HARDWARE_ONLY` fields (the last few kept per worker)."""
    from ..frontend.evaluate import evaluate

    key = quantization_key(task)
    if key in _MODELS:
        _MODELS.move_to_end(key)
        return _MODELS[key]
    _, graph, model = _quantize(task)
    result = evaluate(model, _test_set(task["data"], task["eval_images"]), graph=graph,
                      onnx_path=task["model_path"], sqnr=False, where=task["model"])
    _MODELS[key] = model, result.quant_top1, result.float_top1
    while len(_MODELS) > 4:
        _MODELS.popitem(last=False)
    return _MODELS[key]


def _measure(task: dict) -> dict:
    from ..config import AcceleratorConfig
    from ..perf import estimate

    config = AcceleratorConfig.from_dict(task["accelerator"])
    model, accuracy, float_accuracy = _quantize_and_evaluate(task)
    cost = estimate(model, config)  # this point's array, clock, buffers and energy table
    row = {"accuracy": accuracy, "float_accuracy": float_accuracy, "cycles": int(cost.cycles),
           "energy_uj": float(cost.energy_uj), "bits_per_weight": float(cost.bits_per_weight)}
    if task["synth"]:
        from ..synth import get_target, synthesize

        synth = synthesize(config, get_target(task["target"]))
        row.update(lut4=synth.luts, dsp=synth.dsp,
                   fmax_mhz=min(synth.fmax_mhz.values()) if synth.fmax_mhz else None)
    return row


def measure_point(task: dict) -> dict:
    """Measure one point; returns the result columns of its row with ``status``, ``error`` and ``seconds``.

    ``task`` holds ``model`` (as given), ``model_path``, ``model_hash``, ``data``, ``eval_images``,
    ``accelerator`` (:meth:`AcceleratorConfig.to_dict`), ``quantize`` (the front-end options),
    ``synth`` and ``target``.
    """
    start = time.perf_counter()
    try:
        row = {"status": "done", "error": None, **_measure(task)}
    except Exception as exc:  # a failing point is recorded, never the end of the sweep
        row = {"status": "failed", "error": one_line(exc)}
    row["seconds"] = round(time.perf_counter() - start, 3)
    return row
