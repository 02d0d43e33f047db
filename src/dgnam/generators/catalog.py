"""Looking up and loading registered generators: :func:`list_generators`, :func:`get_generator_spec`,
:func:`load_generator` (the built-in entries of :mod:`.registry` are registered on first use)."""

from __future__ import annotations

from pathlib import Path

from ..infra.hub import check_explicit, load_state_dict, load_strict, resolve_weights
from .base import Generator
from .spec import _REGISTRY, GeneratorSpec

_BUILTIN_LOADED = False


def _ensure_builtin() -> None:
    """Register the built-in generators on first use (no work at import)."""
    global _BUILTIN_LOADED
    if not _BUILTIN_LOADED:
        _BUILTIN_LOADED = True
        from . import registry  # noqa: F401


def list_generators() -> list[str]:
    """The registered generators' names, sorted."""
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_generator_spec(name: str) -> GeneratorSpec:
    """The registry entry ``name``; an unknown name is an error naming the nearest ones."""
    _ensure_builtin()
    if name not in _REGISTRY:
        from ..infra.messages import unknown_name

        raise unknown_name("generator", name, _REGISTRY)
    return _REGISTRY[name]


def is_generator_file(name: str) -> bool:
    """Whether a generator argument names a file (``.safetensors`` or a path) rather than a registry entry."""
    return name.endswith(".safetensors") or "/" in name or "\\" in name


def load_generator(name: str, weights: str | Path | None = None, download: bool = False) -> Generator:
    """Build a registered generator with its weights and clipping bounds.

    Args:
        name: Registry name (see :func:`list_generators`), or the path of a ``.safetensors`` prior
            written by ``dgnam train-generator --export``.
        weights: Optional local weight file instead of the registry's source.
        download: Allow downloading weights that are not found offline.

    Returns:
        The generator in eval mode with frozen parameters.
    """
    if is_generator_file(name):
        from ..infra.hub import WeightsError
        from ..infra.messages import short
        from .prior import load_prior

        if not Path(name).is_file():
            what = "is a folder" if Path(name).is_dir() else "does not exist"
            raise WeightsError(f"generator file {short(name)} {what}: give a .safetensors prior (from train-generator --export), "
                               f"or a registered name (`dgnam generators`)")
        gen = load_prior(name)
    else:
        spec = get_generator_spec(name)
        path = resolve_weights(spec.weights, weights, download=download)
        if spec.builder is None:  # a dgnam prior: the file carries its architecture and code statistics
            from .prior import load_prior

            gen = load_prior(path)
        else:
            gen = spec.builder()
            load_strict(gen, load_state_dict(path), what=name)
        if weights is not None:  # the user's file, loaded strictly above: a warning when it is not the registry's
            check_explicit(path, spec.weights, f"generator {name}")
        if spec.bounds is not None:
            spec.bounds(gen)
    gen.eval()
    for p in gen.parameters():
        p.requires_grad_(False)
    return gen
