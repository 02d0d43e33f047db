"""CaffeNet (BVLC reference CaffeNet), the paper's target network, written from its deploy prototxt.

CaffeNet is AlexNet with pooling *before* normalization (conv, ReLU, pool, LRN), trained by BVLC.
Layer for layer (``nets/caffenet/caffenet.prototxt`` in Evolving-AI-Lab/synthesizing):

    conv1 96 11x11/4 -> relu1 -> pool1 3/2 -> norm1 LRN(5, 1e-4, 0.75)
    conv2 256 5x5 pad 2, 2 groups -> relu2 -> pool2 3/2 -> norm2
    conv3 384 3x3 pad 1 -> relu3 -> conv4 384 3x3 pad 1, 2 groups -> relu4
    conv5 256 3x3 pad 1, 2 groups -> relu5 -> pool5 3/2 (256x6x6)
    fc6 4096 -> relu6 -> drop6 -> fc7 4096 -> relu7 -> drop7 -> fc8 1000 (logits)

Input: 227x227 BGR in 0-255 minus the ImageNet mean (B, G, R) = (104, 117, 123).

Layer names are the Caffe names, and each ReLU is its own (not in-place) module, so ``fc6``,
``conv5`` ... are the *pre-ReLU* outputs and ``relu6``, ``relu5`` ... the rectified ones. That is
what the paper optimized: ``act_max.py`` ran ``net.forward(end=layer)``, which stops at the layer and
skips the in-place ReLU that follows it. ``fc8`` holds the pre-softmax class scores.

Caffe's pooling rounds the output size up (``ceil_mode=True``; identical to floor at 227 px), its LRN
is PyTorch's ``LocalResponseNorm`` with ``k = 1``, and a grouped Caffe convolution stores its weight
as (out, in / groups, k, k), as PyTorch does. State-dict keys are ``conv1.weight`` ... ``fc8.bias``.
A file from another conversion can be renamed with :func:`convert_state_dict`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Mapping

import torch
from torch import nn

from ..infra.hub import WeightsError

# Caffe's ImageNet mean in BGR order, the values the paper's code subtracted.
CAFFE_MEAN_BGR = (104.0, 117.0, 123.0)

# (name, weight shape) of every parameterized layer, in order: the published key names and shapes.
PARAM_SHAPES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("conv1", (96, 3, 11, 11)),
    ("conv2", (256, 48, 5, 5)),
    ("conv3", (384, 256, 3, 3)),
    ("conv4", (384, 192, 3, 3)),
    ("conv5", (256, 192, 3, 3)),
    ("fc6", (4096, 9216)),
    ("fc7", (4096, 4096)),
    ("fc8", (1000, 4096)),
)


def _lrn() -> nn.LocalResponseNorm:
    # lrn_param { local_size: 5 alpha: 0.0001 beta: 0.75 }, k = 1 (Caffe's default)
    return nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(3, stride=2, ceil_mode=True)


class CaffeNet(nn.Module):
    """BVLC reference CaffeNet; ``forward`` takes Caffe-preprocessed 227 px images, returns ``fc8``."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5):
        super().__init__()
        layers = OrderedDict(
            conv1=nn.Conv2d(3, 96, 11, stride=4),
            relu1=nn.ReLU(),
            pool1=_pool(),
            norm1=_lrn(),
            conv2=nn.Conv2d(96, 256, 5, padding=2, groups=2),
            relu2=nn.ReLU(),
            pool2=_pool(),
            norm2=_lrn(),
            conv3=nn.Conv2d(256, 384, 3, padding=1),
            relu3=nn.ReLU(),
            conv4=nn.Conv2d(384, 384, 3, padding=1, groups=2),
            relu4=nn.ReLU(),
            conv5=nn.Conv2d(384, 256, 3, padding=1, groups=2),
            relu5=nn.ReLU(),
            pool5=_pool(),
            flatten=nn.Flatten(1),  # Caffe's InnerProduct flattens C, H, W in this order
            fc6=nn.Linear(256 * 6 * 6, 4096),
            relu6=nn.ReLU(),
            drop6=nn.Dropout(dropout),
            fc7=nn.Linear(4096, 4096),
            relu7=nn.ReLU(),
            drop7=nn.Dropout(dropout),
            fc8=nn.Linear(4096, num_classes),
        )
        for name, module in layers.items():
            self.add_module(name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for module in self.children():
            x = module(x)
        return x


def convert_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a CaffeNet state dict from another conversion to our keys (``conv1.weight`` ...).

    Keys already in our format are kept. Otherwise the weights and biases are taken in file order
    (``net.0.weight``, ``features.conv1.weight``, ``16.1.weight`` ... all work) and matched to
    conv1 ... fc8, checking every shape, so a file of another architecture is refused, not guessed.

    Raises:
        WeightsError: the file does not hold exactly the eight CaffeNet layers with the right shapes.
    """
    ours = {f"{name}.{kind}" for name, _ in PARAM_SHAPES for kind in ("weight", "bias")}
    if set(state) == ours:
        return dict(state)
    weights = [(k, v) for k, v in state.items() if k.endswith("weight")]
    biases = [(k, v) for k, v in state.items() if k.endswith("bias")]
    if len(weights) != len(PARAM_SHAPES) or len(biases) != len(PARAM_SHAPES):
        raise WeightsError(
            f"cannot convert to CaffeNet: found {len(weights)} weights and {len(biases)} biases, "
            f"expected {len(PARAM_SHAPES)} of each (conv1 ... fc8)"
        )
    out: dict[str, torch.Tensor] = {}
    for (name, shape), (wkey, w), (bkey, b) in zip(PARAM_SHAPES, weights, biases):
        if tuple(w.shape) != shape or tuple(b.shape) != (shape[0],):
            raise WeightsError(
                f"cannot convert to CaffeNet: {wkey!r} {tuple(w.shape)} / {bkey!r} {tuple(b.shape)} "
                f"do not fit {name} {shape} / ({shape[0]},)"
            )
        out[f"{name}.weight"], out[f"{name}.bias"] = w, b
    return out


def alexnet_torchvision() -> nn.Module:
    """torchvision's AlexNet (the "one weird trick" variant), built only when torchvision is installed."""
    try:
        from torchvision.models import alexnet
    except ImportError as exc:  # registered only when importable, but keep the message useful
        raise ImportError("the 'alexnet' net needs torchvision: pip install 'dgnam[torchvision]'") from exc
    return alexnet(weights=None)
