"""Images in and out: reading image files, tensors to PIL images, contact sheets."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont


def read_image(path: str | Path, keep_alpha: bool = False) -> np.ndarray:
    """Read an image file as uint8 pixels.

    Args:
        path: image file.
        keep_alpha: return (H, W, 4) RGBA instead of (H, W, 3) RGB.

    Returns:
        The pixels.
    """
    with Image.open(path) as im:
        im.load()
        return np.asarray(im.convert("RGBA" if keep_alpha else "RGB"), dtype=np.uint8)


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> 8-bit PIL image: RGB for 3 channels, greyscale ("L") for 1, and for any
    other channel count the channels' mean as greyscale (the full image is saved as .npy beside it)."""
    image = image.detach().clamp(0, 1)
    if image.shape[0] not in (1, 3):
        image = image.mean(0, keepdim=True)
    array = (image.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)



def contact_sheet(tiles: Sequence[tuple[Image.Image, str]], tile: int = 160, columns: int | None = None) -> Image.Image:
    """A grid of labelled thumbnails (label under each image)."""
    n = len(tiles)
    columns = columns or min(n, 8)
    rows = (n + columns - 1) // columns
    label_h = 30
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label_h)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, (image, label) in enumerate(tiles):
        r, c = divmod(k, columns)
        x, y = c * tile, r * (tile + label_h)
        sheet.paste(image.resize((tile, tile), Image.BILINEAR), (x, y))
        draw.multiline_text((x + 3, y + tile + 2), _fit(label, tile), fill="black", font=font, spacing=1)
    return sheet



def _fit(label: str, width: int, char_px: int = 6) -> str:
    limit = max(4, width // char_px)
    return "\n".join(line if len(line) <= limit else line[: limit - 1] + "…" for line in label.splitlines())
