"""The Fashion-MNIST reproduction's nets: the target/encoder CNN, the judges (an MLP, a tiny ResNet), their training."""


from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..core.hooks import forward_until
from ..nets import InputSpec
from ..train.trainer import cosine_decay

SIZE = 32  # px the nets and the generator work at (28 px images + 2 px border)


def grey(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) in [0, 1] -> (N, 1, H, W): the mean of the channels, what every net here reads."""
    return images if images.shape[1] == 1 else images.mean(1, keepdim=True)


# ==================================================================================================
# Nets
# ==================================================================================================


class GreyInput(nn.Module):
    """First layer of every net here: RGB input is averaged to grey; grey input passes through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grey(x)


def _conv_block(cin: int, cout: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))


class FashionCNN(nn.Module):
    """Encoder and target: three conv blocks (32 -> 16 -> 8 -> 4 px), ``code`` (the penultimate layer,
    ReLU: the generator's code, as fc6 in the paper) and ``logits``. BatchNorm throughout, so that
    DeepInversion's prior applies."""

    def __init__(self, classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64), code_dim: int = 128):
        super().__init__()
        w1, w2, w3 = widths
        self.grey = GreyInput()
        self.block1 = _conv_block(1, w1, 5)
        self.block2 = _conv_block(w1, w2, 3)
        self.block3 = _conv_block(w2, w3, 3)
        self.flatten = nn.Flatten(1)
        self.code = nn.Sequential(nn.Linear(w3 * (SIZE // 8) ** 2, code_dim), nn.ReLU())
        self.logits = nn.Linear(code_dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block3(self.block2(self.block1(self.grey(x))))
        return self.logits(self.code(self.flatten(x)))


class FashionMLP(nn.Module):
    """Judge: a two-hidden-layer perceptron on the raw pixels (no convolutions, no BatchNorm)."""

    def __init__(self, classes: int = 10, hidden: tuple[int, int] = (256, 128)):
        super().__init__()
        self.grey = GreyInput()
        self.flatten = nn.Flatten(1)
        self.fc1 = nn.Sequential(nn.Linear(SIZE * SIZE, hidden[0]), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Linear(hidden[0], hidden[1]), nn.ReLU())
        self.logits = nn.Linear(hidden[1], classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.fc2(self.fc1(self.flatten(self.grey(x)))))


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm and a shortcut."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(out + self.shortcut(x))


class TinyResNet(nn.Module):
    """Judge: a strided stem (16 px) and three basic blocks (16, 8, 4 px), global average ``pool``."""

    def __init__(self, classes: int = 10, widths: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.grey = GreyInput()
        self.stem = nn.Sequential(nn.Conv2d(1, w1, 3, 2, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU())
        self.stage1 = BasicBlock(w1, w1)
        self.stage2 = BasicBlock(w1, w2, 2)
        self.stage3 = BasicBlock(w2, w3, 2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self.logits = nn.Linear(w3, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(self.pool(self.stage3(self.stage2(self.stage1(self.stem(self.grey(x)))))))


ARCHS: dict[str, type[nn.Module]] = {"cnn": FashionCNN, "mlp": FashionMLP, "resnet": TinyResNet}
FEATURE_LAYER = {"cnn": "code", "mlp": "fc2", "resnet": "pool"}  # each arch's penultimate layer


@dataclass
class NetConfig:
    """A classifier and its training (Adam, cosine learning-rate decay, cross-entropy)."""

    arch: str = "cnn"  # "cnn" (the encoder/target), "mlp" or "resnet" (judges)
    seed: int = 0  # initialization and batch order
    epochs: float = 1.0  # passes over the training images
    batch_size: int = 128
    lr: float = 2e-3  # Adam's learning rate at the start
    lr_final: float = 0.02  # ... and at the end, as a fraction of lr (cosine decay)
    train_images: int = 0  # train on the first N training images (0: all)

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}: choose one of {', '.join(ARCHS)}")

    @property
    def name(self) -> str:
        return f"{self.arch}_seed{self.seed}"


def build_net(arch: str, seed: int, classes: int = 10) -> nn.Module:
    """A freshly initialized net; the weights depend only on ``seed`` (the global RNG is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return ARCHS[arch](classes)


@dataclass(frozen=True)
class Normalization:
    """Grey-level mean and std of the training images (at 32 px): the nets' input normalization."""

    mean: float
    std: float

    @classmethod
    def of(cls, images: torch.Tensor) -> "Normalization":
        return cls(round(float(images.mean()), 6), round(float(images.std()), 6))

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def input_spec(self) -> InputSpec:
        """The :class:`~dgnam.nets.InputSpec` of a net trained with this normalization (RGB in [0, 1],
        the same value on each channel, so the net's grey average is the normalized grey image)."""
        return InputSpec(size=(SIZE, SIZE), mean=(self.mean,) * 3, std=(self.std,) * 3, min_size=SIZE)


def train_classifier(
    config: NetConfig, x: torch.Tensor, y: torch.Tensor, norm: Normalization, classes: int = 10, progress: bool = False
) -> tuple[nn.Module, dict]:
    """Train one classifier.

    Args:
        config: Architecture, seed and budget.
        x: float (N, 1, 32, 32) training images in [0, 1] (:func:`to_tensor`).
        y: int64 (N,) labels.
        norm: Input normalization.
        classes: Number of classes.
        progress: Show a tqdm bar.

    Returns:
        The net in eval mode and ``{"steps", "seconds", "final_loss"}``.

    Example:
        >>> net, info = train_classifier(NetConfig("mlp", seed=1), to_tensor(data.train_x), torch.from_numpy(data.train_y), norm)
    """
    from tqdm.auto import tqdm

    if config.train_images:
        x, y = x[: config.train_images], y[: config.train_images]
    model = build_net(config.arch, config.seed, classes).train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    per_epoch = max(1, len(x) // config.batch_size)
    steps = max(1, round(config.epochs * per_epoch))
    started, losses, order = time.time(), [], torch.empty(0, dtype=torch.long)
    for step in tqdm(range(steps), desc=f"train {config.name}", disable=not progress, leave=False):
        if step % per_epoch == 0:
            order = torch.randperm(len(x), generator=rng)
        rows = order[(step % per_epoch) * config.batch_size : (step % per_epoch + 1) * config.batch_size]
        for group in opt.param_groups:
            group["lr"] = cosine_decay(config.lr, config.lr_final, step, steps)
        loss = F.cross_entropy(model(norm(x[rows])), y[rows])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return model, {"steps": steps, "seconds": round(time.time() - started, 2), "final_loss": float(np.mean(losses[-20:]))}


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, norm: Normalization, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on (N, 1|3, 32, 32) images in [0, 1]."""
    hits = sum(int((model(norm(x[i : i + batch_size])).argmax(1) == y[i : i + batch_size]).sum()) for i in range(0, len(x), batch_size))
    return hits / max(1, len(x))


@torch.no_grad()
def layer_features(model: nn.Module, layer: str, x: torch.Tensor, norm: Normalization, batch_size: int = 1000) -> torch.Tensor:
    """Output of ``layer`` for (N, 1|3, 32, 32) images in [0, 1], flattened to (N, D)."""
    out = [forward_until(model, layer, norm(x[i : i + batch_size])).flatten(1) for i in range(0, len(x), batch_size)]
    return torch.cat(out)
