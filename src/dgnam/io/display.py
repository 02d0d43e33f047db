"""Results that show themselves in a notebook: the labelled grid a run folder's contact sheet holds.

:class:`~dgnam.methods.base.AMResult` displays itself through :func:`sheet_png` (``_repr_png_``) and
:func:`sheet_html` (``_repr_html_``, the same PNG bytes inline plus a caption). The grid is built by
the same functions as :class:`~dgnam.io.write.RunWriter`'s ``contact_sheet.png`` and encoded by the
same :func:`png_bytes`, so what a notebook shows is byte for byte what a run saves (lucent #50:
"show() and export() give different images"). Encoding only: nothing here touches files.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING, Sequence

from PIL import Image

if TYPE_CHECKING:  # AMResult imports this module's functions lazily
    from ..methods.base import AMResult


def png_bytes(image: Image.Image) -> bytes:
    """``image`` as PNG bytes (PIL's default PNG settings: what ``image.save("x.png")`` writes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def result_tiles(result: "AMResult", categories: Sequence[str] | None = None) -> list[tuple[Image.Image, str]]:
    """One (image, caption) per element: the label, seed and final activation, as on a contact sheet."""
    from .write import tile_caption, unit_label
    from ..infra.images import to_pil

    categories = categories if categories is not None else result.categories
    return [(to_pil(result.images[i]), tile_caption(unit_label(u, categories), s, float(result.final[i])))
            for i, (u, s) in enumerate(zip(result.units, result.seeds))]  # fmt: skip


def sheet_png(result: "AMResult", categories: Sequence[str] | None = None) -> bytes:
    """The labelled grid of ``result`` as PNG bytes: identical to the ``contact_sheet.png`` a run of it writes."""
    from ..infra.images import contact_sheet

    return png_bytes(contact_sheet(result_tiles(result, categories)))


def sheet_html(result: "AMResult", categories: Sequence[str] | None = None) -> str:
    """The grid of :func:`sheet_png` inline (base64), captioned with the method and the number of images."""
    data = base64.b64encode(sheet_png(result, categories)).decode("ascii")
    caption = html.escape(f"{result.method}: {len(result.units)} image(s), final activation under each")
    return f'<figure style="margin:0"><img src="data:image/png;base64,{data}" alt="{caption}"/><figcaption>{caption}</figcaption></figure>'


__all__ = ["png_bytes", "result_tiles", "sheet_png", "sheet_html"]
