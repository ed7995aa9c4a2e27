"""``accel search-precision``: per-layer weight and activation bits for a budget, optionally fine-tuned."""

from __future__ import annotations

import argparse

from .args import non_negative_int
from .train_cmd import add_run_arguments

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search-precision", help="mixed-precision search for a storage or energy budget",
                       description="Choose 2, 3 or 4 (8 on 8-bit hardware) bits per weight for every "
                                   "conv/linear layer, and for an energy budget 4 to act_bits bits for the "
                                   "activation it writes, so that the network meets BUDGET, lowering first the "
                                   "layers whose outputs the float network's predictions depend on least "
                                   "(measured through the engine on calibration images). With --train and "
                                   "--epochs the result is fine-tuned with self-distillation from the float "
                                   "network (the widths stay) and exported bit-exact.")
    p.add_argument("model", metavar="MODEL.onnx", help="trained float network (ONNX)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.qmodel", help="integer model to write")
    p.add_argument("--budget", required=True, metavar="BUDGET",
                   help="bits per weight counting LUT tables, shifts and biases (2.5 or 2.5bpw), bytes of "
                        "weight memory (12000B, 12kB, 12KiB) or energy per inference from accel perf's model "
                        "with packed activations and codes (2.5uJ, 800nJ)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration data (default: the bundled model's data set)")
    p.add_argument("--config", metavar="CFG.toml", help="accelerator configuration (default: the defaults)")
    p.add_argument("--act-bits", type=int, metavar="N", help="activation width 2..8 (overrides the config)")
    p.add_argument("--train", metavar="DATA", help="fine-tune on this data's training split (with --epochs)")
    p.add_argument("--epochs", type=non_negative_int, default=0, metavar="N",
                   help="epochs of fine-tuning with self-distillation (default 0: none)")
    add_run_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UsageError
    from ..frontend.qat import TrainOptions
    from ..precision.workflow import search_file

    if args.epochs > 0 and args.train is None:
        raise UsageError("--epochs needs --train DATA (the data to fine-tune on)")
    options = TrainOptions(epochs=max(args.epochs, 1), seed=args.seed)
    _, table, summary = search_file(args.model, args.output, budget=args.budget, calib=args.calib,
                                    config_path=args.config, act_bits=args.act_bits,
                                    train_data=args.train if args.epochs > 0 else None, options=options,
                                    resume=args.resume, overwrite=args.force, progress=True)
    print(table.render("text"))
    print(summary)
    return 0
