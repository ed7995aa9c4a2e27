"""``accel eval``: top-1 of an integer model (or an ONNX network) against its float network."""

from __future__ import annotations

import argparse
import json

from ..errors import UsageError
from ..report import Column, Table

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
    p.add_argument("--backend", choices=("fast", "reference", "torch", "cuda"), default="fast",
                   help="engine backend, all bit-exact: fast (onnxruntime, default), reference (numba), "
                        "torch (PyTorch on the CPU), cuda (PyTorch on a GPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object (with the engine's backend, "
                   "CPU flags, chosen kernels and per-layer paths) instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..frontend.workflow import evaluate_file

    if not str(args.model).lower().endswith(".onnx"):
        given = [opt for opt, value in (("--calib", args.calib), ("--config", args.config)) if value]
        if given:
            verb = "apply" if len(given) > 1 else "applies"
            raise UsageError(f"{' and '.join(given)} {verb} only to an .onnx model, quantized on the fly; "
                             f"{args.model} is already quantized")
    from ..perf import estimate

    result = evaluate_file(args.model, args.data, calib=args.calib, config_path=args.config,
                           progress=not args.json, backend=args.backend)
    cost = estimate(result.integer_model).inference_summary()
    print(json.dumps({**result.to_dict(), "cost": cost}) if args.json else result_text(result, cost))
    return 0


def cost_line(cost: dict) -> str:
    return (f"per inference on the {cost['array']} array at {cost['clock_mhz']:g} MHz: {cost['cycles']:,} cycles "
            f"({cost['time_us']:,.1f} us), {cost['energy_uj']:.3f} uJ; weights {cost['bits_per_weight']:.2f} "
            f"bits each with LUTs, shifts and biases (accel perf MODEL for the breakdown)")


def result_text(result, cost: dict | None = None) -> str:
    """Top-1 and agreement, the cost of an inference, then the SQNR of every layer as a table."""
    def pct(v):
        return "n/a" if v is None else f"{v:.2f}%"

    lines = [f"model {result.model} on {result.data} ({result.images} images)",
             Table(["quantity", Column("top-1", align="right")],
                   [("float top-1", pct(result.float_top1)), ("quantized top-1", pct(result.quant_top1)),
                    ("agreement", pct(result.agreement))]).text(header=False)]
    if cost is not None:
        lines.append(cost_line(cost))
    if result.layers:
        sqnr = Table([Column("layer"), Column("op"),
                      Column("SQNR (dB)", ".1f", "right", missing="exact")],
                     [(layer["name"], layer["op"], layer["sqnr_db"]) for layer in result.layers])
        lines += ["per-layer SQNR:", sqnr.text()]
    return "\n".join(lines)
