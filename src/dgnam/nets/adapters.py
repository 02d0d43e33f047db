"""Nets named by one string: registered names, other libraries' classifiers, or the user's own code.

The ``--net`` syntax (:func:`load_target`):

- ``NAME``: a registered net (``dgnam nets``).
- ``torchvision:NAME[:WEIGHTS]``: ``torchvision.models.get_model``; input size, mean and std from the
  weights' ``transforms()``, class names from ``weights.meta["categories"]`` (``WEIGHTS`` defaults
  to ``DEFAULT``; ``none``: the architecture untrained, with the default weights' spec).
- ``timm:NAME[.TAG][:none]``: ``timm.create_model(pretrained=True)``; input size, mean and std from its
  ``pretrained_cfg``; ImageNet class names when the head has 1000 classes (``:none``: untrained).
- ``hf:REPO_ID`` or ``hf:DIR``: ``transformers.AutoModelForImageClassification`` (a repo in the
  Hugging Face cache, or a local folder with ``config.json``); size, mean and std from the image
  processor's ``preprocessor_config.json`` (else the config's ``image_size`` and transformers'
  default mean/std 0.5), class names from ``config.id2label``; the net's output is the ``logits``
  of the returned ``ModelOutput``.
- ``PATH.py:FUNC`` or ``package.module:FUNC``: imports that file or module (it is the user's own
  code, run as given; never a string read from a run folder, see :func:`check_recorded_ref`) and
  calls ``FUNC()``, which returns an ``nn.Module``, ``(module, InputSpec)`` or
  ``(module, InputSpec, categories)``; without an InputSpec the defaults apply (224 px RGB,
  ImageNet mean/std) unless the overrides say otherwise.

Weights come from those libraries' own caches; nothing downloads without ``download=True``
(``--download``), and a missing file raises :class:`~dgnam.infra.hub.WeightsError` naming the cache, the
flags and the pip extra. A local weight file (``weights=``, ``--net-weights``) always wins: the net is
built untrained and the file loaded, with no cache look-up. Untrained nets are built under seed 0 (the
same net every time). Misspelt model and weight names get the nearest valid ones. The adapters only
map metadata: the spec derivation is in the pure functions :func:`torchvision_spec`, :func:`timm_spec`
and :func:`hf_spec`. Resize or crop settings of the libraries (``resize_size``, ``crop_pct``,
interpolation) concern photos and are not used: synthesized images are made at the net's size or
resized to it (``fit="resize"``).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import sys
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from torch import nn

from ..infra.hub import WeightsError, load_state_dict, load_strict
from ..infra.messages import nearest_names, short
from .spec import imagenet_categories
from .target import InputSpec, Target, wrap_model

LIBRARIES = ("torchvision", "timm", "hf")
SYNTAX = "NAME (`dgnam nets`), torchvision:NAME[:WEIGHTS|:none], timm:NAME[:none], hf:REPO_ID or hf:DIR, PATH.py:FUNC or package.module:FUNC"


@dataclass(frozen=True)
class SpecOverrides:
    """Input-spec values given on the command line (``--input-size`` ...); None keeps the net's own.

    Attributes:
        size: (height, width) the net takes.
        mean: Per-channel mean (its length sets the channel count, as in :class:`InputSpec`).
        std: Per-channel std.
        value_range: 1.0 for [0, 1] inputs, 255.0 for Caffe-style ones.
        bgr: True: the net takes BGR (3 channels); False: RGB; None: the net's own.
        categories: Names of the output units.
    """

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    value_range: float | None = None
    bgr: bool | None = None
    categories: tuple[str, ...] | None = None

    def apply(self, spec: InputSpec) -> InputSpec:
        """``spec`` with the given values replaced (a mean of another length must come with a std)."""
        changes: dict[str, Any] = {k: v for k, v in (("size", self.size), ("mean", self.mean), ("std", self.std), ("value_range", self.value_range)) if v is not None}
        if self.bgr is not None:
            changes["channel_order"] = "BGR" if self.bgr else "RGB"
        if self.size is not None:  # a net said to take S px takes images of S px
            changes["min_size"] = min(spec.min_size, *self.size)
        try:
            return replace(spec, **changes)
        except ValueError as exc:
            raise ValueError(f"the input-spec flags do not fit together: {exc} (give --mean and --std with one value per channel)") from None

    def to_dict(self) -> dict:
        """JSON-ready, without ``categories`` (recorded as a count)."""
        record = {k: v for k, v in asdict(self).items() if k != "categories" and v is not None}
        if self.categories is not None:
            record["categories"] = len(self.categories)
        return record


def parse_net_ref(ref: str) -> tuple[str, str]:
    """``(kind, rest)``: kind is ``registered``, ``torchvision``, ``timm``, ``hf``, ``file`` or ``module``.

    Example:
        >>> parse_net_ref("torchvision:resnet50:IMAGENET1K_V2")
        ('torchvision', 'resnet50:IMAGENET1K_V2')
        >>> parse_net_ref("my_model.py:build")
        ('file', 'my_model.py:build')
    """
    kind, sep, rest = ref.partition(":")
    if not sep:
        return "registered", ref
    if kind in LIBRARIES:
        if not rest:
            raise ValueError(f"--net {ref!r} names no model after '{kind}:'; write {SYNTAX}")
        return kind, rest
    path, _, func = ref.rpartition(":")
    if not path or not func.isidentifier():
        raise ValueError(f"--net {ref!r}: expected {SYNTAX}")
    return ("file" if path.endswith(".py") else "module"), ref


#: What a net string read from a record (a run folder's JSON) may name after ``torchvision:``, ``timm:`` or ``hf:``:
#: a library's model name or a Hugging Face repo id, never a path (``hf:DIR``, timm's ``local-dir:``) or a URL.
RECORDED_NAMES = {
    "torchvision": re.compile(r"[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?"),
    "timm": re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(:none)?"),
    "hf": re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?"),
}


def check_recorded_ref(ref: object, where: str) -> str:
    """``ref`` read from a record (a run folder is data someone may send), refused unless it runs no code and opens no path.

    Allowed: a registered name (a registry look-up) and ``torchvision:``/``timm:``/``hf:REPO_ID`` specs of
    the libraries' own models. Refused: ``PATH.py:FUNC`` and ``package.module:FUNC`` (code), ``hf:DIR`` and
    anything path-like; the user re-creates those with ``--net`` (what they type runs as given).

    Args:
        ref: The value of the record's ``net`` field.
        where: The record, for the message (``runs/x/results.json``).

    Returns:
        ``ref``, to pass to :func:`load_target`.

    Raises:
        ValueError: one line naming the value and ``--net``.

    Example:
        >>> check_recorded_ref("torchvision:resnet50", "runs/x/results.json")
        'torchvision:resnet50'
        >>> check_recorded_ref("/tmp/evil.py:build", "runs/x/results.json")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: runs/x/results.json names the net '/tmp/evil.py:build', code or a path: ... pass --net ...
    """
    fix = "a run folder is data, and dgnam runs no code and opens no path it names; pass --net explicitly to re-create that net"
    if not isinstance(ref, str) or not ref or "\x00" in ref:
        raise ValueError(f"{where} names the net {short(repr(ref))}, not a net string: {fix}")
    try:
        kind, rest = parse_net_ref(ref)
    except ValueError:
        kind, rest = "file", ref
    if kind == "registered" or (kind in RECORDED_NAMES and RECORDED_NAMES[kind].fullmatch(rest) and not (kind == "hf" and Path(rest).exists())):
        return ref
    raise ValueError(f"{where} names the net {short(repr(ref))}, code or a path: {fix} (only if you trust it)")


def load_target(ref: str, weights: str | Path | None = None, download: bool = False, overrides: SpecOverrides | None = None,
                fit: str | None = None, pretrained: bool = True) -> Target:  # fmt: skip
    """Any net by its ``--net`` string (see the module docstring), as a :class:`Target`.

    Local weights always win: with ``weights`` a library net is built untrained and the file loaded into
    it, so no cache is looked at and nothing downloads (the spec still comes from the library's metadata).

    Args:
        ref: e.g. ``"efficientnet_lite0"``, ``"torchvision:resnet50"``, ``"hf:./tiny_vit"``, ``"net.py:build"``;
            ``"torchvision:NAME:none"`` / ``"timm:NAME:none"``: the architecture untrained (seeded).
        weights: A local weight file loaded after a strict key/shape check (for registered nets, a
            file whose sha256 differs from the registry's loads with a warning).
        download: Let the library download weights missing from its cache.
        overrides: Input-spec values that replace the net's own.
        fit: Override of the spec's fit rule.
        pretrained: False: build the net without its weights (seeded, :func:`untrained`) unless ``weights``
            is given; for what needs only the architecture (``dgnam layers``).

    Returns:
        The net in eval mode with frozen parameters.

    Raises:
        ValueError: the string does not parse (misspelt library names get the nearest valid ones), or the
            callable returns something else than a module.
        WeightsError: weights not in the cache and ``download`` is False.
        ImportError: the library is missing (the message names the pip extra).

    Example:
        >>> net = load_target("my_model.py:build", overrides=SpecOverrides(size=(64, 64)))
    """
    from .catalog import get_net_spec, load_net

    overrides = overrides or SpecOverrides()
    kind, rest = parse_net_ref(ref)
    if kind == "registered":
        if pretrained or weights is not None:
            target = load_net(ref, weights=weights, download=download, fit=fit)
        else:
            entry = get_net_spec(ref)
            model = untrained(entry.builder).eval().requires_grad_(False)
            target = Target(model, entry.input if fit is None else replace(entry.input, fit=fit), entry.categories, name=ref)
        if overrides == SpecOverrides():
            return target
        model, spec, categories = target.model, target.spec, target.categories
    else:
        builders = {"torchvision": torchvision_net, "timm": timm_net, "hf": hf_net}
        wanted = pretrained and weights is None  # a weight file replaces the library's: never look for those
        with warnings.catch_warnings():
            if overrides.mean is not None and overrides.std is not None:  # the user's mean/std replace the assumed ones
                warnings.simplefilter("ignore", NoPreprocessorWarning)
            model, spec, categories = builders[kind](rest, download, wanted) if kind in builders else callable_net(rest)
        if weights is not None:
            load_strict(model, load_state_dict(weights), what=ref)
        spec = spec or InputSpec()
        if fit is not None:
            spec = replace(spec, fit=fit)
        model.eval().requires_grad_(False)  # built here for this run: frozen for good, as load_net's nets
    target = wrap_model(model, overrides.apply(spec), overrides.categories or categories, name=ref)
    if overrides.categories is not None:
        check_categories(target, len(overrides.categories))
    return target


def check_categories(target: Target, given: int) -> None:
    """Refuse ``given`` class names (``--categories``) unless the net's ``logits`` has exactly that many outputs.

    One probe pass at the net's native size counts them (the count is not known before: a module
    or a user's callable may return anything).

    Raises:
        ValueError: one line giving both counts.
    """
    import torch

    from ..core.hooks import LOGITS, layer_output
    from ..core.units import layer_kind

    h, w = target.spec.size
    with torch.no_grad():
        shape = tuple(layer_output(target, LOGITS, torch.zeros(1, target.spec.channels, h, w, device=target.mean.device)).shape)
    outputs = shape[2] if layer_kind(shape) == "tokens" else shape[1]
    if outputs != given:
        raise ValueError(f"--categories gives {given} class names, but {target.name}'s logits have {outputs} outputs: "
                         f"give one name per output unit, in order ({outputs} lines)")


# --- pure spec derivation (tested without the libraries) ------------------------------------------


def _per_channel(values: Sequence[float], channels: int) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if len(values) == 1 or channels == 1:  # one value for all channels, or an RGB mean for a 1-channel net
        return (sum(values) / len(values),) * channels
    raise ValueError(f"{len(values)} mean/std values for a {channels}-channel net")


def _square(size) -> tuple[int, int]:
    if isinstance(size, (int, float)):
        return int(size), int(size)
    size = [int(s) for s in size]
    return (size[0], size[0]) if len(size) == 1 else (size[-2], size[-1])


def torchvision_spec(transforms: Any, meta: Mapping) -> tuple[InputSpec, tuple[str, ...] | None]:
    """InputSpec and class names from torchvision's ``weights.transforms()`` and ``weights.meta``.

    ``transforms`` is an ``ImageClassification`` preset (attributes ``crop_size``, ``mean``, ``std``);
    the net's size is its crop size.
    """
    size = _square(transforms.crop_size)
    spec = InputSpec(size=size, mean=tuple(map(float, transforms.mean)), std=tuple(map(float, transforms.std)), min_size=min(32, *size))
    categories = meta.get("categories")
    return spec, tuple(categories) if categories else None


def timm_spec(cfg: Mapping, num_classes: int | None = None) -> tuple[InputSpec, tuple[str, ...] | None]:
    """InputSpec and class names from a timm ``pretrained_cfg`` dict.

    Uses ``input_size`` (C, H, W), ``mean`` and ``std``; class names are ``label_names`` when the cfg
    has them, ImageNet-1k's when the head has 1000 classes, else none.
    """
    channels, h, w = (int(v) for v in cfg.get("input_size", (3, 224, 224)))
    mean = _per_channel(cfg.get("mean", (0.485, 0.456, 0.406)), channels)
    std = _per_channel(cfg.get("std", (0.229, 0.224, 0.225)), channels)
    spec = InputSpec(size=(h, w), mean=mean, std=std, min_size=min(32, h, w))
    classes = num_classes if num_classes is not None else cfg.get("num_classes")
    names = cfg.get("label_names")
    if names and (classes is None or len(names) == classes):
        return spec, tuple(names)
    return spec, imagenet_categories() if classes == 1000 else None


def hf_spec(config: Mapping, processor: Mapping | None = None) -> tuple[InputSpec, tuple[str, ...] | None]:
    """InputSpec and class names from a transformers model config and its image processor config (dicts).

    Size: the processor's ``crop_size`` if it crops, else ``size`` (``height``/``width``,
    ``shortest_edge`` or an int), else the config's ``image_size``. Mean/std: the processor's
    ``image_mean``/``image_std`` (0/1 when ``do_normalize`` is false; transformers' default 0.5/0.5
    without a processor config). Value range: 1 unless ``do_rescale`` is false (then 255).
    Channels: ``num_channels`` (default 3). Class names: ``id2label`` in index order.
    """
    processor = dict(processor or {})
    channels = int(config.get("num_channels", 3))
    size = processor.get("crop_size") if processor.get("do_center_crop") else None
    size = size or processor.get("size") or config.get("image_size", 224)
    if isinstance(size, Mapping):
        size = (size["height"], size["width"]) if "height" in size else size.get("shortest_edge", size.get("longest_edge", 224))
    size = _square(size)
    if processor.get("do_normalize", True):
        mean = _per_channel(processor.get("image_mean", (0.5,)), channels)
        std = _per_channel(processor.get("image_std", (0.5,)), channels)
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    value_range = 1.0 if processor.get("do_rescale", True) else 255.0
    spec = InputSpec(size=size, mean=mean, std=std, value_range=value_range, min_size=min(32, *size))
    labels = config.get("id2label") or {}
    categories = tuple(str(labels[k]) for k in sorted(labels, key=int)) if labels else None
    return spec, categories


# --- the adapters: the library's constructor plus the mapping above --------------------------------


def _library(module: str, extra: str):
    """Import an optional library; failures (also torchvision's operator errors) name the pip extra."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # torchvision 0.28 beside a mismatched torch raises RuntimeError at import
        raise ImportError(f"{module} is not usable here ({type(exc).__name__}: {exc}); pip install 'dgnam[{extra}]' "
                          "(with a torch build it supports)") from None  # fmt: skip


def _missing(what: str, cache: Path | str, extra: str, ref: str | None = None) -> WeightsError:
    untrained_hint = f", or --net {ref}:{UNTRAINED} for an untrained net" if ref else ""
    return WeightsError(f"{what} is not in the cache {cache}; give a local file with --net-weights FILE (weights=) or pass --download "
                        f"(download=True) to fetch it{untrained_hint}; with the library installed: pip install 'dgnam[{extra}]'")  # fmt: skip


@contextlib.contextmanager
def _fetching(what: str, ref: str):
    """A failed download or read of a library's weights (no network, an HTTP error, a truncated file: urllib's URLError is an
    OSError) as one :class:`WeightsError` line naming the ways round it, not the library's traceback."""
    try:
        yield
    except (OSError, RuntimeError) as exc:
        raise WeightsError(f"could not download or read {what} ({type(exc).__name__}: {short(str(exc))}); give a local file with "
                           f"--net-weights FILE, or --net {ref}:{UNTRAINED} for an untrained net") from None  # fmt: skip


#: The weights suffix of ``torchvision:NAME:none`` / ``timm:NAME:none``: the architecture with a seeded random init.
UNTRAINED = "none"


def did_you_mean(name: str, names: Sequence[str]) -> str:
    """`` Did you mean a, b?`` for the nearest of ``names`` (``infra.messages.nearest_names``), or ""."""
    close = nearest_names(name, names, n=3)
    return f" Did you mean {', '.join(close)}?" if close else ""


def untrained(build):
    """``build()`` under a fixed seed (0), the caller's random state untouched: ``NAME:none`` is the same net every time
    (so ``dgnam evaluate`` re-creates the net a run used)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build()


def torchvision_net(rest: str, download: bool = False, pretrained: bool = True) -> tuple[nn.Module, InputSpec, tuple[str, ...] | None]:
    """``torchvision:NAME[:WEIGHTS]``: the model with its weights, spec and class names.

    ``WEIGHTS`` ``none`` (or ``pretrained=False``: a weight file will be loaded, or only shapes are wanted) builds
    the architecture untrained (:func:`untrained`), sized for the named (else ``DEFAULT``) weights' classes; the spec and
    class names still come from those weights' metadata (nothing is read from the cache or downloaded).
    """
    import torch

    tv = _library("torchvision.models", "torchvision")
    name, _, weights_name = rest.partition(":")
    models = tv.list_models(module=tv)  # the classifiers: detection, segmentation and video models take other inputs
    if name not in models:
        if name in tv.list_models():
            raise ValueError(f"torchvision's {short(repr(name))} is not an image classifier: dgnam takes torchvision.models' classifiers "
                             "(torchvision.models.list_models(module=torchvision.models))")  # fmt: skip
        raise ValueError(f"torchvision has no classifier {short(repr(name))}.{did_you_mean(name, models)} "
                         "(torchvision.models.list_models(module=torchvision.models) lists them)")  # fmt: skip
    enum = tv.get_model_weights(name)
    random = weights_name.lower() == UNTRAINED
    choices = [w.name for w in enum]
    if weights_name and not random and weights_name not in choices + ["DEFAULT"]:
        raise ValueError(f"torchvision's {name} has no weights {short(repr(weights_name))}.{did_you_mean(weights_name, choices)} "
                         f"Its weights: {', '.join(choices + ['DEFAULT', UNTRAINED])}")  # fmt: skip
    weights = enum[weights_name if weights_name and not random else "DEFAULT"]
    spec, categories = torchvision_spec(weights.transforms(), weights.meta)
    if random or not pretrained:
        kwargs = {"num_classes": len(categories)} if categories else {}
        return untrained(lambda: tv.get_model(name, weights=None, **kwargs)), spec, categories
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    if not download and not (cache / Path(weights.url).name).is_file():
        raise _missing(f"torchvision weights {weights}", cache, "torchvision", f"torchvision:{name}")
    with _fetching(f"torchvision weights {weights}", f"torchvision:{name}"):
        return tv.get_model(name, weights=weights, progress=sys.stderr.isatty()), spec, categories  # no download bar in logs


def timm_net(name: str, download: bool = False, pretrained: bool = True) -> tuple[nn.Module, InputSpec, tuple[str, ...] | None]:
    """``timm:NAME[.TAG]``: the pretrained model from timm's cache (the Hugging Face hub cache or torch hub's).

    ``timm:NAME:none`` (or ``pretrained=False``) builds the architecture untrained (:func:`untrained`) with the
    tag's pretrained config (class count, spec): nothing is read from a cache or downloaded.
    """
    timm = _library("timm", "timm")
    random = name.endswith(":" + UNTRAINED)
    name = name[: -len(UNTRAINED) - 1] if random else name
    cfg = _timm_cfg(timm, name)
    if random or not pretrained:
        model = untrained(lambda: timm.create_model(name, pretrained=False))
    else:
        overlay = None
        if not download:
            path = _timm_cached_file(cfg) if cfg is not None else None
            if path is None:
                cache = _hf_cache() if getattr(cfg, "hf_hub_id", None) else _torch_hub_cache()
                raise _missing(f"timm weights for {short(repr(name))}", cache, "timm", f"timm:{name}" if cfg is not None else None)
            overlay = {"file": str(path)}
        with _fetching(f"timm weights for {short(repr(name))}", f"timm:{name}"):
            model = timm.create_model(name, pretrained=True, pretrained_cfg_overlay=overlay)
    spec, categories = timm_spec(dict(model.pretrained_cfg), getattr(model, "num_classes", None))
    return model, spec, categories


def _timm_cfg(timm, name: str):
    """timm's pretrained cfg of ``NAME[.TAG]``; a misspelt model or tag is a ValueError naming the nearest valid
    ones. None for a name with a source prefix (``hf-hub:``, ``local-dir:``), which timm resolves itself."""
    if ":" in name:
        return None
    arch = name.partition(".")[0]
    if not timm.is_model(arch):
        raise ValueError(f"timm has no model {short(repr(arch))}.{did_you_mean(arch, timm.list_models())} (timm.list_models() lists them)")
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # timm 1.0: "Invalid pretrained tag (...) for ..."
        cfg = None
    if cfg is None:
        tags = timm.list_pretrained(f"{arch}.*")
        raise ValueError(f"timm has no pretrained {short(repr(name))}.{did_you_mean(name, tags)} Its tags: {', '.join(tags[:12]) or 'none'}"
                         + (" ..." if len(tags) > 12 else ""))  # fmt: skip
    return cfg


def _torch_hub_cache() -> Path:
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def _hf_cache() -> str:
    try:
        from huggingface_hub.constants import HF_HUB_CACHE

        return str(HF_HUB_CACHE)
    except ImportError:
        return os.environ.get("HF_HUB_CACHE", "~/.cache/huggingface/hub")


def _timm_cached_file(cfg) -> Path | None:
    """The cached weight file of a timm pretrained cfg, or None."""
    repo = getattr(cfg, "hf_hub_id", None)
    if repo:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = repo.partition("@")
        for filename in (getattr(cfg, "hf_hub_filename", None), "model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
            if filename:
                found = try_to_load_from_cache(repo, filename, revision=revision or None)
                if isinstance(found, str):
                    return Path(found)
    url = getattr(cfg, "url", None)
    if url and (_torch_hub_cache() / Path(url).name).is_file():
        return _torch_hub_cache() / Path(url).name
    return None


def hf_net(ref: str, download: bool = False, pretrained: bool = True) -> tuple[nn.Module, InputSpec, tuple[str, ...] | None]:
    """``hf:REPO_ID`` or ``hf:DIR``: an image classifier from transformers, offline unless ``download``.

    ``pretrained=False`` reads only the model's ``config.json`` and builds it untrained (:func:`untrained`).
    """
    transformers = _library("transformers", "hf")
    local = Path(ref).expanduser()
    source = str(local) if local.is_dir() else ref
    auto = transformers.AutoModelForImageClassification
    try:
        if pretrained:
            model = auto.from_pretrained(source, local_files_only=not download)
        else:
            config = transformers.AutoConfig.from_pretrained(source, local_files_only=not download)
            model = untrained(lambda: auto.from_config(config))
    except OSError as exc:
        if local.is_dir() or download:
            raise ValueError(f"cannot load hf:{ref} as an image classifier: {exc}") from None
        raise _missing(f"Hugging Face model {ref!r}", _hf_cache(), "hf") from None
    processor = _hf_processor_config(local, ref, download)
    if processor is None:
        warnings.warn(f"hf:{ref} has no preprocessor_config.json: its inputs are taken as mean 0.5, std 0.5 per channel at the "
                      "config's image_size (transformers' defaults); if it was trained otherwise, give --mean and --std (and "
                      "--input-size)", NoPreprocessorWarning, stacklevel=3)  # fmt: skip
    spec, categories = hf_spec(model.config.to_dict(), processor)
    return model.eval(), spec, categories


class NoPreprocessorWarning(UserWarning):
    """An ``hf:`` net without its ``preprocessor_config.json``: transformers' default mean/std are assumed."""


def _hf_processor_config(local: Path, ref: str, download: bool) -> dict | None:
    """``preprocessor_config.json`` of a local folder or a cached repo, or None where there is none."""
    if local.is_dir():
        path = local / "preprocessor_config.json"
        return json.loads(path.read_text()) if path.is_file() else None
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(ref, "preprocessor_config.json", local_files_only=not download)).read_text())
    except Exception:  # not cached / not published: the model config's size and the default mean/std
        return None


def callable_net(ref: str) -> tuple[nn.Module, InputSpec | None, tuple[str, ...] | None]:
    """``PATH.py:FUNC`` or ``package.module:FUNC``: import it (the user's own code) and call ``FUNC()``."""
    path, _, func = ref.rpartition(":")
    if path.endswith(".py"):
        file = Path(path).expanduser()
        if not file.is_file():
            raise FileNotFoundError(f"--net {ref!r}: no file {file}")
        name = f"dgnam_user_net_{abs(hash(str(file.resolve())))}"
        spec = importlib.util.spec_from_file_location(name, file)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses and pickling look modules up here
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    else:
        try:
            module = importlib.import_module(path)
        except ModuleNotFoundError as exc:
            raise ValueError(f"--net {ref!r}: cannot import {path!r} ({exc}); expected {SYNTAX}") from None
    if not callable(getattr(module, func, None)):
        raise ValueError(f"--net {ref!r}: {path} has no callable {func!r}")
    return normalize_built(getattr(module, func)(), ref)


def normalize_built(built, ref: str = "model") -> tuple[nn.Module, InputSpec | None, tuple[str, ...] | None]:
    """``nn.Module`` | ``(module, InputSpec)`` | ``(module, InputSpec, categories)`` -> the triple."""
    items = tuple(built) if isinstance(built, (tuple, list)) else (built,)
    if not 1 <= len(items) <= 3 or not isinstance(items[0], nn.Module):
        raise ValueError(f"{ref} returned {type(built).__name__}: return an nn.Module, (module, InputSpec) or (module, InputSpec, categories)")
    spec = items[1] if len(items) > 1 else None
    if spec is not None and not isinstance(spec, InputSpec):
        raise ValueError(f"{ref} returned a {type(spec).__name__} as its second item: it must be a dgnam.InputSpec (or None)")
    categories = tuple(str(c) for c in items[2]) if len(items) > 2 and items[2] is not None else None
    return items[0], spec, categories


def read_categories(path: str | Path) -> tuple[str, ...]:
    """Class names from a text file, one per line (blank lines skipped)."""
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if not names:
        raise ValueError(f"{path} holds no class names (one per line)")
    return names


__all__ = ["SpecOverrides", "check_categories", "check_recorded_ref", "load_target", "parse_net_ref", "torchvision_spec", "timm_spec", "hf_spec", "normalize_built", "read_categories"]
