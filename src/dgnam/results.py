"""Writing a run to disk: one PNG per unit x seed, the best images, a contact sheet and results.json.

``results.json`` holds the resolved settings, versions, seeds and every item's activation history,
so a run folder alone says how its images were made.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .optimize import AMResult
from .units import Unit


def to_pil(image: torch.Tensor) -> Image.Image:
    """(3, H, W) in [0, 1] -> 8-bit RGB PIL image."""
    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(array)


def unit_label(unit: Unit, categories: Sequence[str] | None, output_layers: Sequence[str] = ("logits", "output", "fc8")) -> str:
    """``logits:945 bell pepper`` for class units, else the unit string."""
    if categories and unit.layer in output_layers and unit.index < len(categories):
        return f"{unit} {categories[unit.index].split(',')[0]}"
    return str(unit)


def image_name(unit: Unit, seed: int) -> str:
    """File name carrying layer, unit index and seed, e.g. ``logits_0945_seed0.png``."""
    return f"{unit.slug}_seed{seed}.png"


class RunWriter:
    """Writes a run folder incrementally, so an interrupted run keeps what finished.

    Args:
        out_dir: The run folder (created).
        settings: Resolved settings to record (net, generator, method, config, seeds, command ...).
        categories: Category names of the target, for labels.
    """

    def __init__(self, out_dir: str | Path, settings: dict, categories: Sequence[str] | None = None, fields: dict | None = None):
        self.out = Path(out_dir)
        (self.out / "best").mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.categories = categories
        self.fields = fields or {}  # unit -> receptive-field box (top, left, bottom, right) for hidden units
        self.items: list[dict] = []
        self.tiles: list[tuple[Image.Image, str]] = []
        self.started = time.time()

    def add(self, result: AMResult) -> None:
        """Save the images of one batch and remember their records."""
        for i, (unit, seed) in enumerate(zip(result.units, result.seeds)):
            name = image_name(unit, seed)
            image = to_pil(result.images[i])
            image.save(self.out / name)
            to_pil(result.best_images[i]).save(self.out / "best" / name)
            label = unit_label(unit, self.categories)
            box = self.fields.get(unit)
            if box is not None:  # hidden unit: also its receptive field, cropped (left, top, right, bottom)
                (self.out / "rf").mkdir(exist_ok=True)
                image.crop((box[1], box[0], box[3], box[2])).save(self.out / "rf" / name)
            self.items.append(
                {
                    "unit": str(unit),
                    "layer": unit.layer,
                    "index": unit.index,
                    "location": list(unit.location) if isinstance(unit.location, tuple) else unit.location,
                    "label": label,
                    "seed": seed,
                    "file": name,
                    "best_file": f"best/{name}",
                    "receptive_field": list(box) if box is not None else None,
                    "rf_file": f"rf/{name}" if box is not None else None,
                    "final_activation": float(result.final[i]),
                    "best_activation": float(result.best[i]),
                    "best_step": int(result.best_step[i]),
                    "history": [round(float(v), 5) for v in result.history[i]],
                }
            )
            self.tiles.append((image, f"{label} s{seed}\nact {float(result.final[i]):.2f}"))

    def finish(self, interrupted: bool = False, requested: int | None = None) -> Path:
        """Write the contact sheet and results.json; return the results.json path."""
        if self.tiles:
            contact_sheet(self.tiles).save(self.out / "contact_sheet.png")
        record = {
            **self.settings,
            "versions": versions(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(time.time() - self.started, 2),
            "interrupted": interrupted,
            "complete": not interrupted and (requested is None or len(self.items) == requested),
            "items_requested": requested,
            "items": self.items,
        }
        path = self.out / "results.json"
        path.write_text(json.dumps(record, indent=1))
        return path


def versions() -> dict:
    from . import __version__

    return {"dgnam": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0], "platform": platform.platform()}


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
