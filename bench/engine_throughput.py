"""Engine throughput against onnxruntime (int8 QDQ and float), model by model.

Models: every bundled network (quantized by the front end on its own data set),
a held-out MLP on MNIST (784-512-512-10, random weights, calibrated on mnist5k)
and two ImageNet-scale networks at 224x224 with random weights (ResNet-18 and
MobileNetV2 after torchvision's definitions, ``bench/imagenet_models.py``),
quantized by the front end on random calibration images. Per model and batch
size, in one process with the same thread count (2 by default):

* accel ``fast`` (onnxruntime graphs, every layer on its exact path), and the
  same with the float paths only where an integer kernel was chosen,
* accel ``torch`` (PyTorch on the CPU, im2col + exact float GEMM),
* accel ``reference`` (numba) on the MNIST-sized models,
* onnxruntime on the float ONNX network, and on its int8 QDQ quantization
  (``quantize_static``, per-channel weights, u8 activations).

Repetitions are interleaved (each executor takes a turn per round: a pause, a
call that wakes its threads, a timed block of calls) and the median of the
rounds is reported. accel fast and the two onnxruntime executors, whose ratios
are the targets, take their rounds alone (at batch 1 with onnxruntime's one-thread
sessions too, and the ratio is to the faster of its two thread counts); the other
executors then take a third as many rounds beside accel fast, and their ratios
are to that run of it. The
CPU's flags, the integer kernels' self-test verdicts and each model's layer
paths are printed as measured; the results go to ``docs/BENCHMARKS.md`` between
the ``engine`` markers with the machine.

Usage: ``python bench/engine_throughput.py [--quick] [--repeats 5] [--no-write] [--profile MODEL]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import date
from pathlib import Path

THREADS = int(os.environ.get("ACCEL_BENCH_THREADS", "2"))
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, str(THREADS))
# OpenMP threads (torch, numba) that spin after a parallel region would take the cores from the next
# executor of an interleaved round: let them sleep.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

from accel.engine import Engine  # noqa: E402
from accel.engine.capability import chosen_kernels  # noqa: E402
from accel.ir import layer_macs  # noqa: E402
from accel.report import Column, Table, write_text  # noqa: E402

ACCEL_FAST = "accel fast"
ORT_INT8 = "onnxruntime int8 QDQ"
ORT_FLOAT = "onnxruntime float"
#: The executors whose ratios are the issue's targets: interleaved in rounds of their own.
TARGET_EXECUTORS = (ACCEL_FAST, ORT_INT8, ORT_FLOAT)


class BenchModel:
    """One network: its float ONNX file, its integer model and float calibration images."""

    def __init__(self, name: str, onnx_path: Path, model, calib: np.ndarray, small: bool):
        self.name, self.onnx_path, self.model, self.calib, self.small = name, onnx_path, model, calib, small
        info = model.tensors[model.inputs[0]]
        self.input_name, self.shape, self.dtype, self.exponent = model.inputs[0], info.shape, info.dtype, \
            info.exponent
        self.range = info.range
        self.macs = sum(layer_macs(model, layer) for layer in model.layers)

    def inputs(self, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Integer inputs for accel and the same values as floats for onnxruntime."""
        x = np.random.default_rng(seed).integers(*self.range, (batch,) + self.shape, endpoint=True)
        return x.astype(self.dtype), (x * 2.0 ** -(self.exponent or 0)).astype(np.float32)


def load_models(workdir: Path, quick: bool, only: set[str] | None = None) -> list[BenchModel]:
    from imagenet_models import IMAGE_SHAPE, IMAGENET_MODELS, MNIST_MODELS, export_onnx

    from accel.data import load_dataset
    from accel.frontend import quantize_onnx
    from accel.frontend.onnx_import import import_onnx
    from accel.frontend.quantize import quantize_graph
    from accel.frontend.workflow import MODELS_DIR, bundled_models

    models = []
    for name, info in bundled_models().items():
        if only and name not in only:
            continue
        calib = load_dataset(info["data"], "calib").x[:256]
        path = MODELS_DIR / f"{name}.onnx"
        models.append(BenchModel(name, path, quantize_onnx(path, calib), calib, True))
    for name in MNIST_MODELS:  # held out: small like the bundled ones, so measured the same way
        if only and name not in only:
            continue
        path = workdir / f"{name}.onnx"
        export_onnx(name, path)
        calib = load_dataset("mnist5k", "calib").x[:256]
        models.append(BenchModel(name, path, quantize_onnx(path, calib), calib, True))
    for name in IMAGENET_MODELS:
        if only and name not in only:
            continue
        path = workdir / f"{name}.onnx"
        export_onnx(name, path)
        calib = np.random.default_rng(1).standard_normal((8 if quick else 32,) + IMAGE_SHAPE).astype(np.float32)
        models.append(BenchModel(name, path, quantize_graph(import_onnx(path), calib), calib, False))
    return models


def ort_session(path: Path, threads: int = THREADS):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def ort_int8_model(bm: BenchModel, workdir: Path) -> Path:
    """onnxruntime's own int8 quantization (QDQ, per-channel s8 weights, u8 activations) of the float net."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self):
            name = ort_session(bm.onnx_path).get_inputs()[0].name
            self.items = iter([{name: bm.calib[i:i + 8]} for i in range(0, min(len(bm.calib), 32), 8)])

        def get_next(self):
            return next(self.items, None)

    pre, out = workdir / f"{bm.name}_pre.onnx", workdir / f"{bm.name}_int8.onnx"
    quant_pre_process(str(bm.onnx_path), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def executors(bm: BenchModel, workdir: Path, batch: int) -> dict:
    """name -> zero-argument callable running one batch."""
    x_int, x_float = bm.inputs(batch)
    fast = Engine(bm.model)
    runs = {ACCEL_FAST: lambda: fast.run(x_int)}
    if {"int8", "qconv"} & set(fast.layer_paths().values()):  # an integer kernel was chosen somewhere
        floats = Engine(bm.model, int_kernels=False)
        runs["accel fast, float paths only"] = lambda: floats.run(x_int)
    if bm.small:  # the 224x224 networks: the torch backend is measured on the GPU (bench/engine_gpu.py)
        torch_engine = Engine(bm.model, "torch")
        runs["accel torch (cpu)"] = lambda: torch_engine.run(x_int)
        ref = Engine(bm.model, "reference")
        runs["accel reference (numba)"] = lambda: ref.run(x_int)
    int8 = ort_int8_model(bm, workdir)
    sessions = [(ORT_FLOAT, ort_session(bm.onnx_path)), (ORT_INT8, ort_session(int8))]
    if batch == 1 and THREADS > 1:  # the better of both counts is the reference: its pools are bimodal on tiny calls
        sessions += [(one_thread(ORT_FLOAT), ort_session(bm.onnx_path, 1)),
                     (one_thread(ORT_INT8), ort_session(int8, 1))]
    for label, sess in sessions:
        feed = {sess.get_inputs()[0].name: x_float}
        runs[label] = lambda s=sess, f=feed: s.run(None, f)
    return runs


def one_thread(label: str) -> str:
    """The name of an onnxruntime executor's one-thread session (measured at batch 1)."""
    return f"{label}, 1 thread"


def check_exact(bm: BenchModel) -> None:
    """The backends agree bit for bit on this model (a few images)."""
    x_int, _ = bm.inputs(4, seed=5)
    want = Engine(bm.model, "torch").run(x_int, return_all=True)
    for engine in (Engine(bm.model), Engine(bm.model, int_kernels=False)):
        got = engine.run(x_int, return_all=True)
        bad = [t for t in want if not np.array_equal(got[t], want[t])]
        if bad:
            raise SystemExit(f"{bm.name}: backends differ on {bad[:3]}")


#: Pause before each executor's turn in a round: the previous executor's thread pool (onnxruntime's spinning
#: workers, OpenMP's) goes idle instead of competing with the next one for the 2 cores. 50 ms was not enough
#: behind the torch and numba executors: with 0.3 s the fast backend measured 2x more on mlp_mnist and
#: mobilenet_mnist at batch 256 (454k -> 909k and 102k -> 243k images/s, onnxruntime int8 1.7x), 2026-12-01.
SETTLE_S = 0.3
#: Least wall time of one timed block: fast executors run several calls per block, so that the clock's and the
#: thread pool's wake-up overheads do not dominate.
BLOCK_S = 0.05


def interleaved_medians(runs: dict, repeats: int) -> dict[str, float]:
    """Median seconds per call of each executor over ``repeats`` interleaved rounds.

    In each round every executor takes its turn: a pause (:data:`SETTLE_S`), one untimed call that wakes its
    threads (for calls shorter than 0.2 s), then a timed block of calls lasting at least :data:`BLOCK_S`. Timing
    single calls back to back instead measured each executor against the previous one's spinning threads: on 2
    cores that cost the fast executors 2-5x, and more than it cost the slow ones."""
    calls = {}
    for name, fn in runs.items():
        fn()  # warm-up: numba compilation, session initialization, allocator
        t0 = time.perf_counter()
        fn()
        calls[name] = max(1, min(100, int(BLOCK_S / max(time.perf_counter() - t0, 1e-6))))
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(max(repeats, 1)):
        for name, fn in runs.items():
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            fn()
            if time.perf_counter() - t0 < 0.2:
                t0 = time.perf_counter()
                for _ in range(calls[name]):
                    fn()
                times[name].append((time.perf_counter() - t0) / calls[name])
            else:  # a long call: waking the threads is noise
                times[name].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def profile_fast(bm: BenchModel, batch: int, repeats: int = 3) -> list[tuple[str, float, float]]:
    """onnxruntime's profiler over accel fast's graph: (op type, ms per batch, share) by total time."""
    import onnxruntime as ort

    from accel.engine.onnx_lowering import lower_layers, segment_inputs, session_config
    from accel.engine.runner import segment_feed

    m = bm.model
    proto = lower_layers(m, m.layers, list(m.inputs), list(m.outputs))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = THREADS
    opts.enable_profiling = True
    for key, value in session_config(proto).items():
        opts.add_session_config_entry(key, value)
    opts.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"accel_profile_{bm.name}")
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    x_int, _ = bm.inputs(batch)
    for _ in range(repeats + 1):
        sess.run(None, segment_feed(segment_inputs(proto), {m.inputs[0]: x_int}))
    path = Path(sess.end_profiling())
    events = json.loads(path.read_text())
    path.unlink()
    per_op: Counter = Counter()
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values()) or 1
    return [(op, us / 1e3 / (repeats + 1), us / total) for op, us in per_op.most_common()]


def machine() -> str:
    import numba
    import onnxruntime
    import torch

    info = chosen_kernels()
    return (f"{info['cpu']}, {os.cpu_count()} cores visible, {THREADS} threads used; CPU flags (of those that "
            f"decide int8 kernels): {', '.join(info['flags']) or 'none'}; Python {platform.python_version()}, "
            f"numpy {np.__version__}, numba {numba.__version__}, onnxruntime {onnxruntime.__version__}, "
            f"torch {torch.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="batch 256 and 1 on the bundled models, the ImageNet "
                    "ones at batch 8 and 1, 2 rounds")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved rounds (median reported)")
    ap.add_argument("--imagenet-batch", type=int, default=32, help="large batch for the 224x224 networks")
    ap.add_argument("--only", help="comma-separated model names")
    ap.add_argument("--profile", metavar="MODELS", default="mobilenet_mnist,resnet18_224",
                    help="comma-separated models whose accel graph is profiled (onnxruntime profiler) at their "
                    "large batch")
    ap.add_argument("--no-write", action="store_true", help="do not update docs/BENCHMARKS.md")
    args = ap.parse_args(argv)
    repeats = 2 if args.quick else args.repeats
    imagenet_batch = 8 if args.quick else args.imagenet_batch

    import numba
    import torch

    numba.set_num_threads(THREADS)
    torch.set_num_threads(THREADS)
    kernels = chosen_kernels()
    print(machine())
    print("integer kernels (run-time self-test):",
          ", ".join(f"{k}: {v}" for k, v in kernels["int_kernels"].items()))
    rows, summary, paths_lines, loads = [], {}, [], [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        models = load_models(workdir, args.quick, set(args.only.split(",")) if args.only else None)
        for bm in models:
            check_exact(bm)
            counts = Counter(Engine(bm.model).layer_paths().values())
            paths_lines.append(f"- {bm.name} ({bm.macs / 1e6:,.1f} M MACs/image): "
                               + ", ".join(f"{n} {p}" for p, n in sorted(counts.items())))
            print(paths_lines[-1])
            for batch in ((256, 1) if bm.small else (imagenet_batch, 1)):
                rounds = repeats if bm.small else max(2, repeats // 2)
                runs = executors(bm, workdir, batch)
                # the three executors of the targets in rounds of their own, then the others beside accel fast:
                # the slow torch and numba executors had moved single ratios by 10-15% between runs
                target_names = [*TARGET_EXECUTORS, *(one_thread(k) for k in (ORT_INT8, ORT_FLOAT))]
                targets = interleaved_medians({k: runs[k] for k in target_names if k in runs}, rounds)
                others = {k: v for k, v in runs.items() if k not in targets}
                beside = interleaved_medians({ACCEL_FAST: runs[ACCEL_FAST], **others}, max(2, rounds // 3))
                loads.append(os.getloadavg()[0])
                ips = {k: batch / v for k, v in {**beside, **targets}.items()}
                for k, v in ips.items():
                    fast = ips[ACCEL_FAST] if k in targets else batch / beside[ACCEL_FAST]
                    rows.append((bm.name, batch, k, v, v * bm.macs * 2 / 1e9, fast / v))
                best = {k: max(ips[k], ips.get(one_thread(k), 0.0)) for k in (ORT_INT8, ORT_FLOAT)}
                summary.setdefault(bm.name, [bm.name]).extend(
                    [batch, ips[ACCEL_FAST], ips[ACCEL_FAST] / best[ORT_INT8], ips[ACCEL_FAST] / best[ORT_FLOAT]])
                print(f"{bm.name} batch {batch}: " + ", ".join(f"{k} {v:,.1f}/s" for k, v in ips.items()))
        profiles = [(bm.name, batch, profile_fast(bm, batch)) for bm in models
                    if bm.name in args.profile.split(",") for batch in [256 if bm.small else imagenet_batch]]

    def ratio(v):
        return f"{v:.2f}x"

    detail = Table([Column("model"), Column("batch", align="right"), Column("executor"),
                    Column("images/s", ",.1f", "right"), Column("GOP/s", ",.1f", "right"),
                    Column("accel fast / this", ratio, "right")], rows)
    per_batch = [Column("batch", align="right"), Column("accel fast images/s", ",.1f", "right"),
                 Column("accel / ort int8", ratio, "right"), Column("accel / ort float", ratio, "right")]
    short = Table([Column("model")] + per_batch + per_batch, list(summary.values()))  # large batch, then batch 1
    by_batch = [(r[0], r[i], r[i + 2], r[i + 3]) for r in summary.values() for i in (1, 5)]
    worst = min(by_batch, key=lambda r: r[2])
    worst_float = min(by_batch, key=lambda r: r[3])
    lines = [f"- worst accel fast / onnxruntime int8 QDQ: **{worst[2]:.2f}x** ({worst[0]}, batch {worst[1]})",
             f"- worst accel fast / onnxruntime float: **{worst_float[3]:.2f}x** ({worst_float[0]}, batch "
             f"{worst_float[1]})"]
    prof = ""
    for name, batch, profile in profiles:
        ptable = Table([Column("op"), Column("ms per batch", ",.2f", "right"), Column("share", ".0%", "right")],
                       profile)
        prof += (f"\nonnxruntime profiler, accel fast graph of {name}, batch {batch} (kernel time by op):\n\n"
                 f"{ptable.markdown()}\n")
        print(f"{name}, batch {batch}:\n{ptable.text()}")
    print(short.text())
    print("\n".join(lines))
    if not args.no_write:
        section = (f"### Engine throughput ({date.today().isoformat()})\n\n"
                   f"Machine: {machine()}.\nInteger kernels (run-time self-test): "
                   + ", ".join(f"{k}: {v}" for k, v in kernels["int_kernels"].items())
                   + f".\nCommand: `.venv/bin/python bench/engine_throughput.py{' --quick' if args.quick else ''}`"
                   f" (`make bench`); median of {repeats} interleaved rounds ({max(2, repeats // 2)} for the "
                   f"ImageNet-scale networks, at batch {imagenet_batch} and 1; the others at 256 and 1), each "
                   f"executor's turn a {SETTLE_S * 1e3:.0f} ms pause, one untimed call and a timed block of at least "
                   f"{BLOCK_S * 1e3:.0f} ms; accel fast and the two onnxruntime executors in rounds of their own, the "
                   f"other executors in a third as many beside accel fast; at batch 1 the ratios are to the faster of "
                   f"onnxruntime's one- and {THREADS}-thread sessions; load average "
                   f"(1 minute, os.getloadavg) {min(loads):.1f} to {max(loads):.1f} while it ran.\n\n"
                   "Layer paths of the fast backend:\n\n"
                   + "\n".join(paths_lines) + f"\n\n{short.markdown()}\n\n" + "\n".join(lines) + "\n" + prof
                   + f"\nAll executors:\n\n{detail.markdown()}\n")
        write_section(ROOT / "docs" / "BENCHMARKS.md", "engine", section)
    return 0


def write_section(path: Path, key: str, body: str) -> None:
    """Replace the text between ``<!-- key:begin -->`` and ``<!-- key:end -->`` (appended if absent)."""
    begin, end = f"<!-- {key}:begin -->", f"<!-- {key}:end -->"
    header = "# Benchmarks\n\nMeasured numbers, with the machine and the command.\n"
    text = path.read_text() if path.exists() else header
    block = f"{begin}\n{body}{end}"
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    write_text(path, text, overwrite=True)  # the results file is meant to be updated in place


if __name__ == "__main__":
    sys.exit(main())
