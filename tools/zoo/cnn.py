"""Two CNNs as ONNX: a digits classifier trained on real data, and a ResNet-18 for latency.

Run in an environment with torch and scikit-learn (see tools/zoo/README.md)::

    python tools/zoo/cnn.py --out tools/out/zoo

``digits-cnn.onnx``
    A small residual network (Conv/BatchNormalization/Relu blocks with a projection shortcut,
    MaxPool, global average pooling, Gemm) trained on scikit-learn's copy of the UCI handwritten
    digits (1,797 images of 8x8 pixels, intensities 0..16). Images are scaled to [0, 1] and
    upsampled bilinearly to 32x32 before they reach the model, so the model input is
    ``image`` float32 ``(batch, 1, 32, 32)``; the output is ``logits`` ``(batch, 10)``.
    The split is fixed: a seeded permutation keeps 540 images (30%) held out for testing and
    trains on the other 1,257. Training is deterministic (seeded, single-threaded) and takes well
    under a minute on one CPU core; the script refuses to write a model under 97% held-out accuracy.

``digits-calib.npz`` / ``digits-test.npz``
    ``digits-calib.npz`` holds only ``image``: 200 training images, ready for ``--calib-data``.
    ``digits-test.npz`` holds ``image`` and ``labels`` (int64) for the 540 held-out images.

``resnet18.onnx``
    torchvision's ResNet-18 architecture (written out here: torchvision is not installed with the
    CPU build of torch) with seeded random weights, 1000 classes. Its BatchNormalization running
    statistics are estimated on random images so that activations keep a realistic scale instead of
    growing through the residual stages. Input ``image`` float32 ``(batch, 3, 224, 224)``. It is a
    latency model only: its accuracy means nothing. ``resnet18-test.npz`` holds 16 seeded random
    normal images (``image``) to run it on.

All models: opset 17, TorchScript exporter, dynamic batch dimension. That exporter folds eval-mode
BatchNormalization into the Conv weights, so the graphs hold Conv (with bias), Relu, Add, pooling and Gemm.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

SEED = 0
HELD_OUT = 540
CALIB = 200
SIZE = 32
MIN_ACCURACY = 0.97


# ------------------------------------------------------------------ models


class BasicBlock(nn.Module):
    """Two 3x3 Conv/BatchNormalization layers with an identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class DigitsNet(nn.Module):
    """A small ResNet for 1x32x32 digits: stem, three residual stages, max pooling, Gemm head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.stage1 = BasicBlock(16, 16)
        self.pool = nn.MaxPool2d(2)
        self.stage2 = BasicBlock(16, 32, stride=2)
        self.stage3 = BasicBlock(32, 64, stride=2)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.stage1(self.stem(x)))
        x = self.stage3(self.stage2(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class ResNet18(nn.Module):
    """torchvision's ``resnet18`` layer for layer: 7x7 stem, max pool, four stages of two blocks, fc."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 128, 256, 512)
        stages, cin = [], 64
        for i, width in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, width, stride), BasicBlock(width, width)))
            cin = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ------------------------------------------------------------------ data and training


def digits_images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 digits as float32 ``(n, 1, 32, 32)`` in [0, 1] (bilinear upsampling) and int64 labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(np.asarray(digits.images, dtype=np.float32) / 16.0)[:, None]
    upsampled = F.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return upsampled.numpy(), np.asarray(digits.target, dtype=np.int64)


def split(n: int) -> tuple[np.ndarray, np.ndarray]:
    """The fixed split: indices of the training images and of the held-out images."""
    order = np.random.default_rng(SEED).permutation(n)
    return order[HELD_OUT:], order[:HELD_OUT]


def train_digits(images: np.ndarray, labels: np.ndarray, epochs: int) -> DigitsNet:
    """Trains :class:`DigitsNet` with Adam and small random shifts; deterministic for a given seed."""
    torch.manual_seed(SEED)
    model = DigitsNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=epochs * -(-len(labels) // 64))
    x_all, y_all = torch.from_numpy(images), torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(SEED)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(labels), generator=generator)
        for start in range(0, len(labels), 64):
            index = order[start:start + 64]
            shift = torch.randint(-2, 3, (2,), generator=generator).tolist()
            x = torch.roll(x_all[index], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(x), y_all[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy of ``model`` on ``images``."""
    with torch.no_grad():
        predicted = model(torch.from_numpy(images)).argmax(1).numpy()
    return float((predicted == labels).mean())


def export(model: nn.Module, sample: torch.Tensor, path: Path) -> None:
    """TorchScript export, opset 17, input ``image`` and output ``logits`` with a dynamic batch."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is deliberate here
        torch.onnx.export(model, (sample,), str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17,
                          dynamo=False)


def build_digits(out: Path, epochs: int) -> float:
    """Trains, checks and exports the digits model with its calibration and test data; returns accuracy."""
    images, labels = digits_images()
    train, test = split(len(labels))
    started = time.perf_counter()
    model = train_digits(images[train], labels[train], epochs)
    seconds = time.perf_counter() - started
    held_out = accuracy(model, images[test], labels[test])
    print(f"digits-cnn: trained in {seconds:.1f} s, held-out accuracy {held_out:.4f} on {len(test)} images")
    if held_out < MIN_ACCURACY:
        raise SystemExit(f"held-out accuracy {held_out:.4f} is under {MIN_ACCURACY}; not writing the model")
    export(model, torch.from_numpy(images[test[:2]]), out / "digits-cnn.onnx")
    np.savez(out / "digits-calib.npz", image=images[train[:CALIB]])
    np.savez(out / "digits-test.npz", image=images[test], labels=labels[test])
    return held_out


def build_resnet18(out: Path) -> None:
    """Exports a seeded random ResNet-18 whose BatchNormalization statistics fit random images."""
    torch.manual_seed(SEED)
    model = ResNet18()
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.1)
            module.momentum = None  # cumulative average over the estimation batches
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.randn(8, 3, 224, 224))
    model.eval()
    images = np.random.default_rng(SEED).standard_normal((16, 3, 224, 224)).astype(np.float32)
    export(model, torch.from_numpy(images[:1]), out / "resnet18.onnx")
    np.savez(out / "resnet18-test.npz", image=images)
    print("resnet18: exported with random weights")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("tools/out/zoo"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--skip-resnet", action="store_true", help="build only the digits model")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    build_digits(args.out, args.epochs)
    if not args.skip_resnet:
        build_resnet18(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
