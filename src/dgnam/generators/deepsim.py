"""DeePSiM generators (Dosovitskiy & Brox 2016), the image priors of DGN-AM (Nguyen et al. 2016).

Each generator inverts one CaffeNet layer: ``fc6``, ``fc7`` (4096-d codes), ``fc8`` (1000-d) or
``pool5`` (a 256x6x6 map). They are written layer for layer from the released Caffe prototxts
(``nets/upconv/{fc6,fc7,conv5}/generator.prototxt`` in Evolving-AI-Lab/synthesizing):

==========  ==============================================  ======================
layer       Caffe definition                                output (fc / pool5)
==========  ==============================================  ======================
defc7       InnerProduct 4096 (input 4096, or 1000 for fc8)  4096
defc6       InnerProduct 4096                                4096
defc5       InnerProduct 4096, reshaped to 256x4x4           256x4x4
Rconv6/7/8  (pool5 only) Convolution 512, k3, pad 1/1/0      512x4x4 from 256x6x6
deconv5     Deconvolution 256, k4 s2 p1                      256x8x8
conv5_1     Deconvolution 512, k3 s1 p1                      512x8x8
deconv4     Deconvolution 256, k4 s2 p1                      256x16x16
conv4_1     Deconvolution 256, k3 s1 p1                      256x16x16
deconv3     Deconvolution 128, k4 s2 p1                      128x32x32
conv3_1     Deconvolution 128, k3 s1 p1                      128x32x32
deconv2     Deconvolution 64, k4 s2 p1                       64x64x64
deconv1     Deconvolution 32, k4 s2 p1                       32x128x128
deconv0     Deconvolution 3, k4 s2 p1 (no ReLU, no crop)     3x256x256
==========  ==============================================  ======================

Every layer but ``deconv0`` is followed by a leaky ReLU of slope 0.3. Caffe's ``Deconvolution``
stores its weight as (in, out, k, k), exactly as :class:`torch.nn.ConvTranspose2d`, and the module
names are the Caffe layer names, so the PyTorch state dicts published by Binxu Wang
(``defc7.weight``, ``defc7.bias``, ... ``deconv0.bias``) load unchanged through
:func:`dgnam.infra.hub.load_strict`.

The network's own output (:meth:`DeePSiMGenerator.raw`) is in Caffe's convention: BGR, 0-255, minus
the ImageNet mean, ready for CaffeNet without any preprocessing. :meth:`~DeePSiMGenerator.decode`
turns it into our convention (RGB in [0, 1]): flip to RGB, add the mean (R, G, B) = (123, 117, 104),
divide by 255 and clamp. The paper fed the *unclamped* image to CaffeNet; set ``gen.clamp = False``
to reproduce that exactly (values may then leave [0, 1]).

Code bounds. The paper clipped each code unit to ``[0, ub]`` with ``ub`` three standard deviations
above the unit's mean activation on ImageNet (``act_range/3x/{fc6,fc7,fc8,conv5}.txt`` in the
synthesizing repository; ``conv5.txt`` holds the 256x6x6 pool5 code). Those files are registered as
:data:`BOUNDS_SOURCES`; :func:`paper_bounds` applies the cached file when present and otherwise sets
the lower bound 0 only (the codes are post-ReLU activations) with no upper bound, and warns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..infra.hub import WeightsError, WeightSource, dgnam_home, resolve_weights
from .base import Generator

# Caffe's ImageNet mean in RGB order (the generators were trained on BGR images minus (104, 117, 123)).
CAFFE_MEAN_RGB = (123.0, 117.0, 104.0)

# Leaky-ReLU slope of every hidden layer (relu_param { negative_slope: 0.3 } in the prototxts).
NEGATIVE_SLOPE = 0.3

CODE_SHAPES: dict[str, tuple[int, ...]] = {
    "fc6": (4096,),
    "fc7": (4096,),
    "fc8": (1000,),
    "pool5": (256, 6, 6),
}

# The shared up-convolutional back end: (name, out channels, kernel, stride, padding).
_BACK_END = (
    ("deconv5", 256, 4, 2, 1),
    ("conv5_1", 512, 3, 1, 1),
    ("deconv4", 256, 4, 2, 1),
    ("conv4_1", 256, 3, 1, 1),
    ("deconv3", 128, 4, 2, 1),
    ("conv3_1", 128, 3, 1, 1),
    ("deconv2", 64, 4, 2, 1),
    ("deconv1", 32, 4, 2, 1),
    ("deconv0", 3, 4, 2, 1),
)


class DeePSiMGenerator(Generator):
    """One DeePSiM generator; ``layer`` names the CaffeNet layer whose code it inverts.

    Args:
        layer: ``"fc6"``, ``"fc7"``, ``"fc8"`` or ``"pool5"``.
        clamp: Clamp decoded images to [0, 1] (default). ``False`` reproduces the paper, which fed
            the raw generator output to CaffeNet.

    Example:
        >>> gen = load_generator("deepsim_fc6")           # weights from the cache
        >>> gen(gen.random_code([0, 1])).shape
        torch.Size([2, 3, 256, 256])
    """

    def __init__(self, layer: str = "fc6", clamp: bool = True):
        if layer not in CODE_SHAPES:
            raise ValueError(f"unknown DeePSiM layer {layer!r}; choose one of {', '.join(CODE_SHAPES)}")
        super().__init__(CODE_SHAPES[layer], (256, 256))
        self.layer = layer
        self.clamp = clamp
        # Registration order is the Caffe layer order, so state_dict() keys follow the prototxt.
        if layer == "pool5":
            self.Rconv6 = nn.Conv2d(256, 512, 3, padding=1)
            self.Rconv7 = nn.Conv2d(512, 512, 3, padding=1)
            self.Rconv8 = nn.Conv2d(512, 512, 3, padding=0)
            self._front = ("Rconv6", "Rconv7", "Rconv8")
            channels = 512
        else:
            self.defc7 = nn.Linear(CODE_SHAPES[layer][0], 4096)
            self.defc6 = nn.Linear(4096, 4096)
            self.defc5 = nn.Linear(4096, 4096)
            self._front = ("defc7", "defc6", "defc5")
            channels = 256
        for name, out, k, s, p in _BACK_END:
            setattr(self, name, nn.ConvTranspose2d(channels, out, k, stride=s, padding=p))
            channels = out
        self.register_buffer("mean_rgb", torch.tensor(CAFFE_MEAN_RGB).view(1, 3, 1, 1), persistent=False)

    def raw(self, code: torch.Tensor) -> torch.Tensor:
        """The network output in Caffe's convention: (N, 3, 256, 256) BGR, 0-255 minus the mean."""
        x = code
        for name in self._front:
            x = F.leaky_relu(getattr(self, name)(x), NEGATIVE_SLOPE)
        if self.layer != "pool5":
            x = x.view(-1, 256, 4, 4)  # Caffe's Reshape layer (C-order, as torch)
        for name, *_ in _BACK_END[:-1]:
            x = F.leaky_relu(getattr(self, name)(x), NEGATIVE_SLOPE)
        return self.deconv0(x)

    def to_rgb01(self, raw: torch.Tensor) -> torch.Tensor:
        """Caffe convention (BGR, mean-subtracted, 0-255) -> RGB in [0, 1] (clamped if ``self.clamp``)."""
        image = (raw.flip(1) + self.mean_rgb) / 255.0
        return image.clamp(0.0, 1.0) if self.clamp else image

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        return self.to_rgb01(self.raw(code))

    def load_bounds(self, path: str | Path, lower: float = 0.0) -> "DeePSiMGenerator":
        """Clip the code to ``[lower, ub]`` with per-unit upper bounds ``ub`` read from ``path``.

        See :func:`read_bounds` for the accepted formats. The paper's lower bound is 0 (post-ReLU codes).
        """
        return self.set_bounds(lower=lower, upper=read_bounds(path, self.code_shape))


def read_bounds(path: str | Path, code_shape: tuple[int, ...]) -> torch.Tensor:
    """Per-unit upper bounds from a file, shaped ``code_shape``.

    Accepts the paper's whitespace-separated text files (``act_range/3x/fc6.txt``: one number per
    code unit, pool5 maps flattened in C, H, W order as Caffe does), ``.npy`` arrays and torch files
    holding a tensor. Any shape with the right number of elements is accepted.

    Raises:
        WeightsError: the file cannot be read, or holds the wrong number of values.
    """
    path = Path(path)
    try:
        if path.suffix == ".npy":
            values = torch.from_numpy(np.load(path, allow_pickle=False).astype(np.float32))
        elif path.suffix in (".pt", ".pth"):
            values = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(values, torch.Tensor):
                raise TypeError("the file does not hold a tensor")
            values = values.float()
        else:
            values = torch.from_numpy(np.loadtxt(path, dtype=np.float32, ndmin=1).reshape(-1))
    except Exception as exc:
        raise WeightsError(f"cannot read code bounds from {path} ({type(exc).__name__}: {exc})") from exc
    expected = int(np.prod(code_shape))
    if values.numel() != expected:
        raise WeightsError(
            f"{path} holds {values.numel()} bounds, expected {expected} (one per unit of a code of shape {code_shape})"
        )
    if not torch.isfinite(values).all():
        raise WeightsError(f"{path} holds non-finite bounds")
    return values.reshape(code_shape)


_SYNTH_RAW = "https://raw.githubusercontent.com/Evolving-AI-Lab/synthesizing/master/act_range/3x/"

# The paper's clipping bounds (3 standard deviations), one text file per code layer. No sha256 is
# published: the hub records one on first use. MIT licence (Evolving-AI-Lab/synthesizing).
BOUNDS_SOURCES: dict[str, WeightSource] = {
    layer: WeightSource(
        filename=f"deepsim_act_range_3x_{layer}.txt",
        urls=(_SYNTH_RAW + f"{file}.txt",),
        license="MIT",
        notes=f"Upper bounds of the {layer} code (3 sigma above the mean activation), Nguyen et al. 2016.",
    )
    for layer, file in (("fc6", "fc6"), ("fc7", "fc7"), ("fc8", "fc8"), ("pool5", "conv5"))
}


def paper_bounds(layer: str) -> Callable[[Generator], None]:
    """A registry ``bounds`` hook: the paper's ``[0, 3 sigma]`` clipping when the bounds file is cached.

    Without the file (``$DGNAM_HOME/weights/deepsim_act_range_3x_<layer>.txt``; fetch it with
    ``dgnam.download_weights(BOUNDS_SOURCES[layer])``) the code gets only the lower bound 0, and a
    warning says so. A cached file whose hash differs from the recorded one is refused.

    The lower bound is 0 for every layer, as ``act_max.py`` set it whenever a bounds file was given:
    the fc6, fc7 and pool5 codes are post-ReLU activations; fc8 codes (logits) are not, so for fc8
    this follows the paper's code rather than the encoder's range.
    """
    source = BOUNDS_SOURCES[layer]

    def apply(gen: Generator) -> None:
        cached = dgnam_home() / "weights" / source.filename
        if not cached.is_file():
            warnings.warn(
                f"code bounds {source.filename} not found: clipping the {layer} code to [0, inf) only. "
                f"For the paper's [0, 3 sigma] bounds put {source.urls[0]} at {cached} "
                f"(or call dgnam.download_weights(BOUNDS_SOURCES[{layer!r}])).",
                stacklevel=3,
            )
            gen.set_bounds(lower=0.0)
            return
        gen.set_bounds(lower=0.0, upper=read_bounds(resolve_weights(source), gen.code_shape))

    return apply
