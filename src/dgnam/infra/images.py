"""Images in and out: reading image files, tensors to PIL images and PNG bytes, contact sheets, and the pixel
operations every room shares (:func:`to_rgb`, :func:`crop_resize`, :func:`center_square_resize`)."""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps

from .messages import short

#: The most pixels dgnam decodes from one image file (100 megapixels, e.g. 10000x10000). A larger
#: header is refused before anything is decoded: a "decompression bomb" (a PNG of a few KB whose
#: header says 20000x20000) would otherwise take gigabytes.
MAX_PIXELS = 100_000_000

#: Sides of the square images dgnam makes from image files (``--size``; 16 px at least, as before) and
#: the largest side of a net's input (``--input-size``).
MIN_SIDE, MAX_SIDE = 16, 4096

#: Modes of integer greyscale pixels with 16 bits (PNG, TIFF, PGM): their range is 0-65535.
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


class ImageFileError(ValueError):
    """An image file dgnam refuses: more pixels than :data:`MAX_PIXELS`, or pixels without a known range."""


def _too_large(name: str, size: str) -> ImageFileError:
    return ImageFileError(f"{name} is {size} pixels, more than dgnam decodes ({MAX_PIXELS:,} pixels; a decompression bomb?): "
                          "give a smaller image (resize it)")


@contextmanager
def open_image(source: str | Path | bytes, name: str | None = None) -> Iterator[Image.Image]:
    """``PIL.Image.open`` with dgnam's pixel limit, checked from the header before anything is decoded.

    Every image file dgnam reads is opened here (or through :func:`read_image`).

    Args:
        source: an image file, or its bytes.
        name: what to call it in an error (default: the path; "image bytes" for bytes).

    Raises:
        ImageFileError: the header says more than :data:`MAX_PIXELS` pixels, or it is not an image.
    """
    label = short(name or ("image bytes" if isinstance(source, bytes) else source), 120)
    try:
        with warnings.catch_warnings():  # PIL warns above its own limit; ours is checked just below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except Image.DecompressionBombError as e:  # PIL refuses at twice its limit (above ours), before we see the size
        pixels = re.search(r"\((\d+) pixels\)", str(e))
        raise _too_large(label, f"{int(pixels.group(1)):,}" if pixels else "too many") from None
    except Image.UnidentifiedImageError:
        raise ImageFileError(f"{label} is not an image dgnam can read (not PNG, JPEG, WebP, TIFF, ...): give an image file") from None
    with im:
        if im.width * im.height > MAX_PIXELS:
            raise _too_large(label, f"{im.width}x{im.height} = {im.width * im.height:,}")
        yield im


def image_size(source: str | Path | bytes) -> tuple[int, int]:
    """``(width, height)`` of an image file, from its header (nothing is decoded)."""
    with open_image(source) as im:
        return im.size


def image_pixels(im: Image.Image, name: str = "the image", keep_alpha: bool = False, upright: bool = False) -> np.ndarray:
    """The uint8 pixels of an image just opened (by :func:`open_image`, not yet loaded), by its mode's real range.

    16-bit greyscale (PNG, TIFF, PGM) is scaled from 0-65535 to 0-255; float pixels (mode ``F``) are
    read as 0-1 and refused outside it; 32-bit integer pixels have no defined range and are refused.

    Args:
        im: the opened image.
        name: what to call it in an error.
        keep_alpha: return (H, W, 4) RGBA instead of (H, W, 3) RGB.
        upright: turn it as its EXIF orientation tag says (phone photos are stored sideways).

    Raises:
        ImageFileError: float pixels outside 0-1 (or not finite), or 32-bit integer pixels.
    """
    mode = "RGBA" if keep_alpha else "RGB"
    tile = im.tile[0].args if im.tile else None  # before loading: how the file stores an "I" image
    raw = str(tile if isinstance(tile, str) else (tile[0] if tile else ""))
    im.load()
    if upright:
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I", "F") or im.mode.startswith("I;"):
        values = np.asarray(im)
        if im.mode in _SIXTEEN_BIT or (im.mode == "I" and (raw.startswith("I;16") or im.format in ("PNG", "PPM"))):
            grey = np.clip(values, 0, 65535).astype(np.float64) * (255.0 / 65535.0)
        elif im.mode == "F":
            low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
            if not (np.isfinite(values).all() and low >= 0.0 and high <= 1.0):
                raise ImageFileError(f"{name} holds float pixels from {low:g} to {high:g}; dgnam reads float images as 0-1: "
                                     "scale it to 0-1, or save it as an 8- or 16-bit PNG")
            grey = values.astype(np.float64) * 255.0
        else:
            raise ImageFileError(f"{name} holds {im.mode} (32-bit integer) pixels, which have no defined range: save it as an 8- or 16-bit PNG")
        im = Image.fromarray(np.round(grey).astype(np.uint8))  # 2-D uint8: mode L
    return np.asarray(im.convert(mode), dtype=np.uint8)


def read_image(path: str | Path | bytes, keep_alpha: bool = False, upright: bool = False, name: str | None = None) -> np.ndarray:
    """Read an image file as uint8 pixels (checked by :func:`open_image`, converted by :func:`image_pixels`).

    Args:
        path: image file, or its bytes.
        keep_alpha: return (H, W, 4) RGBA instead of (H, W, 3) RGB.
        upright: turn it as its EXIF orientation tag says.
        name: what to call it in an error (default: the path).

    Returns:
        The pixels.

    Raises:
        ImageFileError: too many pixels, pixels without a known range, or data that cannot be decoded.
    """
    label = short(name or ("image bytes" if isinstance(path, bytes) else path), 120)
    with open_image(path, label) as im:
        try:
            return image_pixels(im, label, keep_alpha, upright)
        except OSError as e:  # PIL's decoding errors name no file ("image file is truncated")
            if e.filename is not None:
                raise
            raise ImageFileError(f"{label} cannot be decoded ({short(e, 120)}): give an image that opens in an image viewer") from None


def to_pil(image: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> 8-bit PIL image: RGB for 3 channels, greyscale ("L") for 1, and for any
    other channel count the channels' mean as greyscale (the full image is saved as .npy beside it)."""
    image = image.detach().clamp(0, 1)
    if image.shape[0] not in (1, 3):
        image = image.mean(0, keepdim=True)
    array = (image.permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes (PIL's default PNG settings: what ``image.save("x.png")`` writes). A run's PNGs
    (:func:`dgnam.io.write.save_png`) and a notebook's display (:mod:`dgnam.io.display`) are both encoded
    here, so what a notebook shows is byte for byte what a run saves."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()



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
    """Each line of ``label`` within ``width`` px, a long one cut in the middle (``encoder.lay…ers.11:10@cls``):
    the unit and its location at the end stay visible."""
    limit = max(4, width // char_px)
    head = (limit - 1) // 2
    return "\n".join(line if len(line) <= limit else line[:head] + "…" + line[len(line) - (limit - 1 - head):] for line in label.splitlines())


# ---------------------------------------------------------------------------------------------
# Pixel operations (pure: arrays in, arrays out), shared by the pool, the accentuation and the evaluation
# ---------------------------------------------------------------------------------------------


def to_rgb(image: np.ndarray) -> np.ndarray:
    """Convert grey, grey+alpha, RGB or RGBA pixels to RGB uint8 (alpha is dropped).

    Args:
        image: (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4) array, uint8 or bool.

    Returns:
        (H, W, 3) uint8 array.
    """
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.dtype != np.uint8:
        raise ValueError(f"expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    channels = image.shape[-1]
    if channels in (1, 2):
        image = np.repeat(image[..., :1], 3, axis=-1)
    elif channels in (3, 4):
        image = image[..., :3]
    else:
        raise ValueError(f"unsupported shape {image.shape}")
    return np.ascontiguousarray(image)


def crop_resize(image: Image.Image, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Cut a square out of a PIL image and resize it.

    Args:
        image: RGB PIL image.
        box: ``(top, left, side)`` as from :func:`sample_crop_box`.
        size: output side.

    Returns:
        (size, size, 3) uint8 array.
    """
    top, left, side = box
    region = (left, top, left + side, top + side)
    out = image.resize((size, size), Image.Resampling.BICUBIC, box=region, reducing_gap=3.0)
    return np.asarray(out, dtype=np.uint8)


def center_square_resize(image: np.ndarray, size: int) -> np.ndarray:
    """The central square of an image, resized (the usual ImageNet evaluation view).

    Args:
        image: (H, W, C) uint8.
        size: output side.

    Returns:
        (size, size, 3) uint8.
    """
    h, w = image.shape[:2]
    side = min(h, w)
    box = ((h - side) // 2, (w - side) // 2, side)
    return crop_resize(Image.fromarray(to_rgb(image)), box, size)
