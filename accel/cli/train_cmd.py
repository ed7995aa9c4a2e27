"""``accel train``: quantization-aware training of an ONNX network, exported bit-exact."""

from __future__ import annotations

import argparse

from .args import non_negative_float, non_negative_int, positive_float, positive_int

__all__ = ["register", "run", "add_run_arguments"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..frontend.calibrate import DEFAULT_METHOD, METHODS
    from ..frontend.qat import SCHEDULES, TrainOptions

    defaults = TrainOptions()
    p = sub.add_parser("train", help="quantization-aware training of an ONNX network",
                       description="Quantize MODEL.onnx as 'accel quantize' does, then fine-tune it through "
                                   "the integer arithmetic (straight-through gradients): latent weights, "
                                   "power-of-two scales of weights and activations (LSQ), optionally the LUT "
                                   "levels. The exported model gives the trained network's logits exactly "
                                   "through the engine (checked on DATA's test split). A checkpoint "
                                   "OUT.qmodel.ckpt is kept after every epoch until the model is written.")
    p.add_argument("model", metavar="MODEL.onnx", help="trained float network (ONNX)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.qmodel", help="integer model to write")
    p.add_argument("--train", required=True, metavar="DATA",
                   help="training data: mnist5k, digits (their training split) or an .npz with x and y")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration data of the starting point (default: the bundled model's data set)")
    p.add_argument("--config", metavar="CFG.toml", help="accelerator configuration (default: the defaults)")
    p.add_argument("--weight-bits", type=int, metavar="N", help="weight code width 2..8 (overrides the config)")
    p.add_argument("--act-bits", type=int, metavar="N", help="activation width 2..8 (overrides the config)")
    p.add_argument("--epochs", type=positive_int, default=defaults.epochs, metavar="N",
                   help=f"passes over the training set (default {defaults.epochs})")
    p.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, metavar="N",
                   help=f"images per step (default {defaults.batch_size})")
    p.add_argument("--lr", type=positive_float, default=defaults.lr, metavar="RATE",
                   help=f"Adam learning rate of the latent weights and biases (default {defaults.lr:g})")
    p.add_argument("--schedule", choices=SCHEDULES, default=defaults.schedule,
                   help=f"learning rates constant or decayed to 0 along a cosine (default {defaults.schedule})")
    p.add_argument("--calib-method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"calibration of the starting activation exponents (default {DEFAULT_METHOD}; mse "
                        f"helps at 4-bit activations, docs/QAT.md)")
    p.add_argument("--learn-lut", action="store_true", help="train the LUT levels (int8 codebooks) too")
    p.add_argument("--learn-offsets", action="store_true",
                   help="learn integer activation offsets (LSQ+, MSE-initialised) on signed tensors between "
                        "conv/linear layers, folded into biases and pad values")
    p.add_argument("--fixed-scales", action="store_true", help="keep the post-training power-of-two scales")
    p.add_argument("--distill", action="store_true", help="learn from the float network's logits too")
    p.add_argument("--sparsity", type=non_negative_float, default=0.0, metavar="L1",
                   help="weight of an L1 penalty on the activations (more zeros; default 0)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """``--seed``, ``--resume`` and ``--force``: shared by the commands that train."""
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the image order (default 0)")
    p.add_argument("--resume", action="store_true", help="continue from OUT.qmodel.ckpt after an interruption")
    p.add_argument("--force", action="store_true", help="overwrite OUT.qmodel if it exists")


def run(args: argparse.Namespace) -> int:
    from ..frontend.qat import TrainOptions
    from ..frontend.qat.workflow import train_file

    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, learn_lut=args.learn_lut,
                           learn_scales=not args.fixed_scales, learn_offsets=args.learn_offsets,
                           schedule=args.schedule, distill=args.distill, sparsity=args.sparsity, seed=args.seed)
    _, summary = train_file(args.model, args.output, train_data=args.train, calib=args.calib,
                            config_path=args.config, weight_bits=args.weight_bits, act_bits=args.act_bits,
                            calib_method=args.calib_method, options=options, resume=args.resume,
                            overwrite=args.force, progress=True)
    print(summary)
    return 0
