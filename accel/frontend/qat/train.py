"""Quantization-aware training: the loop, checkpoints, and the exact export.

:func:`prepare` builds the post-training integer model of an imported network and the
:class:`~accel.frontend.qat.network.QATNetwork` that starts from it; :func:`train` fine-tunes
it (Adam; cross-entropy, optionally distilled from the float network, optionally with an L1
penalty on the activations), one checkpoint per epoch; :func:`export` emits the integer model
and proves on data that the engine gives the same logits as the trained network.
"""

from __future__ import annotations

import io
import math
import pickle
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ...data import sample
from ...errors import ConfigError, ModelError
from ...ir import Model
from ...report.files import write_bytes
from ..calibrate import Calibration, calibrate, choose_offset
from ..graph import FloatGraph, run_float
from ..quantize import QuantizeOptions, emit_integer_model, offset_groups, quantize_layer_weights, source_sha256
from .network import QATNetwork

__all__ = ["SCHEDULES", "TrainOptions", "initial_offsets", "prepare", "train", "export", "check_export",
           "save_checkpoint", "load_checkpoint"]


#: Learning-rate schedules of :class:`TrainOptions`.
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainOptions:
    """How quantization-aware training runs.

    Parameters
    ----------
    epochs : int
        Passes over the training set.
    batch_size : int
    lr : float
        Adam learning rate of the latent weights and biases.
    scale_lr : float
        Adam learning rate of the activations' log2 scales (one unit is a factor of two).
    weight_scale_lr : float
        Adam learning rate of the weights' log2 scales: lower, because a weight exponent that
        moves by one doubles the channel's weights against LUT levels fitted to the old ones
        (on resnet_mnist at W2A8 a rate of 1e-2 for both made the second epoch diverge).
    lut_lr : float
        Adam learning rate of the LUT levels (int8 units).
    offset_lr : float
        Adam learning rate of the activation offsets (integer code units).
    learn_lut, learn_scales : bool
        Train the LUT levels; train the power-of-two scales.
    learn_offsets : bool
        Learn integer activation offsets (LSQ+) where they fold exactly, initialised by MSE
        (:func:`initial_offsets`).
    schedule : str
        ``constant`` learning rates, or ``cosine``: every rate decays to 0 over the ``epochs``
        (per batch), so the last steps settle the rounded exponents, codes and offsets.
    distill : bool
        Learn from the float network's logits too (knowledge distillation, temperature
        ``temperature``, half the loss).
    temperature : float
    sparsity : float
        Weight of the L1 penalty on the requantized activations (0: none).
    seed : int
        Seeds the order of the training images (and torch).
    """

    epochs: int = 3
    batch_size: int = 64
    lr: float = 1e-4
    scale_lr: float = 1e-2
    weight_scale_lr: float = 1e-3
    lut_lr: float = 0.05
    offset_lr: float = 0.02
    learn_lut: bool = False
    learn_scales: bool = True
    learn_offsets: bool = False
    schedule: str = "constant"
    distill: bool = False
    temperature: float = 2.0
    sparsity: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} {getattr(self, name)}: expected a positive integer")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r}: expected one of {', '.join(SCHEDULES)}")
        for name in ("lr", "scale_lr", "weight_scale_lr", "lut_lr", "offset_lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} {getattr(self, name)}: expected a positive number")
        if not self.sparsity >= 0:
            raise ConfigError(f"sparsity {self.sparsity}: expected an L1 weight of 0 or more")


def initial_offsets(graph: FloatGraph, calib: Calibration, calib_x: np.ndarray, act_bits: int,
                    options: QuantizeOptions) -> Calibration:
    """``calib`` with MSE-initialised activation offsets (and their tensors' exponents, chosen jointly,
    :func:`~accel.frontend.calibrate.choose_offset`) on every signed group where an offset folds."""
    groups = [members for members in offset_groups(graph).values() if calib.signed[members[0]]]
    if not groups:
        return calib
    values = run_float(graph, sample(calib_x, options.calib_size, options.seed), return_all=True)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    exponents, offsets = dict(calib.exponents), dict(calib.offsets)
    for members in groups:
        v = np.concatenate([values[t].reshape(-1) for t in members])
        e, o = choose_offset(v, lo, hi, min(calib.exponents[t] for t in members), seed=options.seed)
        exponents.update({t: e for t in members})
        offsets.update({t: o for t in members})
    return replace(calib, exponents=exponents, offsets=offsets)


def prepare(graph: FloatGraph, calib_x: np.ndarray, config, options: QuantizeOptions | None = None, *,
            learn_lut: bool = False, learn_scales: bool = True,
            learn_offsets: bool = False) -> tuple[QATNetwork, Model]:
    """The post-training integer model of ``graph`` and the trainable network that starts from it.

    With ``learn_offsets`` the starting point has MSE-initialised activation offsets
    (:func:`initial_offsets`) and the network learns them.

    Returns
    -------
    (QATNetwork, accel.ir.Model)
    """
    options = options or QuantizeOptions()
    calib = calibrate(graph, calib_x, method=options.calib_method, act_bits=config.act_bits,
                      size=options.calib_size, seed=options.seed)
    if learn_offsets:
        calib = initial_offsets(graph, calib, calib_x, config.act_bits, options)
    weights = quantize_layer_weights(graph, config, options)
    start = emit_integer_model(graph, calib, config, options, weights=weights)
    net = QATNetwork(graph, calib, start, weights, options, learn_lut=learn_lut, learn_scales=learn_scales,
                     learn_offsets=learn_offsets)
    return net, start


def _optimizer(net: QATNetwork, opts: TrainOptions) -> torch.optim.Optimizer:
    groups = [{"params": list(net.latent_weight.values()) + list(net.latent_bias.values()), "lr": opts.lr}]
    for params, lr in ((net.act_log2.values(), opts.scale_lr), (net.weight_log2.values(), opts.weight_scale_lr)):
        trained = [p for p in params if p.requires_grad]
        if trained:
            groups.append({"params": trained, "lr": lr})
    for params, lr in ((net.lut.values(), opts.lut_lr), (net.act_offset.values(), opts.offset_lr)):
        trained = [p for p in params if p.requires_grad]
        if trained:
            groups.append({"params": trained, "lr": lr})
    return torch.optim.Adam(groups)


def _set_rates(optimizer: torch.optim.Optimizer, opts: TrainOptions, progress: float) -> None:
    """Every group's rate at ``progress`` (0..1) of the whole run under ``opts.schedule``."""
    factor = 0.5 * (1.0 + math.cos(math.pi * progress)) if opts.schedule == "cosine" else 1.0
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"] * factor


def _fingerprint(net: QATNetwork, opts: TrainOptions) -> dict:
    """What a checkpoint must match to be resumed: the network, the hardware and the options."""
    return {"source_sha256": source_sha256(net.graph.source) if net.graph.source else "",
            "config": net.config.to_dict(), "quantize": asdict(net.options),
            "options": {k: v for k, v in asdict(opts).items() if k != "epochs"}}


def save_checkpoint(path: str | Path, net: QATNetwork, optimizer, epoch: int, history: list[dict],
                    opts: TrainOptions) -> Path:
    """Write the training state after ``epoch`` epochs (atomically; replaces the previous checkpoint)."""
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "net": net.state_dict(), "optimizer": optimizer.state_dict(), "history": history,
                "fingerprint": _fingerprint(net, opts)}, buffer)
    return write_bytes(path, buffer.getvalue(), overwrite=True)


def load_checkpoint(path: str | Path, net: QATNetwork, optimizer, opts: TrainOptions) -> tuple[int, list[dict]]:
    """Restore a checkpoint into ``net`` and ``optimizer``; returns (epochs done, history)."""
    try:
        state = torch.load(path, weights_only=True)
        saved = state["fingerprint"]
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        raise ModelError(f"{path}: not a training checkpoint of accel ({type(exc).__name__})") from None
    if saved != _fingerprint(net, opts):
        raise ConfigError(f"{path}: the checkpoint was made for another network, configuration or training "
                          f"options; rerun without --resume after deleting it")
    net.load_state_dict(state["net"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"]), list(state["history"])


def train(net: QATNetwork, x: np.ndarray, y: np.ndarray, opts: TrainOptions | None = None, *,
          checkpoint: str | Path | None = None, resume: bool = False, progress: bool = False) -> list[dict]:
    """Fine-tune ``net`` on images ``x`` (float, normalized as the network expects) and labels ``y``.

    Parameters
    ----------
    net : QATNetwork
    x, y : numpy.ndarray
    opts : TrainOptions
    checkpoint : path, optional
        Written after every epoch; with ``resume`` training continues from it when it exists.
    resume : bool
    progress : bool
        A progress bar per epoch with the running loss and accuracy.

    Returns
    -------
    list of dict
        Per epoch: ``epoch``, ``loss``, ``accuracy`` (running, on the training images), ``seconds``.
    """
    opts = opts or TrainOptions()
    torch.manual_seed(opts.seed)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int64)
    teacher = run_float(net.graph, x)[net.graph.outputs[0]] if opts.distill else None
    optimizer = _optimizer(net, opts)
    done, history = 0, []
    if resume and checkpoint is not None and Path(checkpoint).exists():
        done, history = load_checkpoint(checkpoint, net, optimizer, opts)
    net.train()
    for epoch in range(done, opts.epochs):
        start = time.perf_counter()
        order = np.random.default_rng([opts.seed, epoch]).permutation(len(x))
        batches = range(0, len(x), opts.batch_size)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(batches, desc=f"epoch {epoch + 1}/{opts.epochs}", unit="batch", leave=False)
            batches = bar
        total_loss, correct, seen = 0.0, 0, 0
        steps = math.ceil(len(x) / opts.batch_size)
        for step, first in enumerate(batches):
            _set_rates(optimizer, opts, (epoch * steps + step) / (opts.epochs * steps))
            idx = order[first:first + opts.batch_size]
            labels = torch.as_tensor(y[idx])
            logits = net(net.quantize_input(x[idx]))
            loss = F.cross_entropy(logits, labels)
            if teacher is not None:
                t = opts.temperature
                soft = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(torch.as_tensor(teacher[idx]) / t, 1),
                                reduction="batchmean") * t * t
                loss = 0.5 * loss + 0.5 * soft
            if opts.sparsity > 0:
                loss = loss + opts.sparsity * sum(a.abs().mean() for a in net.activations())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.detach().argmax(1) == labels).sum())
            seen += len(idx)
            if bar is not None:
                bar.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{100 * correct / seen:.1f}%")
        if bar is not None:
            bar.close()
        history.append({"epoch": epoch + 1, "loss": total_loss / max(seen, 1),
                        "accuracy": 100.0 * correct / max(seen, 1), "seconds": time.perf_counter() - start})
        if checkpoint is not None:
            save_checkpoint(checkpoint, net, optimizer, epoch + 1, history, opts)
    net.eval()
    return history


def _output_scale(model: Model, name: str) -> np.ndarray:
    """Integer output per real unit: ``2^(e_x + e_w[n])`` for raw accumulators, ``2^e`` otherwise."""
    last = model.producer(name)
    if model.tensors[name].exponent is None:
        e_x = model.tensors[last.inputs[0]].exponent
        return np.exp2(e_x + np.asarray(last.arrays["weight_exponent"], np.float64))
    return np.full(model.tensors[name].shape[0], math.ldexp(1.0, model.tensors[name].exponent))


def check_export(net: QATNetwork, model: Model, x: np.ndarray, y: np.ndarray | None = None, *,
                 batch_size: int = 250) -> dict:
    """Run ``x`` through the trained network in float64 and ``model`` through the engine; compare.

    Returns
    -------
    dict
        ``images``, ``equal_logits`` (images whose output accumulators are all equal) and
        ``equal_predictions`` (images with the same top-1 class); with labels ``y`` also
        ``top1``, the engine's accuracy in percent.
    """
    from ...datapath import quantize_input
    from ...engine import Engine

    engine = Engine(model)
    out = model.outputs[0]
    acc_scale = _output_scale(model, out)
    in_info = model.tensors[model.inputs[0]]
    lo, hi = model.config.act_range(True)
    dtype = next(net.parameters()).dtype
    net64 = net.to(torch.float64)
    equal_logits = equal_pred = correct = 0
    try:
        with torch.no_grad():
            for first in range(0, len(x), batch_size):
                xb = np.asarray(x[first:first + batch_size])
                ints = engine.run(quantize_input(xb, in_info.exponent, lo, hi).astype(np.dtype(in_info.dtype)))[out]
                real = net64(net64.quantize_input(xb), plan=model).numpy()
                acc = real * acc_scale[None, :]
                equal_logits += int(np.all(acc == ints, axis=1).sum())
                predicted = (ints / acc_scale[None, :]).argmax(1)
                equal_pred += int((predicted == real.argmax(1)).sum())
                if y is not None:
                    correct += int((predicted == np.asarray(y[first:first + batch_size])).sum())
    finally:
        net.to(dtype)
    result = {"images": int(len(x)), "equal_logits": equal_logits, "equal_predictions": equal_pred}
    if y is not None:
        result["top1"] = 100.0 * correct / max(len(x), 1)
    return result


def export(net: QATNetwork, check_x: np.ndarray | None = None,
           check_y: np.ndarray | None = None) -> tuple[Model, dict | None]:
    """The integer model of the trained parameters, with the proof that the engine agrees on ``check_x``.

    Raises
    ------
    ModelError
        The engine's logits differ from the trained network's on some image (accumulator overflow).
    """
    model = net.plan()
    result = None
    if check_x is not None:
        result = check_export(net, model, check_x, check_y)
        if result["equal_logits"] != result["images"]:
            raise ModelError(f"exported model: the engine's logits differ from the trained network's on "
                             f"{result['images'] - result['equal_logits']} of {result['images']} images "
                             f"(accumulator overflow?)")
    return model, result
