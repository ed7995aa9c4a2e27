"""``accel eval``: top-1 of an integer model (or an ONNX network) against its float network."""

from __future__ import annotations

import argparse
import json

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="top-1 accuracy of a .qmodel or .onnx on a data set",
                       description="Evaluate MODEL on DATA: float top-1 (onnxruntime on the source ONNX "
                                   "file), quantized top-1 through the bit-exact engine, their agreement and "
                                   "the SQNR of every layer. An .onnx model is quantized on the fly with the "
                                   "defaults of `accel quantize`. A .qmodel's float results come from the "
                                   "source ONNX file recorded in it, refused if that file changed since "
                                   "(SHA-256); a model that predates the hash is evaluated with a warning. "
                                   "Both passes stream DATA in batches.")
    p.add_argument("model", metavar="MODEL", help="integer model (.qmodel) or float network (.onnx)")
    p.add_argument("--data", required=True, metavar="DATA",
                   help="mnist5k, digits (their test split) or an .npz with x (float32 NCHW) and y")
    p.add_argument("--calib", metavar="DATA", help="calibration data for an .onnx model (default: --data's "
                   "calibration split: the training split of mnist5k or digits, the whole file of an .npz)")
    p.add_argument("--config", metavar="CFG.toml", help="accelerator configuration for an .onnx model")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frontend.workflow import evaluate_file

    result = evaluate_file(args.model, args.data, calib=args.calib, config_path=args.config,
                           progress=not args.json)
    print(json.dumps(result.to_dict()) if args.json else result.table())
    return 0
