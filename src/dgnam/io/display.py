"""Showing a result in a notebook: the labelled grid a run folder's contact sheet holds.

:func:`show` (``dgnam.show(result)``, ``dgnam.show(result, ["logits:3"])``) wraps an
:class:`~dgnam.methods.base.AMResult`, which stays a plain data object, in a :class:`Shown` that Jupyter
displays through :func:`sheet_png` (``_repr_png_``) and :func:`sheet_html` (``_repr_html_``, the same PNG
bytes inline plus a caption). The grid is built by the same functions as :class:`~dgnam.io.write.RunWriter`'s
``contact_sheet.png`` and encoded by the same :func:`~dgnam.infra.images.png_bytes`, so what a notebook shows
is byte for byte what a run saves (lucent #50: "show() and export() give different images"). Encoding only:
nothing here touches files.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Sequence

from PIL import Image

from ..infra.images import contact_sheet, png_bytes, to_pil
from ..methods.base import AMResult
from .write import tile_caption, unit_label


def result_tiles(result: "AMResult", categories: Sequence[str] | None = None) -> list[tuple[Image.Image, str]]:
    """One (image, caption) per element: the label, seed and final activation, as on a contact sheet."""
    categories = categories if categories is not None else result.categories
    return [(to_pil(result.images[i]), tile_caption(unit_label(u, categories), s, float(result.final[i])))
            for i, (u, s) in enumerate(zip(result.units, result.seeds))]  # fmt: skip


def sheet_png(result: "AMResult", categories: Sequence[str] | None = None) -> bytes:
    """The labelled grid of ``result`` as PNG bytes: identical to the ``contact_sheet.png`` a run of it writes."""
    return png_bytes(contact_sheet(result_tiles(result, categories)))


def sheet_html(result: "AMResult", categories: Sequence[str] | None = None) -> str:
    """The grid of :func:`sheet_png` inline (base64), captioned with the method and the number of images."""
    data = base64.b64encode(sheet_png(result, categories)).decode("ascii")
    caption = html.escape(f"{result.method}: {len(result.units)} image(s), final activation under each")
    return f'<figure style="margin:0"><img src="data:image/png;base64,{data}" alt="{caption}"/><figcaption>{caption}</figcaption></figure>'


@dataclass(frozen=True)
class Shown:
    """A result as a notebook displays it: Jupyter calls :meth:`_repr_png_` (or :meth:`_repr_html_`).

    Attributes:
        result: The images shown (a subset when :func:`show` was given ``which``).
        categories: Class names for the labels (None: the result's own ``categories``).
    """

    result: AMResult
    categories: Sequence[str] | None = None

    def _repr_png_(self) -> bytes:
        return sheet_png(self.result, self.categories)

    def _repr_html_(self) -> str:
        return sheet_html(self.result, self.categories)


def show(result: AMResult, which=None, categories: Sequence[str] | None = None) -> Shown:
    """``result`` (or the elements ``which`` picks) as its labelled grid in a notebook.

    Args:
        result: What a method or :func:`dgnam.visualize` returned.
        which: None (all), an index, a slice, a list of indices or unit string(s) like ``"logits:3"``
            (:meth:`~dgnam.methods.base.AMResult.subset`).
        categories: Class names for the labels (default: the result's own).

    Returns:
        A :class:`Shown`, displayed as the same PNG bytes as the ``contact_sheet.png`` that
        :func:`~dgnam.io.write.save_result` writes for the same images.

    Raises:
        ValueError: ``which`` picks no element (the message lists the result's units).

    Example:
        >>> dgnam.show(result, ["logits:2", 0])  # doctest: +SKIP
    """
    return Shown(result if which is None else result.subset(which), categories)


__all__ = ["Shown", "show", "result_tiles", "sheet_png", "sheet_html"]
