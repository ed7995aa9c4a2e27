"""Held-out networks for the engine benchmark: ResNet-18 and MobileNetV2 (224x224, 1000 classes) and an MLP on
MNIST-shaped images (784-512-512-10, the fully connected case none of the bundled models is).

Written after torchvision's definitions (``torchvision.models.resnet18`` with ``BasicBlock`` and
layers [2, 2, 2, 2]; ``torchvision.models.mobilenet_v2`` with width 1.0 and its inverted-residual
table), because torchvision's wheel for this torch is not installable here. Random weights: speed and
bit-exactness need no trained weights. BatchNorm layers get random statistics so that folding them
is not the identity.
"""

from __future__ import annotations

import torch
from torch import nn


def _bn(c: int) -> nn.BatchNorm2d:
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.1, 0.1)
        bn.running_var.uniform_(0.5, 1.5)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.1, 0.1)
    return bn


class BasicBlock(nn.Module):
    """torchvision's ``BasicBlock``: two 3x3 convs, identity or 1x1-conv shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = _bn(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = _bn(c_out)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), _bn(c_out))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + identity)


class ResNet18(nn.Module):
    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = _bn(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers, c = [], 64
        for c_out, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [BasicBlock(c, c_out, stride), BasicBlock(c_out, c_out, 1)]
            c = c_out
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        return self.fc(torch.flatten(self.avgpool(self.layers(x)), 1))


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         _bn(c_out), nn.ReLU6())


class InvertedResidual(nn.Module):
    """torchvision's MobileNetV2 block: 1x1 expansion, 3x3 depthwise, 1x1 linear projection."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        layers = [] if expand == 1 else [_conv_bn_relu6(c_in, hidden, 1, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
                   nn.Conv2d(hidden, c_out, 1, 1, 0, bias=False), _bn(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


class MobileNetV2(nn.Module):
    #: (expansion t, channels c, repeats n, first stride s), torchvision's table at width 1.0
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, c = [_conv_bn_relu6(3, 32, 3, 2)], 32
        for t, c_out, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
        layers.append(_conv_bn_relu6(c, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.pool(self.features(x)), 1))


class MLP(nn.Module):
    """Three fully connected layers with ReLU on a 1x28x28 image."""

    def __init__(self, widths=(784, 512, 512, 10)):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(widths, widths[1:])):
            layers += [nn.Linear(a, b)] + ([nn.ReLU()] if i < len(widths) - 2 else [])
        self.net = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, x):
        return self.net(x)


#: name -> constructor
IMAGENET_MODELS = {"resnet18_224": ResNet18, "mobilenetv2_224": MobileNetV2}
IMAGE_SHAPE = (3, 224, 224)
#: held-out networks on MNIST-shaped inputs: name -> constructor (calibrated on mnist5k)
MNIST_MODELS = {"mlp_mnist": MLP}
MNIST_SHAPE = (1, 28, 28)


def export_onnx(name: str, path, seed: int = 0) -> None:
    """Export ``name`` with random weights (seeded) to ``path``: opset 17, free batch dimension."""
    import onnx

    torch.manual_seed(seed)
    net = {**IMAGENET_MODELS, **MNIST_MODELS}[name]().eval()
    shape = MNIST_SHAPE if name in MNIST_MODELS else IMAGE_SHAPE
    torch.onnx.export(net, torch.zeros((1,) + shape), str(path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}}, opset_version=17,
                      dynamo=False)
    proto = onnx.load(str(path))
    proto.ir_version = min(proto.ir_version, 10)
    onnx.save(proto, str(path))
