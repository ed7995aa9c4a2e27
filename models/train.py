"""Train the bundled networks reproducibly and export them to ONNX.

Run from the repository root::

    .venv/bin/python models/train.py            # all models
    .venv/bin/python models/train.py cnn_mnist  # one model

Every model trains with a fixed seed on one CPU thread (bit-reproducible on
this torch version), is exported with :func:`accel.frontend.export.export_pytorch`
(opset 17, dynamic batch) and evaluated with onnxruntime on the fixed test
split of :func:`accel.data.load_dataset`; the float accuracies go to
``models/models.json`` and ``models/README.md``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from accel.data import load_dataset  # noqa: E402
from accel.frontend.export import export_pytorch  # noqa: E402
from accel.report import Column, Table, write_json, write_text  # noqa: E402


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


def train(name: str, out_dir: Path = ROOT) -> dict:
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
            "params": n_params, "epochs": epochs, "seed": SEED, "description": description}


def main(argv: list[str]) -> None:
    names = argv or list(MODELS)
    for n in names:
        if n not in MODELS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(MODELS)}")
    index_path = ROOT / "models.json"
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
             "float top-1 on the fixed test split of `accel.data.load_dataset` through onnxruntime.", "",
             table.markdown()]
    write_text(ROOT / "README.md", "\n".join(lines) + "\n", overwrite=True)


if __name__ == "__main__":
    main(sys.argv[1:])
