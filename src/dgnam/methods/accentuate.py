"""Feature accentuation: activation maximization started from a real photo instead of noise.

Hamblin, Fel, Saha, Konkle & Alvarez (2024, "Feature Accentuation: Revealing 'What' Features
Respond to in Natural Images") start the optimization from a natural image, so the result shows what
the unit would change *in that image*. Here:

- DGN-AM starts from the photo's code ``y0 = E(photo)``, where E is the encoder layer the prior was
  trained to invert (a dgnam prior names it in its file, ``config.encoder``/``config.layer``; a
  registered prior in its registry entry, ``GeneratorSpec.encoder = "net:layer"``). G(y0) is the
  prior's reconstruction of the photo; the ascent then moves that code.
- Pixel methods start from the photo's pixels (the Fourier parameterization is inverted exactly).

Compute only. ``dgnam visualize --init-image PHOTO`` and the atlas (top exemplar, accentuated) use it.

Example:
    >>> photo = load_photo("cat.jpg", 224)
    >>> r = accentuate(net, parse_units(["logits:281"]), [0], gen, dgnam_config(gen), photo[None])
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..nets import Target
from ..core.units import Unit
from .base import AMResult

#: Maps images (N, 3, H, W) in [0, 1] to codes (N, *code_shape).
Encoder = Callable[[torch.Tensor], torch.Tensor]


def load_photo(path: str | Path, size: int | None = None) -> torch.Tensor:
    """A photo as a (3, H, W) tensor in [0, 1]: its central square resized to ``size`` (None: as is).

    Raises:
        FileNotFoundError: no such file.
    """
    from ..infra.images import center_square_resize, read_image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--init-image {path}: no such file (give a photo: PNG, JPEG, ...)")
    pixels = read_image(path)
    if size is not None:
        pixels = center_square_resize(pixels, size)
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0


def encoder_name(generator, name: str | None = None) -> tuple[str, str]:
    """``(net, layer)`` whose features ``generator`` inverts: from a dgnam prior's own config, else
    from the registry entry ``name`` (``GeneratorSpec.encoder``).

    Raises:
        ValueError: the prior names no encoder (then no photo can be encoded; a pixel method can
            still start from the photo).
    """
    config = getattr(generator, "config", None)
    if config is not None and getattr(config, "encoder", None) and getattr(config, "layer", None):
        return config.encoder, config.layer
    if name and not str(name).endswith(".safetensors"):
        from ..generators import get_generator_spec

        spec = get_generator_spec(name).encoder
        if ":" in spec:
            net, layer = spec.split(":", 1)
            return net, layer
    raise ValueError(f"the generator {name or type(generator).__name__} does not name the encoder it inverts, so a photo "
                     "has no code: give its registry entry an encoder 'net:layer', or start a pixel method (--pixel) from the photo")


def prior_encoder(generator, target: Target | None = None, name: str | None = None, download: bool = False) -> Encoder:
    """E of the prior: the target's own layer when the prior inverts the target (no second net
    loaded), else the named net loaded from the registry, on the generator's device."""
    from .ppgn import layer_encoder, load_encoder

    net, layer = encoder_name(generator, name)
    if target is not None and target.name == net:
        return layer_encoder(target, layer)
    return load_encoder(net, layer, device=generator.lower.device, download=download)


@torch.no_grad()
def photo_codes(generator, encoder: Encoder, photos: torch.Tensor) -> torch.Tensor:
    """``E(photos)`` shaped as the generator's codes and clipped to its bounds.

    Raises:
        ValueError: the encoder's output does not have the generator's code size.
    """
    codes = encoder(photos.to(generator.lower.device)).float()
    want = int(np.prod(generator.code_shape))
    if codes[0].numel() != want:
        raise ValueError(f"the encoder gives codes of {tuple(codes.shape[1:])}, the generator takes {generator.code_shape}: "
                         "this prior does not invert that layer")
    return generator.clip(codes.reshape(len(codes), *generator.code_shape))


def accentuate(
    target: Target,
    units: Sequence[Unit],
    seeds: Sequence[int],
    generator=None,
    config=None,
    init_images: torch.Tensor | None = None,
    encoder: Encoder | None = None,
    generator_name: str | None = None,
    progress: bool = False,
) -> AMResult:
    """Optimize one image per unit and seed, from ``init_images`` when given (else from noise).

    Args:
        target: The net.
        units: One unit per image.
        seeds: One seed per image (it still seeds the random transforms).
        generator: A prior for DGN-AM, or None for the pixel method of ``config``.
        config: :class:`~dgnam.methods.dgn_am.DGNAMConfig` / :class:`~dgnam.methods.pixel.PixelConfig`; None: what
            :func:`~dgnam.methods.choose.resolve` gives (the prior's measured settings, or the net's default pixel method).
        init_images: (N, 3, H, W) photos in [0, 1], one per unit, or None (the usual random start).
        encoder: The prior's encoder (default :func:`prior_encoder`); only used with a generator and photos.
        generator_name: Registry name of the generator, to find its encoder when the file does not say.
        progress: Show the optimization's progress bar.

    Returns:
        The batch's :class:`~dgnam.methods.base.AMResult`.
    """
    if generator is not None:
        from .dgn_am import dgn_am, dgnam_config

        config = config if config is not None else dgnam_config(generator)  # as dgn_am would: the target's form depends on it
        init_code = None
        if init_images is not None:
            encoder = encoder or prior_encoder(generator, target, generator_name)
            init_code = photo_codes(generator, encoder, init_images)
        fast = target.fast([u.layer for u in units]) if getattr(config, "bn_weight", 0) == 0 else target
        return dgn_am(fast, generator, list(units), list(seeds), config, progress=progress, init_code=init_code)
    from .pixel import pixel_am

    return pixel_am(target, list(units), list(seeds), config, progress=progress, init_images=init_images)


__all__ = ["Encoder", "load_photo", "encoder_name", "prior_encoder", "photo_codes", "accentuate"]
