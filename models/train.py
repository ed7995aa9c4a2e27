"""Train the bundled networks reproducibly and export them to ONNX.

Run from the repository root::

    .venv/bin/python models/train.py            # all models
    .venv/bin/python models/train.py cnn_mnist  # one model

Every model trains with a fixed seed on one CPU thread (bit-reproducible on
this torch version), is exported with :func:`accel.frontend.export.export_pytorch`
(opset 17, dynamic batch) and evaluated with onnxruntime on the fixed test
split of :func:`accel.data.load_dataset`; the ONNX files and the index with the
float accuracies go to ``accel/bundled/`` (package data of accel), the table to
``models/README.md``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from accel.data import load_dataset
from accel.frontend.export import export_pytorch
from accel.report import Column, Table, write_json, write_text

ROOT = Path(__file__).resolve().parent
BUNDLED = ROOT.parent / "accel" / "bundled"  # where the package finds them (importlib.resources)


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), act()]


class PlainCNN(nn.Module):
    """Two conv + ReLU + max-pool stages and two fully connected layers (no BatchNorm)."""

    def __init__(self, size: int, c1: int = 16, c2: int = 32, hidden: int = 64):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(c2 * (size // 4) ** 2, hidden), nn.ReLU(),
                                        nn.Linear(hidden, 10))

    def forward(self, x):
        return self.classifier(self.features(x))


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(c, c), nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.body(x) + x)


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU stem, residual blocks (Add of a skip), a strided stage, global average pool."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(*conv_bn(1, 16), nn.MaxPool2d(2), Block(16), *conv_bn(16, 32, stride=2),
                                 Block(32), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))

    def forward(self, x):
        return self.net(x)


class MobileNetCNN(nn.Module):
    """MobileNet-style: depthwise 3x3 + pointwise 1x1 pairs with BatchNorm and ReLU6."""

    def __init__(self):
        super().__init__()
        layers = conv_bn(1, 16, stride=2, act=nn.ReLU6)
        for cin, cout, stride in ((16, 32, 1), (32, 64, 2), (64, 64, 1)):
            layers += conv_bn(cin, cin, stride=stride, groups=cin, act=nn.ReLU6)
            layers += conv_bn(cin, cout, k=1, act=nn.ReLU6)
        self.net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x)


#: name -> (data set, constructor, epochs, keep BatchNorm nodes in the ONNX file, description)
MODELS = {
    "cnn_mnist": ("mnist5k", lambda: PlainCNN(28), 8, False, "plain CNN: conv-ReLU-maxpool x2, FC-ReLU, FC"),
    "resnet_mnist": ("mnist5k", ResidualCNN, 8, True, "residual CNN with BatchNorm and global average pool"),
    "mobilenet_mnist": ("mnist5k", MobileNetCNN, 10, True,
                        "depthwise-separable MobileNet-style CNN with BatchNorm and ReLU6"),
    "cnn_digits": ("digits", lambda: PlainCNN(8, 16, 32, 32), 30, False, "plain CNN on 8x8 digits"),
}

SEED = 0


#: oneDNN's CPU ISA levels, lowest first, with the /proc/cpuinfo flags each needs (a simplified ladder).
ONEDNN_ISA_LADDER = (
    ("sse41", {"sse4_1"}), ("avx", {"avx"}), ("avx2", {"avx2"}), ("avx2_vnni", {"avx2", "avx_vnni"}),
    ("avx512_core", {"avx512f", "avx512bw", "avx512vl", "avx512dq"}),
    ("avx512_core_vnni", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni"}),
    ("avx512_core_bf16", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"}),
    ("avx512_core_amx", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16", "amx_tile"}),
)


def onednn_isa() -> str:
    """The ISA oneDNN (torch's convolutions) dispatches to: the CPU's best, capped by ONEDNN_MAX_CPU_ISA."""
    try:
        flags = set(next(line for line in Path("/proc/cpuinfo").read_text().splitlines()
                         if line.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return "unknown"
    names = [name for name, _ in ONEDNN_ISA_LADDER]
    best = max((i for i, (_, need) in enumerate(ONEDNN_ISA_LADDER) if need <= flags), default=None)
    if best is None:
        return "unknown"
    cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").lower()
    if cap in names:
        best = min(best, names.index(cap))
    return names[best]


def float_kernel_signature() -> dict:
    """What decides the float kernels that training runs on: bit-reproducible only when it matches.

    torch picks its vectorised ATen kernels by CPU capability (``DEFAULT``/``AVX2``/``AVX512``,
    overridable with ATEN_CPU_CAPABILITY) and its convolutions' oneDNN kernels by ISA; retrained
    weights equal the committed ones bit for bit only where both match (checked: on an AVX-512
    machine, ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 reproduce the AVX2-trained models).
    """
    return {"machine": platform.machine(), "torch": torch.__version__.split("+")[0],
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "onednn_isa": onednn_isa()}


def train(name: str, out_dir: Path = BUNDLED) -> dict:
    """Train model ``name``, export ``out_dir/name.onnx``; return its ``models.json`` entry."""
    data_name, build, epochs, keep_bn, description = MODELS[name]
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    train_set = load_dataset(data_name, "train")
    test_set = load_dataset(data_name, "test")
    model = build()
    x = torch.from_numpy(train_set.x)
    y = torch.from_numpy(train_set.y)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=epochs * ((len(x) + 63) // 64))
    gen = torch.Generator().manual_seed(SEED)
    start = time.time()
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = perm[i:i + 64]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    seconds = time.time() - start
    path = Path(out_dir) / f"{name}.onnx"
    export_pytorch(model, train_set.x.shape[1:], path, keep_batchnorm=keep_bn, overwrite=True)

    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {session.get_inputs()[0].name: test_set.x})[0]
    top1 = float(np.mean(np.argmax(logits, 1) == test_set.y) * 100)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{name:16s} {data_name:8s} top-1 {top1:6.2f}%  params {n_params:6d}  train {seconds:5.1f} s")
    return {"data": data_name, "float_top1": round(top1, 2), "test_images": len(test_set),
            "params": n_params, "epochs": epochs, "seed": SEED, "description": description,
            "trained_on": float_kernel_signature()}


def main(argv: list[str]) -> None:
    names = argv or list(MODELS)
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(MODELS)}")
    index_path = BUNDLED / "models.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {}
    for n in names:
        index[n] = train(n)
    index = {k: index[k] for k in MODELS if k in index}
    # The index and the README are committed and regenerated in place by design.
    write_json(index_path, index, overwrite=True)
    table = Table(["model", "data", Column("float top-1 (%)", ".2f", "right"), Column("test images", align="right"),
                   Column("parameters", align="right"), Column("epochs", align="right"), "network"],
                  [(f"`{k}.onnx`", v["data"], v["float_top1"], v["test_images"], v["params"], v["epochs"],
                    v["description"]) for k, v in index.items()])
    lines = ["# Bundled models", "", "Trained by `python models/train.py` (fixed seeds, one CPU thread); "
             "float top-1 on the fixed test split of `accel.data.load_dataset` through onnxruntime. The ONNX "
             "files and their index `models.json` live in `accel/bundled/` (package data of accel).", "",
             table.markdown()]
    write_text(ROOT / "README.md", "\n".join(lines) + "\n", overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1:])
