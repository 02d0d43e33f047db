"""What the loop talks to: :class:`Target` (a network plus its :class:`InputSpec`), :func:`wrap_model` for any
``nn.Module``, and :func:`frozen_eval`, which runs a model in eval mode with frozen parameters and gives it back
as it was."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.param import IMAGENET_MEAN, IMAGENET_STD
from ..infra.messages import short


@dataclass(frozen=True)
class InputSpec:
    """What a net expects as input.

    Attributes:
        size: Native (height, width).
        mean: Per-channel mean subtracted after scaling, in the channel order given and in units of
            ``value_range``.
        std: Per-channel divisor, same units.
        value_range: 1.0 for images in [0, 1], 255.0 for Caffe-style nets.
        channel_order: ``"RGB"`` or ``"BGR"``.
        min_size: Smallest side the net accepts (smaller inputs raise a clear error).
        fit: How other image sizes are brought to ``size``: ``"resize"`` (bilinear) or
            ``"center-crop"`` (crop when larger, as the paper cropped 227 from 256; resize when smaller).

    The number of input channels is ``len(mean)``: 3 for RGB/BGR nets, 1 for greyscale nets (an RGB
    image, e.g. a generator prior's, reaches them as its luminance), any other N for multi-channel
    nets (pixel methods only).
    """

    size: tuple[int, int] = (224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN  # one value per input channel: its length is the channel count
    std: tuple[float, ...] = IMAGENET_STD
    value_range: float = 1.0
    channel_order: str = "RGB"
    min_size: int = 32
    fit: str = "resize"

    def __post_init__(self):
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be 'RGB' or 'BGR', got {self.channel_order!r}")
        if self.fit not in ("resize", "center-crop"):
            raise ValueError(f"fit must be 'resize' or 'center-crop', got {self.fit!r}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per input channel, got {len(self.mean)} and {len(self.std)}")
        if self.channel_order == "BGR" and len(self.mean) != 3:
            raise ValueError(f"channel_order 'BGR' needs 3 channels, got {len(self.mean)}")
        import math

        if not all(math.isfinite(v) for v in (*self.mean, *self.std, self.value_range)):
            raise ValueError(f"input spec mean {self.mean}, std {self.std} and value_range {self.value_range} must be finite numbers")
        if not all(v > 0 for v in (*self.std, self.value_range)):
            raise ValueError(f"input spec std {self.std} and value_range {self.value_range} must be positive (a std of 0 divides by zero)")

    @property
    def channels(self) -> int:
        """Number of input channels (``len(mean)``)."""
        return len(self.mean)


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and frozen parameters for the block only: the model comes back as it was.

    Inside the block every submodule is in eval mode (BatchNorm uses its running statistics and
    leaves them alone, dropout is off) and no parameter requires a gradient (gradients flow to the
    input only). On exit each submodule gets its own ``training`` flag back and each parameter its
    own ``requires_grad``, also when the block raises. Blocks nest.

    Args:
        model: Any ``nn.Module`` (a user's model, or a :class:`Target`).

    Yields:
        ``model`` itself.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
        >>> with frozen_eval(model):
        ...     model.training, next(model.parameters()).requires_grad
        (False, False)
        >>> model.training, next(model.parameters()).requires_grad
        (True, True)
    """
    # only what is not frozen already is touched (and restored); one walk over the module tree, without
    # named_modules()' bookkeeping, costs ~0.1 ms for EfficientNet-Lite0 (a pass is ~50-100 ms)
    modules, stack = [], [model]
    while stack:
        module = stack.pop()
        modules.append(module)
        stack.extend(child for child in module._modules.values() if child is not None)
    training = [m for m in modules if m.training]
    trainable = list({id(p): p for m in modules for p in m._parameters.values() if p is not None and p.requires_grad}.values())
    try:
        for m in training:
            m.training = False
        for p in trainable:
            p.requires_grad_(False)
        yield model
    finally:
        for m in training:
            m.training = True
        for p in trainable:
            p.requires_grad_(True)


# ITU-R BT.601 luma weights, as PIL's convert("L"): how an RGB image reaches a 1-channel net
LUMINANCE = (0.299, 0.587, 0.114)


class Target(nn.Module):
    """A network plus its input spec: takes images in [0, 1] of any size and returns its output.

    Images are RGB (N, 3, H, W), or already have the net's own channel count (N, C, H, W); a
    1-channel net sees an RGB image as its luminance (BT.601). The wrapped module is ``self.model``;
    layer names are those of ``model.named_modules()``, plus ``"output"`` for what ``model`` returns,
    reduced to one tensor by :func:`dgnam.core.hooks.unwrap_output` (tensor; ``logits`` of a dict or a
    transformers ``ModelOutput``, else its first tensor; first element of a tuple). A model without a
    module called ``logits`` answers to ``logits`` with that output too (the classifier output).
    Wrapping changes nothing in ``model``: each forward pass runs it under :func:`frozen_eval` (eval
    mode, no parameter gradients) and gives it back as it was, so a user's model in train mode stays
    in train mode and its BatchNorm statistics unchanged.
    """

    def __init__(self, model: nn.Module, spec: InputSpec, categories: tuple[str, ...] | None = None, name: str = "model"):
        super().__init__()
        self.model = model
        self.spec = spec
        self.categories = categories
        self.name = name
        mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, spec.channels, 1, 1)
        std = torch.tensor(spec.std, dtype=torch.float32).view(1, spec.channels, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def fit(self, images: torch.Tensor) -> torch.Tensor:
        """Bring (N, 3, H, W) images to the native size by the spec's ``fit`` rule."""
        h, w = images.shape[-2:]
        th, tw = self.spec.size
        if min(h, w) < self.spec.min_size:
            raise ValueError(f"{self.name} needs images of at least {self.spec.min_size} px, got {h}x{w}")
        if (h, w) == (th, tw):
            return images
        if self.spec.fit == "center-crop" and h >= th and w >= tw:
            top, left = (h - th) // 2, (w - tw) // 2
            return images[..., top : top + th, left : left + tw]
        return F.interpolate(images, size=(th, tw), mode="bilinear", align_corners=False, antialias=h > th or w > tw)

    def to_channels(self, images: torch.Tensor) -> torch.Tensor:
        """Images with the net's channel count: as given, or an RGB image's luminance for a 1-channel net.

        Raises:
            ValueError: any other mismatch (e.g. a generator prior's RGB image for a 4-channel net).
        """
        have, want = images.shape[1], self.spec.channels
        if have == want:
            return images
        if have == 3 and want == 1:
            weights = images.new_tensor(LUMINANCE).view(1, 3, 1, 1)
            return (images * weights).sum(1, keepdim=True)
        raise ValueError(
            f"{self.name} takes {want}-channel images, got {have} channel(s): a generator prior (and MACO) makes RGB images, "
            f"so a {want}-channel net needs a pixel method in its own channels (--pixel pixel, yosinski, fourier or deepinversion)"
        )

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> the net's channels, value range, channel order and normalization."""
        x = self.to_channels(self.fit(images))
        if self.spec.channel_order == "BGR":
            x = x.flip(1)
        return (x * self.spec.value_range - self.mean) / self.std

    def fast(self, layers: Sequence[str] = ()) -> "Target":
        """A target that computes the same values of ``layers`` faster, where the model offers it.

        Models with a ``fused()`` method (EfficientNet-Lite) get their BatchNorms folded into the
        convolutions and channels-last memory (about 1.5-2x on CPU). Falls back to ``self`` when a
        requested layer's values would change (a folded convolution) or the model has no fast form.
        """
        if not hasattr(self.model, "fused"):
            return self
        fused = self.model.fused().eval().requires_grad_(False)  # a copy: ours to freeze
        if set(layers) & set(getattr(fused, "changed_layers", ())):
            return self
        fused.to(memory_format=torch.channels_last)
        fast = Target(fused, self.spec, self.categories, name=self.name)
        return fast.to(self.mean.device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from ..core.hooks import unwrap_output

        if images.dim() != 4:
            raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(images.shape)}")
        with frozen_eval(self.model):  # a few microseconds per pass; the model is left as it was
            return unwrap_output(self.model(self.preprocess(images)), self.name)


def wrap_model(model: nn.Module, spec: InputSpec | None = None, categories: tuple[str, ...] | None = None, name: str = "model") -> Target:
    """Make any ``nn.Module`` a target: give its input spec (defaults: 224 px, ImageNet mean/std).

    The model itself is not changed: each forward pass of the target runs it in eval mode with frozen
    parameters and restores both afterwards (:func:`frozen_eval`).

    Args:
        model: The network; it takes a batch of images shaped as ``spec`` describes.
        spec: Input size, value range, channel order, mean and std (default :class:`InputSpec`).
        categories: Names of the output units, for ``logits:NAME`` units and labels.
        name: The name used in messages and results.

    Returns:
        A :class:`Target`.

    Raises:
        ValueError: the model's first convolution takes another number of channels than the spec
            gives (and a probe pass at the native size fails).

    Example:
        >>> net = wrap_model(torchvision.models.resnet18(weights="DEFAULT"), InputSpec())  # doctest: +SKIP
    """
    spec = spec or InputSpec()
    _check_channels(model, spec, name)
    return Target(model, spec, categories, name=name)


def _check_channels(model: nn.Module, spec: InputSpec, name: str) -> None:
    """Fail up front (not deep inside a convolution) when the model's input channels differ from the spec's."""
    first = next(((n, m) for n, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)), None)
    channels = spec.channels
    if first is None or first[1].in_channels == channels:
        return
    try:  # the first registered convolution need not be the first one applied: ask the model itself
        probe = torch.zeros(1, channels, *spec.size, device=next(model.parameters()).device)
        with frozen_eval(model), torch.no_grad():
            model(probe)
        return
    except Exception:
        pass
    raise ValueError(f"{short(name)}: its first convolution {first[0]!r} takes {first[1].in_channels} input channel(s), but the "
                     f"input spec gives {channels} (mean/std {spec.mean}): give an InputSpec for the model's input, or adapt the "
                     f"model to {channels}-channel images")
