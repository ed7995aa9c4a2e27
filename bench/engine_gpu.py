"""The ``cuda`` backend on a GPU: bit-exactness against the CPU backends, then images/s.

For each ``.qmodel`` in ``--models``: the cuda backend's outputs (every tensor) are
compared with the CPU ``fast`` backend on a batch, and with the numba ``reference``
on two images; then images/s of the cuda backend (end to end: host to device,
the network, device to host, median of ``--repeats`` after a warm-up), of the CPU
``fast`` engine, and of onnxruntime's CPU float session on the float network
(``--onnx`` files, named after the models), all on this machine. Writes one JSON
file (``--out``) and prints it.

Usage: ``python bench/engine_gpu.py --models DIR --out results.json [--batch 256] [--onnx DIR] [--force]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from accel.engine import Engine  # noqa: E402
from accel.engine.capability import chosen_kernels  # noqa: E402
from accel.errors import OutputError  # noqa: E402
from accel.ir import load_model  # noqa: E402
from accel.report import check_output, write_json  # noqa: E402


def median_rate(fn, images: int, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return images / float(np.median(times))


def exactness(model, x: np.ndarray, backend: str) -> dict:
    """Tensors and values compared between ``backend`` and fast (batch) and reference (two images)."""
    cuda = Engine(model, backend).run(x, return_all=True)
    fast = Engine(model).run(x, return_all=True)
    ref = Engine(model, "reference").run(x[:2], return_all=True)
    diff_fast = sum(int((cuda[t] != fast[t]).sum()) for t in fast)
    diff_ref = sum(int((cuda[t][:2] != ref[t]).sum()) for t in ref)
    return {"images_vs_fast": len(x), "values_vs_fast": int(sum(v.size for v in fast.values())),
            "mismatches_vs_fast": diff_fast, "images_vs_reference": 2, "mismatches_vs_reference": diff_ref}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", required=True, type=Path)
    ap.add_argument("--onnx", type=Path, help="folder of float .onnx files named like the models")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--cpu-batch", type=int, default=32)
    ap.add_argument("--exact-batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--backend", default="cuda", choices=("cuda", "torch"),
                    help="torch: the same code on the CPU (a dry run of this script without a GPU)")
    args = ap.parse_args(argv)
    try:  # before the run, not after it
        check_output(args.out, overwrite=args.force)
    except OutputError as exc:
        print(f"engine_gpu: error: {exc}", file=sys.stderr)
        return 2

    import onnxruntime as ort
    import torch

    threads = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if args.backend == "cuda" else "none (torch on the CPU)"
    result = {"gpu": gpu, "torch": torch.__version__, "onnxruntime": ort.__version__,
              "cpu_threads": threads, "python": platform.python_version(), "cpu": chosen_kernels(), "models": {}}
    for path in sorted(args.models.glob("*.qmodel")):
        model = load_model(path)
        info = model.tensors[model.inputs[0]]
        rng = np.random.default_rng(0)
        x = rng.integers(*info.range, (args.batch,) + info.shape, endpoint=True).astype(info.dtype)
        entry = {"exact": exactness(model, x[:args.exact_batch], args.backend),
                 "paths": Engine(model, args.backend).layer_paths()}
        cuda = Engine(model, args.backend)
        entry["cuda_images_per_s"] = median_rate(partial(cuda.run, x), args.batch, args.repeats)
        xc = x[:args.cpu_batch]
        fast = Engine(model)
        entry["cpu_fast_images_per_s"] = median_rate(partial(fast.run, xc), len(xc), max(2, args.repeats // 2))
        onnx_path = args.onnx / f"{path.stem}.onnx" if args.onnx else None
        if onnx_path is not None and onnx_path.exists():
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            sess = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
            feed = {sess.get_inputs()[0].name: (xc * 2.0 ** -(info.exponent or 0)).astype(np.float32)}
            entry["cpu_ort_float_images_per_s"] = median_rate(partial(sess.run, None, feed), len(xc),
                                                              max(2, args.repeats // 2))
        result["models"][path.stem] = entry
        print(path.stem, json.dumps({k: v for k, v in entry.items() if k != "paths"}), flush=True)
    write_json(args.out, result, overwrite=args.force, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "models"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
