"""The atlas's static site: an index of layers, a grid per layer, a page per unit.

Writing only: pages are made from the unit records that :mod:`dgnam.atlas.store` keeps on disk, so
the site can be rewritten at any time (after an interrupted build, after units were added) without
computing anything. Every link is relative and the only script is ``atlas.js`` (shipped in the
package), so the site works from ``file://`` and from :func:`serve` alike, with no network. All text
is HTML-escaped; image paths are checked file names inside the unit folders.
"""

from __future__ import annotations

import html
import json
import math
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Mapping, Sequence
from urllib.parse import unquote, urlsplit

from ..io.read import RunFolderError
from ..infra.files import write_text_atomic
from ..infra.messages import short
from .store import SETTINGS_FILE, layer_slug, safe_name

STATIC = ("atlas.js", "atlas.css")
#: Marker colours in the histogram (Okabe-Ito): DGN-AM facets, pixel baseline, accentuation.
COLORS = {"facet": "#0072B2", "pixel": "#D55E00", "accent": "#009E73"}


def esc(value) -> str:
    """``value`` as text, HTML-escaped for element content and quoted attributes."""
    return html.escape(str(value), quote=True)


def number(value) -> float | None:
    """``value`` if it is a finite real number (a record may hold anything: a string, a list, a boolean), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:  # an int too big for a float
        return None


def fmt(value, digits: int = 2) -> str:
    """A number for display ("—" when missing, or not a finite number)."""
    value = number(value)
    return "—" if value is None else f"{value:.{digits}f}"


def relative(activation: float | None, best_natural: float | None) -> str:
    """``2.1× best natural`` (the activation over the best natural image's), "" when not meaningful."""
    activation, best_natural = number(activation), number(best_natural)
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
    title = f"{record['unit']} {label}".strip()
    return (f"<a class=\"card\" href=\"{esc(up + unit_href(record))}\" data-search=\"{esc(search_text(record))}\" "
            f"title=\"{esc(title)}\">{thumb}{text}</a>")


def search_box(n: int) -> str:
    return ("<p><input id=\"search\" type=\"search\" placeholder=\"filter units and class names\" autocomplete=\"off\"> "
            f"<span id=\"count\" class=\"muted\">{n} units</span></p>")


def settings_table(settings: dict) -> str:
    rows = []
    for key in ("net", "generator", "method", "pixel_method", "seeds", "steps", "data", "data_images", "k", "command", "created"):
        if settings.get(key) not in (None, "", []):
            value = " ".join(map(str, settings[key])) if key == "command" and isinstance(settings[key], list) else settings[key]
            rows.append(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>")
    return "<table>" + "".join(rows) + "</table>"


def index_page(settings: dict, layers: Sequence[dict], records: Sequence[dict]) -> str:
    """The site's front page: the layers, then every unit (filtered by the search box)."""
    rows = "".join(
        f"<tr><td><a href=\"layers/{esc(layer_slug(l['name']))}.html\">{esc(l['name'])}</a></td>"
        f"<td>{esc(' x '.join(str(s) for s in l.get('shape') or []))}</td><td>{esc(l['done'])} of {esc(l['units'])}</td></tr>"
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
        f"<p class=\"muted\">{esc(layer['done'])} of {esc(layer['units'])} units; "
        f"the thumbnail is DGN-AM from seed {esc((settings.get('seeds') or [0])[0])}.</p>"
        + search_box(len(records)) + "<div class=\"grid\">" + "".join(card(r, "../") for r in records) + "</div>"
    )
    return page(f"{layer['name']} · dgnam atlas", body, 1)


def histogram_svg(histogram: dict, markers: Sequence[tuple[float, str, str]], width: int = 560, height: int = 200,
                  legend: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """Bars of the activation histogram over the data, with a vertical line per synthesized image and a legend.

    Args:
        histogram: ``{"counts": [...], "edges": [...]}``.
        markers: ``(activation, label, colour)`` per line.
        legend: Colour -> text of its legend entry; default: the first marker label of each colour.
    """
    counts, edges = histogram.get("counts") or [], histogram.get("edges") or []
    if not isinstance(counts, list) or not isinstance(edges, list) or not counts or len(edges) != len(counts) + 1:
        return ""
    counts, edges = [number(c) for c in counts], [number(e) for e in edges]
    if None in counts or None in edges:
        return ""  # a record holding something else than numbers: no histogram
    markers = [(number(v), label, colour) for v, label, colour in markers]
    values = [v for v, _, _ in markers if v is not None]
    lo, hi = min([edges[0]] + values), max([edges[-1]] + values)
    hi = hi if hi > lo else lo + 1.0
    key, rows = _legend(markers, legend or {}, int(sum(counts)), 40, width - 10)
    left, right, top, bottom = 40, 10, 12 + 14 * rows, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    x = lambda v: left + (v - lo) / (hi - lo) * plot_w  # noqa: E731
    peak = max(counts) or 1
    parts = [f"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" role=\"img\" aria-label=\"activation histogram\">"]
    parts.append(key)
    for c, a, b in zip(counts, edges[:-1], edges[1:]):
        h = c / peak * plot_h
        parts.append(f"<rect x=\"{x(a):.1f}\" y=\"{top + plot_h - h:.1f}\" width=\"{max(0.5, x(b) - x(a) - 0.5):.1f}\" height=\"{h:.1f}\" fill=\"#bbb\"/>")
    parts.append(f"<line x1=\"{left}\" y1=\"{top + plot_h}\" x2=\"{left + plot_w}\" y2=\"{top + plot_h}\" stroke=\"#555\"/>")
    for v, anchor in ((lo, "start"), ((lo + hi) / 2, "middle"), (hi, "end")):
        parts.append(f"<text x=\"{x(v):.1f}\" y=\"{height - 12}\" font-size=\"10\" text-anchor=\"{anchor}\">{esc(fmt(v))}</text>")
    parts.append(f"<text x=\"{left - 4}\" y=\"{top + 9}\" font-size=\"10\" text-anchor=\"end\">{esc(fmt(peak, 0))}</text>")
    for value, label, colour in markers:
        if value is None:
            continue
        parts.append(f"<line x1=\"{x(value):.1f}\" y1=\"{top}\" x2=\"{x(value):.1f}\" y2=\"{top + plot_h}\" stroke=\"{esc(colour)}\" stroke-width=\"2\">"
                     f"<title>{esc(label)}: {esc(fmt(value))}</title></line>")
    parts.append(f"<text x=\"{left + plot_w / 2:.1f}\" y=\"{height - 1}\" font-size=\"10\" text-anchor=\"middle\">activation</text></svg>")
    return "".join(parts)


def _legend(markers: Sequence[tuple[float | None, str, str]], names: Mapping[str, str], images: int, left: int, right: int) -> tuple[str, int]:
    """The histogram's legend: a grey box for the data, then a line in each marker colour with its name, in rows
    that fit between ``left`` and ``right``; returns the SVG group and its number of rows."""
    entries = [("rect", "#bbb", f"data images ({images})")]
    for value, label, colour in markers:
        if value is not None and colour not in [c for _, c, _ in entries]:
            entries.append(("line", colour, names.get(colour, label)))
    parts, x, row = [], left, 0
    for shape, colour, text in entries:
        text = short(text, 60)
        size = 16 + 6 * len(text) + 14  # ~6 px a character at 10 px
        if x > left and x + size > right:
            x, row = left, row + 1
        y = 4 + 14 * row
        if shape == "rect":
            parts.append(f"<rect x=\"{x}\" y=\"{y}\" width=\"10\" height=\"10\" fill=\"{esc(colour)}\"/>")
        else:
            parts.append(f"<line x1=\"{x}\" y1=\"{y + 5}\" x2=\"{x + 12}\" y2=\"{y + 5}\" stroke=\"{esc(colour)}\" stroke-width=\"2\"/>")
        parts.append(f"<text x=\"{x + 16}\" y=\"{y + 9}\" font-size=\"10\">{esc(text)}</text>")
        x += size
    return "<g class=\"legend\">" + "".join(parts) + "</g>", row + 1


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
    name = f"{record['unit']}" + (f" · {record['label']}" if record.get("label") else "")
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
    names = {COLORS["facet"]: f"{method}, {len(facets)} seed(s)", COLORS["pixel"]: "pixel baseline", COLORS["accent"]: "accentuated"}
    svg = histogram_svg((record.get("natural") or {}).get("histogram") or {}, markers, legend=names)
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
    """Write the package's ``atlas.js`` and ``atlas.css`` into the site (atomically: a link there is replaced, not followed)."""
    for name in STATIC:
        write_text_atomic(Path(site) / name, resources.files("dgnam.atlas").joinpath("static", name).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------------
# Whose files: dgnam writes only into a new or empty folder, or an atlas it made (its manifest)
# --------------------------------------------------------------------------------------------------

#: The list of files dgnam wrote in a site (pages, static files, atlas.json); written before them.
MANIFEST = "dgnam-files.json"
_WRITTEN_BY = "dgnam atlas"


def _manifest(site: Path) -> set[str] | None:
    """The files dgnam wrote in ``site``, or None where it has no manifest of dgnam's."""
    try:
        value = json.loads((site / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(value, dict) and value.get("written_by") == _WRITTEN_BY and isinstance(value.get("files"), list):
        return {name for name in value["files"] if isinstance(name, str)}
    return None


def _write_manifest(site: Path, files: set[str]) -> None:
    write_text_atomic(site / MANIFEST, json.dumps({"written_by": _WRITTEN_BY, "files": sorted(files)}, indent=0))


def _older_atlas_pages(site: Path) -> set[str] | None:
    """The pages of an atlas dgnam made before it wrote a manifest (known by its atlas.json), else None."""
    try:
        settings = json.loads((site / SETTINGS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(settings, dict) or not {"key", "requested", "command"} <= settings.keys():
        return None
    pages = [site / name for name in (*STATIC, "index.html", SETTINGS_FILE)] + sorted(site.glob("layers/*.html")) + sorted(site.glob("units/*/*.html"))
    return {page.relative_to(site).as_posix() for page in pages if page.is_file() and not page.is_symlink()}


def _owned(site: Path) -> set[str] | None:
    """The files of ``site`` that dgnam wrote (its manifest, or an older atlas's pages); an empty set for a
    new or empty folder; None for a folder with entries that is not an atlas dgnam made."""
    own = _manifest(site)
    if own is None and site.is_dir() and any(site.iterdir()):
        return _older_atlas_pages(site)
    return own if own is not None else set()


def page_files(layer_names: Sequence[str], records: Sequence[dict]) -> list[str]:
    """The files :func:`write_site` writes for these layers and unit records (each needs ``layer`` and ``slug``)."""
    return [*STATIC, "index.html", *(f"layers/{layer_slug(name)}.html" for name in layer_names), *(unit_href(r) for r in records)]


def claim_files(site: str | Path, names: Sequence[str], write: bool = True) -> None:
    """Make sure dgnam may write ``names`` (paths relative to ``site``), and list them in the manifest
    (:data:`MANIFEST`) before they are written: ``site`` must be new, empty or an atlas dgnam made, and
    none of ``names`` may be a file there that dgnam did not write.

    Args:
        site: The site folder (``--out``).
        names: The files about to be written.
        write: Create the folder and record ``names``; False only checks (every rank, before rank 0 writes).

    Raises:
        RunFolderError: ``site`` is a file or a folder of someone else's (its first entry named), or one of
            ``names`` is a file there that dgnam did not write (named).
    """
    site = Path(site)
    if site.exists() and not site.is_dir():
        raise RunFolderError(f"--out {short(site)} is a file: give a folder for the site")
    own = _owned(site)
    if own is None:
        entries = sorted(e.name for e in site.iterdir())
        more = f" (and {len(entries) - 1} more)" if len(entries) > 1 else ""
        raise RunFolderError(f"--out {short(site)} holds {short(entries[0])}{more} and is not an atlas dgnam made: give a new or empty folder "
                             f"(dgnam never replaces a file it did not write)")
    for name in names:
        path = site / name
        if name not in own and (path.exists() or path.is_symlink()):
            raise RunFolderError(f"--out {short(site)} already holds {short(name)}, which dgnam did not write: move it away, or give --out another folder "
                                 f"(dgnam never replaces a file it did not write)")
    if write and (_manifest(site) is None or not own.issuperset(names)):
        site.mkdir(parents=True, exist_ok=True)
        _write_manifest(site, own | set(names))


def write_site(site: str | Path, settings: dict, layers: Sequence[dict], records: Sequence[dict]) -> Path:
    """Write every page of the site from the unit records; return the index page's path.

    Args:
        site: The site folder (the unit folders are already there).
        settings: The build's settings (shown on the index).
        layers: ``{"name", "shape", "units", "done"}`` per layer, in order.
        records: Every unit record to show, in layer order then unit order.

    Raises:
        RunFolderError: a page would replace a file dgnam did not write (:func:`claim_files`).
    """
    site = Path(site)
    by_layer: dict[str, list[dict]] = {}
    for r in records:
        by_layer.setdefault(r["layer"], []).append(r)
    pages = {f"layers/{layer_slug(layer['name'])}.html": layer for layer in layers}
    claim_files(site, page_files([layer["name"] for layer in layers], [r for layer in layers for r in by_layer.get(layer["name"], [])]))
    copy_static(site)
    for name, layer in pages.items():
        members = by_layer.get(layer["name"], [])
        write_text_atomic(site / name, layer_page(settings, layer, members))
        for i, r in enumerate(members):
            write_text_atomic(site / unit_href(r), unit_page(settings, r, members, i))
    index = site / "index.html"
    write_text_atomic(index, index_page(settings, layers, records))
    return index


# --------------------------------------------------------------------------------------------------
# Serving: regular files inside the site, to localhost only
# --------------------------------------------------------------------------------------------------


class _SiteHandler(SimpleHTTPRequestHandler):
    """GET/HEAD of the site's regular files; 400 for a malformed path or Host, 403 for a foreign Host
    (DNS rebinding), 404 for anything outside the site (``..``, a symlink out) or not a file. Nothing is logged."""

    server: "_SiteServer"

    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass

    def do_GET(self):  # noqa: N802 (the base class's name)
        self._send(body=True)

    def do_HEAD(self):  # noqa: N802
        self._send(body=False)

    def _send(self, body: bool) -> None:
        status, path = self._checked()
        data = None
        if path is not None:
            try:
                data = path.read_bytes()
            except OSError:
                status = 404
        if data is None:
            self.send_error(status)
            return
        self.send_response(200)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _checked(self) -> tuple[int, Path | None]:
        """``(200, the file)`` for a request the site may answer, else ``(status, None)``."""
        host = self.headers.get("Host")
        if not host:
            return 400, None
        if host.strip().lower() not in self.server.hosts:
            return 403, None
        if not self.path.startswith("/"):
            return 400, None
        try:
            name = unquote(urlsplit(self.path).path, errors="strict")
        except UnicodeDecodeError:
            return 400, None
        if any(ord(c) < 32 for c in name) or "\\" in name:  # a NUL or other control character, a Windows separator
            return 400, None
        name = name.lstrip("/")
        if name == "" or name.endswith("/"):
            name += "index.html"
        if ".." in PurePosixPath(name).parts:
            return 404, None
        try:
            path = (self.server.root / name).resolve()
            inside = path.is_relative_to(self.server.root) and path.is_file()
        except (OSError, RuntimeError):  # a name too long, a symlink loop
            inside = False
        return (200, path) if inside else (404, None)


class _SiteServer(ThreadingHTTPServer):
    """The server of :func:`serve`: ``root`` (the resolved site) and the Host headers it answers."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], root: Path):
        super().__init__(address, _SiteHandler)
        self.root = root
        port = self.server_address[1]
        names = {"127.0.0.1", "localhost", "[::1]", address[0].lower()}
        self.hosts = {f"{n}:{port}" for n in names} | (names if port == 80 else set())

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):  # a client that went away: nothing to report
            super().handle_error(request, client_address)


def serve(site: str | Path, port: int = 8000, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """An HTTP server for ``site`` on ``host:port`` (localhost only by default); call ``serve_forever()``.

    Only regular files whose resolved path lies inside ``site`` are served, and only to requests whose
    Host header is ``127.0.0.1``/``localhost`` (or ``host``) with the port: a page elsewhere cannot reach
    the site through DNS rebinding.

    Example:
        >>> server = serve("site", port=0)   # port 0: any free port, server.server_address[1]
        >>> server.serve_forever()
    """
    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} has no index.html: build it first (`dgnam atlas NET --layers ... --out {site}`)")
    return _SiteServer((host, port), site.resolve())


__all__ = ["write_site", "serve", "index_page", "layer_page", "unit_page", "histogram_svg", "esc", "copy_static", "claim_files", "page_files", "MANIFEST"]
