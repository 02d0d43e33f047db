"""The atlas's static site: an index of layers, a grid per layer, a page per unit.

Writing only: pages are made from the unit records that :mod:`dgnam.atlas.store` keeps on disk, so
the site can be rewritten at any time (after an interrupted build, after units were added) without
computing anything. Every link is relative and the only script is ``atlas.js`` (shipped in the
package), so the site works from ``file://`` and from :func:`serve` alike, with no network. All text
is HTML-escaped; image paths are checked file names inside the unit folders.
"""

from __future__ import annotations

import html
import shutil
from importlib import resources
from pathlib import Path
from typing import Sequence

from ..io.rundir import write_text_atomic
from .store import layer_slug, safe_name

STATIC = ("atlas.js", "atlas.css")
#: Marker colours in the histogram (Okabe-Ito): DGN-AM facets, pixel baseline, accentuation.
COLORS = {"facet": "#0072B2", "pixel": "#D55E00", "accent": "#009E73"}


def esc(value) -> str:
    """``value`` as text, HTML-escaped for element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def fmt(value, digits: int = 2) -> str:
    """A number for display ("—" when missing)."""
    return "—" if value is None else f"{value:.{digits}f}"


def relative(activation: float | None, best_natural: float | None) -> str:
    """``2.1× best natural`` (the activation over the best natural image's), "" when not meaningful."""
    if activation is None or best_natural is None or best_natural <= 0:
        return ""
    return f"{activation / best_natural:.2f}× best natural"


def page(title: str, body: str, depth: int) -> str:
    """A whole HTML page; ``depth`` is how many folders below the site root it lives."""
    up = "../" * depth
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">"
        f"<link rel=\"stylesheet\" href=\"{up}atlas.css\"><script src=\"{up}atlas.js\"></script></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def unit_href(record: dict) -> str:
    """A unit page's path from the site root."""
    return f"units/{layer_slug(record['layer'])}/{record['slug']}.html"


def image_href(record: dict, name: str) -> str:
    """An image of a unit, from the site root."""
    return f"units/{layer_slug(record['layer'])}/{record['slug']}/{safe_name(name)}"


def search_text(record: dict) -> str:
    return " ".join(str(x) for x in (record["unit"], record.get("label") or "", record["layer"], f"#{record['index']}"))


def card(record: dict, up: str) -> str:
    """A unit's thumbnail card (first DGN-AM facet), searchable by unit, class name and layer."""
    facets = record.get("facets") or []
    thumb = f"<img src=\"{esc(up + image_href(record, facets[0]['file']))}\" alt=\"{esc(record['unit'])}\" loading=\"lazy\">" if facets else ""
    label = record.get("label") or ""
    text = esc(record["unit"]) + (f"<span class=\"label\">{esc(label)}</span>" if label else "")
    return (f"<a class=\"card\" href=\"{esc(up + unit_href(record))}\" data-search=\"{esc(search_text(record))}\" "
            f"title=\"{esc(record['unit'] + (' ' + label if label else ''))}\">{thumb}{text}</a>")


def search_box(n: int) -> str:
    return ("<p><input id=\"search\" type=\"search\" placeholder=\"filter units and class names\" autocomplete=\"off\"> "
            f"<span id=\"count\" class=\"muted\">{n} units</span></p>")


def settings_table(settings: dict) -> str:
    rows = []
    for key in ("net", "generator", "method", "pixel_method", "seeds", "steps", "data", "data_images", "k", "command", "created"):
        if settings.get(key) not in (None, "", []):
            value = " ".join(settings[key]) if key == "command" else settings[key]
            rows.append(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def index_page(settings: dict, layers: Sequence[dict], records: Sequence[dict]) -> str:
    """The site's front page: the layers, then every unit (filtered by the search box)."""
    rows = "".join(
        f"<tr><td><a href=\"layers/{esc(layer_slug(l['name']))}.html\">{esc(l['name'])}</a></td>"
        f"<td>{esc(' x '.join(str(s) for s in l.get('shape') or []))}</td><td>{l['done']} of {l['units']}</td></tr>"
        for l in layers
    )
    body = (
        f"<nav><strong>dgnam atlas</strong><span class=\"muted\">{esc(settings.get('net', ''))}</span></nav>"
        f"<h1>{esc(settings.get('net', 'net'))}: {len(records)} units</h1>"
        "<h2>Layers</h2><table><tr><th>layer</th><th>output shape</th><th>units in the atlas</th></tr>" + rows + "</table>"
        "<h2>Units</h2>" + search_box(len(records)) + "<div class=\"grid\">" + "".join(card(r, "") for r in records) + "</div>"
        "<h2>Settings</h2>" + settings_table(settings)
    )
    return page(f"dgnam atlas: {settings.get('net', '')}", body, 0)


def layer_page(settings: dict, layer: dict, records: Sequence[dict]) -> str:
    """A layer's grid of units."""
    body = (
        f"<nav><a href=\"../index.html\">atlas</a><span>›</span><strong>{esc(layer['name'])}</strong></nav>"
        f"<h1>{esc(settings.get('net', ''))} · {esc(layer['name'])}</h1>"
        f"<p class=\"muted\">{layer['done']} of {layer['units']} units; the thumbnail is DGN-AM from seed {esc((settings.get('seeds') or [0])[0])}.</p>"
        + search_box(len(records)) + "<div class=\"grid\">" + "".join(card(r, "../") for r in records) + "</div>"
    )
    return page(f"{layer['name']} · dgnam atlas", body, 1)


def histogram_svg(histogram: dict, markers: Sequence[tuple[float, str, str]], width: int = 560, height: int = 170) -> str:
    """Bars of the activation histogram over the data, with a vertical line per synthesized image.

    Args:
        histogram: ``{"counts": [...], "edges": [...]}``.
        markers: ``(activation, label, colour)`` per line.
    """
    counts, edges = histogram.get("counts") or [], histogram.get("edges") or []
    if not counts or len(edges) != len(counts) + 1:
        return ""
    values = [v for v, _, _ in markers if v is not None]
    lo, hi = min([edges[0]] + values), max([edges[-1]] + values)
    hi = hi if hi > lo else lo + 1.0
    left, right, top, bottom = 40, 10, 10, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    x = lambda v: left + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    peak = max(counts) or 1
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"activation histogram\">"]
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        h = c / peak * plot_h
        parts.append(f"<rect x=\"{x(a):.1f}\" y=\"{top + plot_h - h:.1f}\" width=\"{max(0.5, x(b) - x(a) - 0.5):.1f}\" height=\"{h:.1f}\" fill=\"#bbb\"/>")
    parts.append(f"<line x1=\"{left}\" y1=\"{top + plot_h}\" x2=\"{left + plot_w}\" y2=\"{top + plot_h}\" stroke=\"#555\"/>")
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        parts.append(f"<text x=\"{x(v):.1f}\" y=\"{height - 12}\" font-size=\"10\" text-anchor=\"{anchor}\">{esc(fmt(v))}</text>")
    parts.append(f"<text x=\"{left - 4}\" y=\"{top + 9}\" font-size=\"10\" text-anchor=\"end\">{peak}</text>")
    for value, label, colour in markers:
        if value is None:
            continue
        parts.append(f"<line x1=\"{x(value):.1f}\" y1=\"{top}\" x2=\"{x(value):.1f}\" y2=\"{top + plot_h}\" stroke=\"{esc(colour)}\" stroke-width=\"2\">"
                     f"<title>{esc(label)}: {esc(fmt(value))}</title></line>")
    parts.append(f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{height - 1}\" font-size=\"10\" text-anchor=\"middle\">activation "
                 "(grey: data images; lines: synthesized)</text></svg>")
    return "".join(parts)


def _figure(src: str, caption: str, css: str = "big", alt: str = "") -> str:
    return f"<figure><img class=\"{css}\" src=\"{esc(src)}\" alt=\"{esc(alt or caption)}\"><figcaption>{caption}</figcaption></figure>"


def unit_page(settings: dict, record: dict, neighbours: Sequence[dict], position: int) -> str:
    """One unit: DGN-AM facets, pixel baseline, accentuated top exemplar, histogram, exemplars, neighbours.

    Args:
        settings: The build's settings (atlas.json).
        record: The unit's record.
        neighbours: All records of the unit's layer, in order (for previous/next and nearby units).
        position: The unit's index in ``neighbours``.
    """
    folder = f"{record['slug']}/"
    best = (record.get("natural") or {}).get("max")
    name = record["unit"] + (f" · {record['label']}" if record.get("label") else "")
    prev_ = neighbours[position - 1] if position > 0 else None
    next_ = neighbours[position + 1] if position + 1 < len(neighbours) else None
    link = lambda r, i, text: f"<a id=\"{i}\" href=\"{esc(r['slug'])}.html\">{text}</a>" if r else f"<span class=\"muted\">{text}</span>"  # noqa: E731
    parts = [
        f"<nav><a href=\"../../index.html\">atlas</a><span>›</span><a href=\"../../layers/{esc(layer_slug(record['layer']))}.html\">"
        f"{esc(record['layer'])}</a><span>›</span><strong>{esc(record['unit'])}</strong><span class=\"spacer\"></span>"
        f"{link(prev_, 'prev', '← previous')}{link(next_, 'next', 'next →')}</nav>",
        f"<h1>{esc(name)}</h1>",
        f"<p class=\"muted\">{esc(settings.get('net', ''))}; best natural image: activation {esc(fmt(best))} over "
        f"{esc((record.get('natural') or {}).get('images', 0))} images.</p>",
    ]
    markers = []
    facets = record.get("facets") or []
    method = settings.get("method") or "DGN-AM"
    figures = []
    for f in facets:
        caption = f"seed {esc(f['seed'])} · {esc(fmt(f['activation']))}<br>{esc(relative(f['activation'], best))}"
        figures.append(_figure(folder + safe_name(f["file"]), caption, alt=f"{record['unit']} seed {f['seed']}"))
        markers.append((f["activation"], f"{method} seed {f['seed']}", COLORS["facet"]))
    parts.append(f"<h2>{esc(method)}, {len(facets)} seed(s)</h2><div class=\"row\">{''.join(figures)}</div>")
    side = []
    pixel = record.get("pixel")
    if pixel:
        caption = f"{esc(pixel.get('method', 'pixel'))} · {esc(fmt(pixel['activation']))}<br>{esc(relative(pixel['activation'], best))}"
        side.append(f"<div><h2>Best pixel baseline</h2>{_figure(folder + safe_name(pixel['file']), caption)}</div>")
        markers.append((pixel["activation"], f"pixel {pixel.get('method', '')}", COLORS["pixel"]))
    accent = record.get("accent")
    if accent:
        source = _figure(folder + safe_name(accent["source_file"]), f"top exemplar · {esc(fmt(accent.get('source_activation')))}")
        result = _figure(folder + safe_name(accent["file"]), f"accentuated · {esc(fmt(accent['activation']))}<br>{esc(relative(accent['activation'], best))}")
        side.append(f"<div><h2>Top exemplar, accentuated</h2><div class=\"pair\">{source}<span>→</span>{result}</div></div>")
        markers.append((accent["activation"], "accentuated", COLORS["accent"]))
    if side:
        parts.append(f"<div class=\"columns\">{''.join(side)}</div>")
    svg = histogram_svg((record.get("natural") or {}).get("histogram") or {}, markers)
    if svg:
        parts.append(f"<h2>Activation over the data</h2>{svg}")
    columns = []
    for key, title in (("top", "Top"), ("bottom", "Bottom")):
        entries = record.get(key) or []
        cells = "".join(_figure(folder + safe_name(e["file"]), f"{esc(fmt(e['activation']))}", css="ex", alt=f"{e.get('source') or e['index']}")
                        for e in entries)
        crop_note = " (receptive-field crops)" if record.get("receptive_field") else ""
        columns.append(f"<div><h2>{title} {len(entries)} natural images{crop_note}</h2><div class=\"exemplars\">{cells}</div></div>")
    parts.append(f"<div class=\"columns\">{''.join(columns)}</div>")
    near = [r for r in neighbours[max(0, position - 4) : position + 5] if r is not record]
    parts.append("<h2>Neighbouring units</h2><div class=\"grid\">" + "".join(card(r, "../../") for r in near) + "</div>")
    return page(f"{name} · dgnam atlas", "\n".join(parts), 2)


def copy_static(site: Path) -> None:
    """Copy the package's ``atlas.js`` and ``atlas.css`` into the site."""
    for name in STATIC:
        with resources.as_file(resources.files("dgnam.atlas").joinpath("static", name)) as source:
            shutil.copyfile(source, Path(site) / name)


def write_site(site: str | Path, settings: dict, layers: Sequence[dict], records: Sequence[dict]) -> Path:
    """Write every page of the site from the unit records; return the index page's path.

    Args:
        site: The site folder (the unit folders are already there).
        settings: The build's settings (shown on the index).
        layers: ``{"name", "shape", "units", "done"}`` per layer, in order.
        records: Every unit record to show, in layer order then unit order.
    """
    site = Path(site)
    copy_static(site)
    by_layer: dict[str, list[dict]] = {}
    for r in records:
        by_layer.setdefault(r["layer"], []).append(r)
    for layer in layers:
        members = by_layer.get(layer["name"], [])
        write_text_atomic(site / "layers" / f"{layer_slug(layer['name'])}.html", layer_page(settings, layer, members))
        for i, r in enumerate(members):
            write_text_atomic(site / unit_href(r), unit_page(settings, r, members, i))
    index = site / "index.html"
    write_text_atomic(index, index_page(settings, layers, records))
    return index


def serve(site: str | Path, port: int = 8000, host: str = "127.0.0.1"):
    """An HTTP server for ``site`` on ``host:port`` (localhost only by default); call ``serve_forever()``.

    Example:
        >>> server = serve("site", port=0)   # port 0: any free port, server.server_address[1]
        >>> server.serve_forever()
    """
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} has no index.html: build it first (`dgnam atlas NET --layers ... --out {site}`)")

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):  # noqa: A002 (the base class's name)
            pass

    return ThreadingHTTPServer((host, port), functools.partial(Quiet, directory=str(site)))


__all__ = ["write_site", "serve", "index_page", "layer_page", "unit_page", "histogram_svg", "esc", "copy_static"]
