"""``accel quantize``: a trained ONNX network to an integer model (``.qmodel``)."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from .args import column_fraction, non_negative_int, positive_int

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    from ..frontend.calibrate import DEFAULT_CALIB_SIZE, DEFAULT_METHOD, METHODS
    from ..frontend.lut import FAMILIES
    from ..frontend.quantize import DEFAULT_GRANULARITY, DEFAULT_LUT, GRANULARITIES

    p = sub.add_parser("quantize", help="quantize a trained ONNX network to an integer model",
                       description="Import MODEL.onnx, fold BatchNorm, calibrate power-of-two activation "
                                   "exponents, quantize weights to LUT codes with power-of-two scales and "
                                   "write the integer model. The defaults are the best general-purpose "
                                   "choice for 4-bit weights and 8-bit activations.")
    p.add_argument("model", metavar="MODEL.onnx", help="trained network (ONNX opset >= 13)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.qmodel", help="integer model to write")
    p.add_argument("--config", metavar="CFG.toml", help="accelerator configuration (default: the defaults)")
    p.add_argument("--calib", metavar="DATA",
                   help="calibration data: mnist5k, digits (their training split) or an .npz with x "
                        "normalized as the network expects, and y; required except for the bundled models, "
                        "whose index names their data set. A warning says when its statistics differ "
                        "grossly from a bundled model's own data")
    p.add_argument("--lut", choices=FAMILIES, default=DEFAULT_LUT,
                   help=f"LUT family of the weight levels (default {DEFAULT_LUT})")
    p.add_argument("--granularity", choices=GRANULARITIES, default=DEFAULT_GRANULARITY,
                   help=f"one power-of-two weight exponent per output channel or per layer "
                        f"(default {DEFAULT_GRANULARITY})")
    p.add_argument("--weight-bits", type=int, metavar="N", help="weight code width 2..8 (overrides the config)")
    p.add_argument("--act-bits", type=int, metavar="N", help="activation width 2..8 (overrides the config)")
    p.add_argument("--lut-scope", choices=("layer", "channel"),
                   help="one LUT per layer or per output channel (default: the config's, or channel "
                        "without --config)")
    p.add_argument("--levels", type=positive_int, metavar="N",
                   help="use only N distinct LUT levels (e.g. 4 or 8 on 4-bit hardware)")
    p.add_argument("--user-lut", metavar="L0,L1,...",
                   help="levels of the 'user' LUT family: comma-separated int8 values, e.g. -64,-16,0,16,64")
    p.add_argument("--calib-method", choices=METHODS, default=DEFAULT_METHOD,
                   help=f"activation exponent choice (default {DEFAULT_METHOD})")
    p.add_argument("--calib-size", type=positive_int, default=DEFAULT_CALIB_SIZE, metavar="N",
                   help=f"calibration images (default {DEFAULT_CALIB_SIZE})")
    p.add_argument("--seed", type=non_negative_int, default=0, help="calibration sampling seed (default 0)")
    _register_ptq(p)
    p.add_argument("--force", action="store_true", help="overwrite OUT.qmodel if it exists")
    p.set_defaults(func=run)


def _register_ptq(p: argparse.ArgumentParser) -> None:
    """The post-training methods (accel.frontend.ptq); none costs hardware, only quantization time."""
    from ..frontend.ptq.adaround import DEFAULT_ITERS
    from ..frontend.ptq.pipeline import BIAS_CORRECTION_MODES

    g = p.add_argument_group("post-training methods (they change weights, biases and codes only, with no "
                             "hardware cost, except --multipoint; the model stays bit-exact on every executor)")
    g.add_argument("--cle", action="store_true",
                   help="cross-layer equalization (power-of-two aware) and bias absorption before "
                        "quantization; turns ReLU6 into ReLU in the pairs it equalizes. Time: under a second")
    g.add_argument("--bias-correction", nargs="?", const="auto", choices=BIAS_CORRECTION_MODES, metavar="MODE",
                   help="remove the mean output shift that weight quantization causes; MODE is "
                        "analytic (from "
                        "BatchNorm statistics), empirical (on the calibration images, layer by layer with "
                        "the engine) or auto (analytic where "
                        "a layer's input comes from BatchNorm, empirical elsewhere; the default MODE). "
                        "Time: about a second")
    g.add_argument("--adaround", action="store_true",
                   help="AdaRound: each weight picks the LUT level below or above it to reconstruct its "
                        "layer's output on the calibration images (torch, CPU, one thread). Time: about "
                        "15-60 s for a bundled model at the default iterations")
    g.add_argument("--adaround-iters", type=positive_int, metavar="N",
                   help=f"AdaRound optimisation steps per layer (default {DEFAULT_ITERS}); time grows linearly")
    g.add_argument("--multipoint", type=column_fraction, metavar="FRACTION",
                   help="multipoint quantization (runs after AdaRound, on the residual of the final codes): per "
                        "requantized conv/linear layer, round(FRACTION x output channels) extra points, each a "
                        "second LUT-coded weight row at a finer power-of-two step, given greedily to the "
                        "channels whose output error on the calibration images drops most. Hardware cost, "
                        "unlike the methods above: each point is one more array column (more column tiles, "
                        "cycles and MACs: `accel perf` shows them) plus a shift-and-add per output in the "
                        "vector unit, and its codes in weight memory; no new arithmetic units (contract "
                        "v1.3, .qmodel version 2). Time: 5-60 s for a bundled model")


def run(args: argparse.Namespace) -> int:
    from ..frontend.workflow import quantize_file

    # Checked here, before any work: the library would only find out at the first layer.
    if args.user_lut is not None and args.lut != "user":
        raise UsageError(f"--user-lut gives the levels of the 'user' LUT family; it has no effect with "
                         f"--lut {args.lut}")
    if args.lut == "user" and args.user_lut is None:
        raise UsageError("--lut user needs --user-lut L0,L1,... (the int8 levels)")

    from ..frontend.ptq.adaround import DEFAULT_ITERS
    from ..frontend.ptq.pipeline import PTQOptions

    if args.adaround_iters is not None and not args.adaround:
        raise UsageError("--adaround-iters sets AdaRound's iterations; it needs --adaround")
    ptq = PTQOptions(cle=args.cle, bias_correction=args.bias_correction, adaround=args.adaround,
                     adaround_iters=args.adaround_iters or DEFAULT_ITERS, multipoint=args.multipoint or 0.0)
    model, summary = quantize_file(args.model, args.output, config_path=args.config, calib=args.calib,
                                   lut=args.lut, granularity=args.granularity, weight_bits=args.weight_bits,
                                   act_bits=args.act_bits, lut_scope=args.lut_scope, levels=args.levels,
                                   calib_method=args.calib_method, calib_size=args.calib_size, seed=args.seed,
                                   user_lut=args.user_lut, overwrite=args.force, progress=True, ptq=ptq)
    print(summary)
    return 0
