"""Compute MACO's fixed amplitude spectrum: the mean Fourier amplitude of photos, in decorrelated colour.

    python scripts/maco_spectrum.py --skimage [--size 64] [--crops 64] [--seed 0] [--out FILE]
    python scripts/maco_spectrum.py --pool pool/ [--size 64] [--crops 1] [--out FILE]

Each photo gives ``--crops`` random square crops (side 25-100 % of its short side, uniform position),
resized to ``--size`` px with antialiasing; :func:`dgnam.methods.maco.average_spectrum` averages
``|rfft2(decorrelate(crop))|``. The result is written as float16 safetensors (``magnitude``, shape
(3, size, size // 2 + 1), a few KB) with the recipe in its metadata, and its sha256 is printed: put it
in ``dgnam.methods.maco.SPECTRA`` when the file is shipped. Shipped: ``pool`` (the default), the second command on
the 23,356-image pool of ``dgnam pool build`` (160 px, seed 0) that BENCHMARKS.md uses
(``--out src/dgnam/data/maco_spectrum_pool.safetensors``), and ``skimage_photos``, the first command with
its defaults (``--out src/dgnam/data/maco_spectrum_skimage.safetensors``), which any machine with
scikit-image reproduces byte for byte (a test does). The output is identical on a re-run (fixed seed,
float64 sums).

``--skimage`` uses the colour photos among scikit-image's samples (grey ones would leave the colour
channels' amplitude too low); ``--pool`` takes every image of a ``dgnam pool build`` folder.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dgnam.infra.hub import sha256_file
from dgnam.methods.maco import average_spectrum

#: scikit-image's colour photos (dgnam.pool.SKIMAGE_PHOTOS less the grey ones); motorcycle: the left view.
SKIMAGE_COLOUR = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "stereo_motorcycle")


def skimage_photos() -> list[np.ndarray]:
    import skimage.data

    photos = []
    for name in SKIMAGE_COLOUR:
        pixels = getattr(skimage.data, name)()
        photos.append(pixels[0] if name == "stereo_motorcycle" else pixels)
    return photos


def pool_photos(folder: Path) -> list[np.ndarray]:
    from dgnam.pool import load_pool

    images, _ = load_pool(folder, mmap=True)
    return [images[i] for i in range(len(images))]


def pool_identity(folder: Path) -> str:
    """The pool's size, seed and image count from its card (not its path, which differs between machines)."""
    card = json.loads((folder / "card.json").read_text())
    return f"dgnam pool build, {card.get('n_images')} images of {card.get('size')} px, seed {card.get('seed')}"


def random_crops(photo: np.ndarray, n: int, size: int, rng: np.random.Generator) -> torch.Tensor:
    """``n`` random square crops of an (H, W, 3) uint8 photo, resized to ``size``: (n, 3, size, size) in [0, 1]."""
    x = torch.from_numpy(np.array(photo[..., :3])).permute(2, 0, 1).double() / 255.0  # a copy: pools are memory-mapped
    h, w = x.shape[1:]
    short = min(h, w)
    crops = []
    for _ in range(n):
        side = int(rng.integers(max(size, short // 4), short + 1))
        top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        crop = x[None, :, top : top + side, left : left + side]
        crops.append(F.interpolate(crop, size=(size, size), mode="bilinear", antialias=side > size, align_corners=False)[0])
    return torch.stack(crops)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--skimage", action="store_true", help="scikit-image's colour photos")
    source.add_argument("--pool", type=Path, help="a `dgnam pool build` folder")
    parser.add_argument("--size", type=int, default=64, help="spectrum size in px (default 64: 12.7 KB in float16)")
    parser.add_argument("--crops", type=int, default=None, help="random crops per photo (default 64 for --skimage, 1 for --pool)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("maco_spectrum.safetensors"))
    args = parser.parse_args(argv)

    photos = skimage_photos() if args.skimage else pool_photos(args.pool)
    crops = args.crops or (64 if args.skimage else 1)
    rng = np.random.default_rng(args.seed)
    total = torch.zeros(3, args.size, args.size // 2 + 1, dtype=torch.float64)
    count = 0
    for photo in photos:
        batch = random_crops(photo, crops, args.size, rng)
        total += average_spectrum(batch) * len(batch)
        count += len(batch)
    magnitude = (total / count).to(torch.float16).contiguous()

    from safetensors.torch import save_file

    recipe = {"source": "skimage:" + ",".join(SKIMAGE_COLOUR) if args.skimage else f"pool:{pool_identity(args.pool)}", "images": len(photos),
              "crops_per_image": crops, "size": args.size, "seed": args.seed, "colour": "decorrelated (lucid's matrix)",
              "fft": "rfft2 norm=ortho, mean amplitude"}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"magnitude": magnitude}, str(args.out), metadata={"recipe": json.dumps(recipe, sort_keys=True)})
    print(f"{args.out}: {tuple(magnitude.shape)} from {count} crops of {len(photos)} photos, "
          f"{args.out.stat().st_size} bytes, sha256 {sha256_file(args.out)}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
