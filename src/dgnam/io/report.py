"""Reading run folders and showing them: neighbour sheets and one self-contained HTML page.

A run folder (written by ``dgnam visualize``, see :mod:`dgnam.io.write`) holds ``results.json`` and
one PNG per unit and seed; ``dgnam evaluate`` adds ``evaluation.json`` and ``dgnam neighbors`` adds
``neighbors/neighbors.json`` with one sheet PNG per image. :func:`build_report` reads all of it;
:func:`render_report` turns it into one HTML page whose images are embedded as base64 ``data:`` URIs,
with inline CSS and inline SVG activation curves: it opens from disk in any browser, with no server
and no JavaScript.

Example:
    >>> Path("report.html").write_text(build_report(["runs/demo", "runs/fourier"]))
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .read import RunFolderError, inside_run, read_record, read_run, require_items
from .rundir import read_json_object
from ..infra.messages import short

EVALUATION_FILE = "evaluation.json"
NEIGHBORS_DIR = "neighbors"
NEIGHBORS_FILE = "neighbors.json"
EXEMPLARS_DIR = "exemplars"  # `dgnam exemplars ... --out RUN/exemplars` keeps a run's dataset exemplars with it
#: The second line of every page :func:`render_report` writes: `dgnam report` replaces only a file that has it.
REPORT_MARKER = "<!-- written by dgnam report -->"
_REPORT_HEAD = "<!DOCTYPE html>\n" + REPORT_MARKER + "\n"
_OLD_REPORT_HEAD = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>', "</title><style>\nbody{font-family:system-ui,")  # before the marker

#: Line colours of the activation curves (Okabe-Ito, readable by colour-blind readers).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")


# --------------------------------------------------------------------------------------------------
# Neighbour sheets
# --------------------------------------------------------------------------------------------------


def neighbors_sheet(query: np.ndarray, neighbors: Sequence[np.ndarray], captions: Sequence[str], title: str = "", tile: int = 128) -> Image.Image:
    """One row: the synthesized image, then its neighbours, each with a caption underneath.

    Args:
        query: (H, W, 3) uint8 synthesized image.
        neighbors: (h, w, 3) uint8 natural images, nearest first.
        captions: One caption per neighbour (e.g. the distance and the file).
        title: Caption of the query.
        tile: Side of each thumbnail, px.

    Returns:
        An RGB image of width ``(1 + k) * tile`` plus a gap after the query.
    """
    if len(captions) != len(neighbors):
        raise ValueError(f"{len(neighbors)} neighbours but {len(captions)} captions")
    font = ImageFont.load_default()
    gap, cap_h = 12, 28
    sheet = Image.new("RGB", ((1 + len(neighbors)) * tile + gap, tile + cap_h), "white")
    draw = ImageDraw.Draw(sheet)
    for k, (array, text) in enumerate([(query, title)] + list(zip(neighbors, captions))):
        x = 0 if k == 0 else k * tile + gap
        sheet.paste(Image.fromarray(np.asarray(array, dtype=np.uint8)).resize((tile, tile), Image.BILINEAR), (x, 0))
        lines = [_clip(line, tile) for line in text.splitlines()[:2]]
        draw.multiline_text((x + 2, tile + 2), "\n".join(lines), fill="black", font=font, spacing=1)
    draw.line([(tile + gap // 2, 0), (tile + gap // 2, tile)], fill=(160, 160, 160), width=1)
    return sheet


def _clip(text: str, width: int, char_px: int = 6) -> str:
    limit = max(4, width // char_px)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------------------------------
# SVG curves
# --------------------------------------------------------------------------------------------------


def svg_curves(curves: Sequence[Sequence[float]], labels: Sequence[str] = (), width: int = 320, height: int = 120, title: str = "") -> str:
    """Inline SVG of one or more curves (activation per step) on shared axes, with a legend.

    Args:
        curves: Each a sequence of values (the x axis is the step, 0 to len - 1).
        labels: Legend entries (one per curve; empty for none).
        width, height: Size in px.
        title: Accessible title (``<title>``).

    Returns:
        An ``<svg>`` element as text; an empty string when there is nothing to draw.
    """
    curves = [c for c in map(_floats, curves) if len(c)]
    if not curves:
        return ""
    finite = np.concatenate([c[np.isfinite(c)] for c in curves])
    if not len(finite):
        return ""
    lo, hi = float(finite.min()), float(finite.max())
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    left, right, top = 40, 6, 6
    legend_h = 13 * len(labels) if labels else 0
    bottom = 16
    plot_w, plot_h = width - left - right, height - top - bottom - legend_h
    steps = max(len(c) for c in curves)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    if title:
        parts.append(f"<title>{html.escape(title)}</title>")
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#bbb"/>')
    for k, c in enumerate(curves):
        xs = left + plot_w * np.arange(len(c)) / max(steps - 1, 1)
        ys = top + plot_h * (1.0 - (np.clip(c, lo, hi) - lo) / (hi - lo))
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y, v in zip(xs, ys, c) if np.isfinite(v))  # steps not scored are skipped
        parts.append(f'<polyline fill="none" stroke="{PALETTE[k % len(PALETTE)]}" stroke-width="1.5" points="{points}"/>')
    axis = 'font-size="10" fill="#444" font-family="sans-serif"'
    parts.append(f'<text x="{left - 3}" y="{top + 9}" text-anchor="end" {axis}>{_num(hi)}</text>')
    parts.append(f'<text x="{left - 3}" y="{top + plot_h}" text-anchor="end" {axis}>{_num(lo)}</text>')
    parts.append(f'<text x="{left}" y="{top + plot_h + 12}" {axis}>0</text>')
    parts.append(f'<text x="{left + plot_w}" y="{top + plot_h + 12}" text-anchor="end" {axis}>step {steps - 1}</text>')
    for k, label in enumerate(labels):
        y = top + plot_h + bottom + 13 * k + 9
        parts.append(f'<rect x="{left}" y="{y - 7}" width="10" height="3" fill="{PALETTE[k % len(PALETTE)]}"/>')
        parts.append(f'<text x="{left + 14}" y="{y}" {axis}>{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


class _Raw(str):
    """Text that is HTML already (escaped, or markup built from escaped parts): shown as it is."""


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))


def _float(x) -> float:
    """``x`` as a float; NaN when a record holds something else there (a string, a list, an int too big)."""
    try:
        return float(x) if _is_number(x) else float("nan")
    except OverflowError:
        return float("nan")


def _floats(values) -> np.ndarray:
    """A curve read from a record as floats (NaN for each entry that is not a number)."""
    if isinstance(values, np.ndarray):
        return values.astype(np.float64).ravel() if values.dtype.kind in "iuf" else np.zeros(0)
    if not isinstance(values, (list, tuple)):
        return np.zeros(0)
    return np.array([_float(v) for v in values], dtype=np.float64)


def _num(x) -> _Raw:
    """``x`` as HTML: a number formatted, a missing or non-finite one "–", yes/no for a boolean, and
    anything else (a record holding a string where a number belongs) as escaped text."""
    if x is None:
        return _Raw("–")
    if isinstance(x, (bool, np.bool_)):
        return _Raw("yes" if x else "no")
    if isinstance(x, (int, np.integer)):
        return _Raw(str(int(x)))
    if isinstance(x, (float, np.floating)):
        if not np.isfinite(x):
            return _Raw("–")
        return _Raw(f"{x:.3g}" if abs(x) < 1e4 else f"{x:.4g}")
    return _Raw(html.escape(str(x)))


def _pct(x) -> _Raw:
    """A fraction as a percentage, as HTML (what is not a finite number: as :func:`_num` shows it)."""
    return _Raw(f"{100 * x:.0f}%") if _is_number(x) and np.isfinite(_float(x)) else _num(x)


# --------------------------------------------------------------------------------------------------
# The page
# --------------------------------------------------------------------------------------------------


@dataclass
class RunPage:
    """What the report shows of one run folder.

    Attributes:
        name: Heading (the folder path).
        record: The parsed results.json.
        files: PNG bytes by path relative to the run folder (the items' images, the contact sheet,
            the neighbour sheets).
        evaluation: The parsed evaluation.json, or None.
        neighbors: The parsed neighbors/neighbors.json, or None (its sheets are in ``files`` under
            ``neighbors/``).
    """

    name: str
    record: dict
    files: dict[str, bytes] = field(default_factory=dict)
    evaluation: dict | None = None
    neighbors: dict | None = None
    exemplars: dict | None = None  # the results.json of `dgnam exemplars` (this folder's, or RUN/exemplars/'s); sheets in files


def _exemplar_files(run_dir: Path, record: Mapping, prefix: str) -> dict[str, bytes]:
    """The sheets of an exemplars record, keyed by path relative to the run folder shown."""
    files = {}
    for k, it in enumerate(record.get("items") or []):
        if isinstance(it, dict) and it.get("sheet"):
            path = inside_run(run_dir, f"{prefix}{it['sheet']}", f"exemplars items[{k}].sheet")  # never a file from outside the run
            if path.is_file():
                files[f"{prefix}{it['sheet']}"] = path.read_bytes()
    return files


def load_run_page(run_dir: str | Path) -> RunPage:
    """Read what the report shows of one run folder (results.json, PNGs, evaluation, neighbours)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    items = require_items(record, run_dir / "results.json", ("file",)) if record.get("kind") != "exemplars" else []  # exemplars: their sheets, below
    wanted = {it["file"]: f"items[{k}].file" for k, it in enumerate(items)}
    for k, it in enumerate(items):  # a method's maps beside the image (MACO's transparency)
        maps = it.get("maps") if isinstance(it.get("maps"), dict) else {}
        wanted.update({name: f"items[{k}].maps.{key}" for key, name in maps.items() if isinstance(name, str)})
    wanted["contact_sheet.png"] = "the contact sheet"
    evaluation = neighbors = None
    if (run_dir / EVALUATION_FILE).is_file():
        evaluation = read_json_object(run_dir / EVALUATION_FILE, EVALUATION_FILE)
    if (run_dir / NEIGHBORS_DIR / NEIGHBORS_FILE).is_file():
        neighbors = read_json_object(run_dir / NEIGHBORS_DIR / NEIGHBORS_FILE, NEIGHBORS_FILE)
        for k, it in enumerate(neighbors.get("items") or []):
            if isinstance(it, dict) and it.get("sheet"):
                wanted[f"{NEIGHBORS_DIR}/{it['sheet']}"] = f"{NEIGHBORS_FILE} items[{k}].sheet"
    files = {}
    for rel, what in wanted.items():
        path = inside_run(run_dir, rel, what)  # never embed a file from outside the run folder
        if path.is_file():
            files[rel] = path.read_bytes()
    exemplars = None
    if record.get("kind") == "exemplars":
        exemplars = dict(record, prefix="")
    elif (run_dir / EXEMPLARS_DIR / "results.json").is_file():
        exemplars = dict(read_json_object(run_dir / EXEMPLARS_DIR / "results.json", f"{EXEMPLARS_DIR}/results.json"), prefix=f"{EXEMPLARS_DIR}/")
    if exemplars is not None:
        files.update(_exemplar_files(run_dir, exemplars, exemplars["prefix"]))
    return RunPage(name=str(run_dir), record=record, files=files, evaluation=evaluation, neighbors=neighbors, exemplars=exemplars)


def build_report(run_dirs: Sequence[str | Path], title: str = "dgnam report") -> str:
    """The HTML page of :func:`render_report` for run folders on disk."""
    return render_report([load_run_page(d) for d in run_dirs], title=title)


_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px;color:#222;background:#fff;max-width:1400px}
h1{font-size:1.5em;margin:0 0 4px} h2{font-size:1.25em;border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:36px}
h3{font-size:1.05em;margin:20px 0 8px} .meta{color:#666;font-size:.9em}
table{border-collapse:collapse;font-size:.85em;margin:6px 0 12px} th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3} td.n{text-align:right;font-variant-numeric:tabular-nums} .ok{color:#08700f;font-weight:600} .bad{color:#b00020}
.grid{display:flex;flex-wrap:wrap;gap:12px} .card{border:1px solid #ddd;border-radius:4px;padding:6px;width:200px;font-size:.8em}
.card img{width:200px;height:200px;display:block;image-rendering:auto} .card .lbl{font-weight:600;margin:4px 0 2px;word-break:break-word}
img.sheet{max-width:100%;border:1px solid #ddd} .nb{margin:6px 0 14px} code{font-size:.9em;background:#f5f5f5;padding:1px 3px}
ul.notes{font-size:.85em;color:#6b4e00}
"""


def render_report(runs: Sequence[RunPage], title: str = "dgnam report") -> str:
    """One self-contained HTML page for ``runs``: settings, images with activation curves, contact
    sheets, metric tables (when evaluated), neighbours (when computed), and a comparison table of
    the evaluated runs. Several runs show their images side by side: one row per unit (matched by its
    label), one column per run.

    Args:
        runs: The runs, in page order (:func:`load_run_page`).
        title: Page title.

    Returns:
        The HTML text (UTF-8); every image is a ``data:image/png;base64,...`` URI.
    """
    body = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{len(runs)} run(s)</p>']
    evaluated = [r for r in runs if r.evaluation]
    if len(evaluated) > 1 or (evaluated and len(runs) > 1):
        body.append("<h2>Comparison</h2>")
        body.append(_comparison_table(evaluated))
    shown = [r for r in runs if r.record.get("kind") != "exemplars" and r.record.get("items")]
    if len(shown) > 1:  # the same unit side by side, each run's section then without its images
        body.append(_side_by_side(shown))
    for k, run in enumerate(runs):
        body.append(_run_section(run, k, cards=len(shown) < 2))
    return (
        _REPORT_HEAD + '<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )


def check_report_out(path: str | Path) -> None:
    """Refuse to write a report over a file that is not a report dgnam wrote (a run's results.json, a
    user's own page): dgnam never replaces a file it did not write.

    Raises:
        RunFolderError: ``path`` exists (or is a dangling symlink) and does not start as :func:`render_report`'s pages do.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_file():
        with open(path, "rb") as f:
            head = f.read(65536).decode("utf-8", "replace")
        if head.startswith(_REPORT_HEAD) or (head.startswith(_OLD_REPORT_HEAD[0]) and _OLD_REPORT_HEAD[1] in head):
            return
    raise RunFolderError(f"--out {short(path, 300)} exists and is not a report dgnam wrote: give another --out (dgnam never replaces a file it did not write)")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _img(png: bytes | None, alt: str, cls: str = "") -> str:
    if png is None:
        return f'<p class="bad">missing image: {html.escape(str(alt))}</p>'
    klass = f' class="{cls}"' if cls else ""
    return f'<img{klass} src="{_data_uri(png)}" alt="{html.escape(str(alt))}">'


def _table(rows: Sequence[Sequence], header: Sequence[str] | None = None, cls: str = "") -> str:
    out = [f'<table class="{cls}">' if cls else "<table>"]
    if header:
        out.append("<tr>" + "".join(f"<th>{html.escape(str(h))}</th>" for h in header) + "</tr>")
    for row in rows:
        cells = []
        for v in row:
            if isinstance(v, _Raw):  # HTML already: _num, _pct, or markup built from escaped parts
                cells.append(f"<td>{v}</td>")
            elif _is_number(v):
                cells.append(f'<td class="n">{_num(v)}</td>')
            else:
                cells.append(f"<td>{_num(v)}</td>")  # text: escaped
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _settings_rows(record: Mapping) -> list[list]:
    keys = ["kind", "method", "net", "net_weights", "generator", "generator_weights", "preset", "seeds", "units", "k", "batch_size", "device", "created",
            "seconds", "complete", "interrupted"]  # fmt: skip
    rows: list[list] = []
    for key in keys:
        if key in record and record[key] is not None:
            value = record[key]
            rows.append([key, ", ".join(map(str, value)) if isinstance(value, list) else value])
    if record.get("command"):
        command = record["command"] if isinstance(record["command"], list) else [record["command"]]
        rows.append(["command", _Raw(f"<code>{html.escape(' '.join(map(str, command)))}</code>")])
    timing = record.get("timing") or {}
    for key, value in timing.items():
        rows.append([f"timing.{key}", value])
    for key, value in (record.get("config") or {}).items():
        rows.append([f"config.{key}", json.dumps(value) if isinstance(value, (list, dict)) else value])
    for key, value in (record.get("versions") or {}).items():
        rows.append([f"versions.{key}", value])
    return rows


def _label(item: Mapping) -> str:
    """The name an item's unit is shown (and matched across runs) by: its label, else its unit."""
    return str(item.get("label", item.get("unit")))


def _cards(run: RunPage) -> list[str]:
    """One card per item of ``run``: its image, label and seed, activations, judges' verdicts, maps and curve."""
    ev_items = {(it.get("file")): it for it in (run.evaluation or {}).get("items", [])}
    cards = []
    for item in run.record.get("items") or []:
        cap = [f'<div class="lbl">{html.escape(_label(item))} · seed {html.escape(str(item.get("seed")))}</div>',
               f'<div>final {_num(item.get("final_activation"))}, best {_num(item.get("best_activation"))} (step {_num(item.get("best_step"))})</div>']  # fmt: skip
        ev = ev_items.get(item.get("file"))
        if ev:
            for name, j in (ev.get("judges") or {}).items():
                cls = "ok" if j.get("rank") == 1 else "bad"
                cap.append(f'<div>{html.escape(name)}: <span class="{cls}">{html.escape(str(j.get("pred_label")))}</span> (rank {_num(j.get("rank"))})</div>')
        curve = svg_curves([_curve(item)], width=200, height=70, title=f"activation of {item.get('unit')} per step")
        maps = "".join(f'<div>{html.escape(str(key))}</div>{_img(run.files.get(name), str(name))}'
                       for key, name in (item.get("maps") if isinstance(item.get("maps"), dict) else {}).items() if run.files.get(name))  # fmt: skip
        cards.append(f'<div class="card">{_img(run.files.get(item["file"]), item["file"])}{"".join(cap)}{maps}{curve}</div>')
    return cards


def _side_by_side(runs: Sequence[RunPage]) -> str:
    """The comparison grid of several runs: one row per unit (matched by label), one column per run, each cell
    the unit's cards in that run (every seed), "–" where the run lacks the unit."""
    by_label: dict[str, dict[int, list[str]]] = {}
    for k, run in enumerate(runs):
        for item, card in zip(run.record.get("items") or [], _cards(run)):
            by_label.setdefault(_label(item), {}).setdefault(k, []).append(card)
    rows = [[label] + [_Raw(f'<div class="grid">{"".join(cells[k])}</div>') if k in cells else None for k in range(len(runs))]
            for label, cells in by_label.items()]  # fmt: skip
    return "<h2>Side by side</h2>" + _table(rows, ["unit"] + [r.name for r in runs], "side-by-side")


def _run_section(run: RunPage, k: int, cards: bool = True) -> str:
    """One run's section; without ``cards`` its images are left to the side-by-side grid (:func:`_side_by_side`)."""
    rec = run.record
    if rec.get("kind") == "exemplars":
        return (f'<section id="run{k}"><h2>{html.escape(run.name)}</h2>' + _exemplars_html(rec, run.files)
                + "<h3>Settings</h3>" + _table(_settings_rows(rec), ["setting", "value"], "settings") + "</section>")  # fmt: skip
    items = rec.get("items") or []
    out = [f'<section id="run{k}"><h2>{html.escape(run.name)}</h2>']
    out.append(f'<p class="meta">{html.escape(str(rec.get("method", "?")))} on {html.escape(str(rec.get("net", "?")))}: '
               f"{len(items)} image(s)" + ("" if rec.get("complete", True) else " (incomplete run)") + "</p>")  # fmt: skip
    if cards:  # images, each with its activation curve
        out.append('<h3>Images</h3><div class="grid">' + "".join(_cards(run)) + "</div>")
    if items:
        histories = [_curve(it) for it in items[:8]]
        labels = [f"{it.get('unit')} s{it.get('seed')}" for it in items[:8]]
        more = f" (first 8 of {len(items)})" if len(items) > 8 else ""
        out.append(f"<h3>Activation per step{more}</h3>")
        out.append(svg_curves(histories, labels, width=520, height=200 + 13 * len(labels), title="activation per step"))
    if "contact_sheet.png" in run.files:
        out.append("<h3>Contact sheet</h3>" + _img(run.files["contact_sheet.png"], "contact sheet", "sheet"))
    if run.evaluation:
        out.append(_evaluation_html(run.evaluation))
    if run.neighbors:
        out.append(_neighbors_html(run.neighbors, run.files))
    if run.exemplars:
        out.append(_exemplars_html(run.exemplars, run.files))
    out.append("<h3>Settings</h3>" + _table(_settings_rows(rec), ["setting", "value"], "settings"))
    out.append("</section>")
    return "\n".join(out)


def _curve(item: Mapping) -> list:
    """An item's activation per step as drawn: ``history`` (steps 0 to steps - 1) then ``final_activation``, the
    activation of the last image, which the loops record as step ``steps`` (its ``best_step`` when it is the best)."""
    history = item.get("history")
    history = list(history) if isinstance(history, list) else []
    final = item.get("final_activation")
    return history + [final] if history and _is_number(final) else history


def _summary_rows(ev: Mapping) -> list[list]:
    s, nat = ev.get("summary") or {}, ev.get("natural") or {}
    px = s.get("image_px") if isinstance(s.get("image_px"), list) else []
    rows: list[list] = [["images", s.get("images")], ["units", s.get("units")], ["image size (px)", "x".join(map(str, px))]]
    if s.get("class_images"):
        rows.append(["target top-1 (class units)", _pct(s.get("target_top1"))])
    for name, j in (s.get("judges") or {}).items():
        if "top1" in j:
            rows.append([f"judge {name}{_family(j)} top-1", _pct(j.get("top1"))])
        if "top5" in j:
            rows.append([f"judge {name}{_family(j)} top-5", _pct(j.get("top5"))])
        if j.get("frechet_distance") is not None:
            rows.append([f"Fréchet distance to natural ({name} {j.get('feature_layer')})", j["frechet_distance"]])
        if j.get("diversity") is not None:
            rows.append([f"diversity across seeds ({name}, mean 1 − cos)", j["diversity"]])
    act, rel = s.get("activation") or {}, s.get("relative_activation") or {}
    if act.get("n"):
        rows.append(["activation (recomputed from the PNGs), median", act.get("median")])
    if rel.get("n"):
        rows.append(["activation / natural maximum, median", rel.get("median")])
        rows.append(["activation / natural maximum, mean", rel.get("mean")])
    slope = s.get("spectrum_slope") or {}
    if slope.get("n"):
        ref = ""
        if nat.get("spectrum_slope_p5") is not None:
            ref = (f" (natural: median {_num((nat.get('spectrum_slope') or {}).get('median'))}, "
                   f"5–95% {_num(nat['spectrum_slope_p5'])} to {_num(nat.get('spectrum_slope_p95'))})")
        rows.append([_Raw("power-spectrum slope, median" + ref), slope.get("median")])
        if slope.get("within_natural_p5_p95") is not None:
            rows.append(["slope within the natural 5–95% range", _pct(slope["within_natural_p5_p95"])])
    sat = s.get("saturation") or {}
    if sat.get("n"):
        ref = f" (natural {_num((nat.get('saturation') or {}).get('mean'))})" if nat else ""
        rows.append([_Raw("mean saturation" + ref), sat.get("mean")])
    speed = s.get("speed") or {}
    if speed:
        rows += [["seconds per image", speed.get("seconds_per_image")], ["images per minute", speed.get("images_per_minute")],
                 ["seconds per unit (all seeds)", speed.get("seconds_per_unit")], ["units per minute", speed.get("units_per_minute")]]  # fmt: skip
    if nat:
        rows.append(["natural reference images", f"{nat.get('images')} at {nat.get('image_px')} px"])
    for layer, f in ((ev.get("faithfulness") or {}).get("layers") or {}).items():
        rows.append([_Raw(f"faithfulness in {_num(f.get('earlier_layer'))} ({html.escape(layer)}: own exemplars nearest; chance {_pct(f.get('chance'))})"),
                     _Raw(f"{_pct(f.get('accuracy'))} (natural images: {_pct((f.get('natural') or {}).get('accuracy'))}); "
                          f"rank score {_pct(f.get('rank_score'))} (natural {_pct((f.get('natural') or {}).get('rank_score'))}; chance 50%)")])  # fmt: skip
    return rows


def _evaluation_html(ev: Mapping) -> str:
    out = ["<h3>Evaluation</h3>", _table(_summary_rows(ev), ["measure", "value"], "metrics")]
    notes = ev.get("notes") or []
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{_num(n)}</li>" for n in notes) + "</ul>")
    items = ev.get("items") or []
    judges = list(((ev.get("summary") or {}).get("judges") or {}).keys())
    families = {name: _family(j) for name, j in ((ev.get("summary") or {}).get("judges") or {}).items()}
    header = ["unit", "seed", "activation", "rel. act.", "target rank"] + [f"{j}{families[j]} rank (top class)" for j in judges] + ["diversity", "slope", "saturation"]
    rows = []
    for it in items:
        row = [it.get("label"), it.get("seed"), it.get("activation"), it.get("relative_activation"), it.get("target_rank")]
        for j in judges:
            jj = (it.get("judges") or {}).get(j)
            row.append(f"{jj['rank']} ({jj['pred_label']})" if jj else None)
        row += [it.get("diversity"), it.get("spectrum_slope"), it.get("saturation")]
        rows.append(row)
    out.append("<h3>Per image</h3>" + _table(rows, header, "items"))
    return "\n".join(out)


def _neighbors_html(nb: Mapping, files: Mapping[str, bytes]) -> str:
    metric = nb.get("metric", "?")
    what = "1 − cosine similarity" if metric == "cosine" else "Euclidean distance" if metric == "l2" else metric
    out = [f"<h3>Nearest natural images</h3><p class=\"meta\">{_num(nb.get('k'))} nearest of {_num(nb.get('data_images'))} images of "
           f"<code>{html.escape(str(nb.get('data')))}</code> in {html.escape(str(nb.get('net')))} <code>{html.escape(str(nb.get('layer')))}</code> "
           f"features; distance: {html.escape(str(what))}.</p>"]  # fmt: skip
    for it in nb.get("items", []):
        dists = ", ".join(_num(n.get("distance")) for n in it.get("neighbors", []))
        png = files.get(f"{NEIGHBORS_DIR}/{it.get('sheet')}")
        out.append(f'<div class="nb"><div>{html.escape(str(it.get("label", it.get("file"))))} · seed {html.escape(str(it.get("seed")))}: distances {dists}</div>'
                   f'{_img(png, str(it.get("sheet")), "sheet")}</div>')  # fmt: skip
    return "\n".join(out)


def _exemplars_html(ex: Mapping, files: Mapping[str, bytes]) -> str:
    data = ex.get("data") or {}
    prefix = ex.get("prefix", "")
    out = [f"<h3>Dataset exemplars</h3><p class=\"meta\">top and bottom {html.escape(str(ex.get('k')))} of {html.escape(str(data.get('images')))} images of "
           f"<code>{html.escape(str(data.get('path')))}</code> for {html.escape(str(ex.get('net')))}; hidden units cut to their receptive field.</p>"]  # fmt: skip
    for it in ex.get("items") or []:
        st = it.get("stats") or {}
        sheet = _img(files.get(f"{prefix}{it.get('sheet')}"), str(it.get("sheet")), "sheet")
        out.append(f'<div class="nb"><div>{html.escape(str(it.get("label", it.get("unit"))))}: over the data min {_num(st.get("min"))}, '
                   f'median {_num(st.get("median"))}, max {_num(st.get("max"))}</div>{sheet}</div>')  # fmt: skip
    return "\n".join(out)


def _family(judge: Mapping) -> str:
    """`` (out-of-family)`` / `` (in-family)`` after a judge's name, when its family is known."""
    return f" ({judge['family']})" if judge.get("family") else ""


def _comparison_table(runs: Sequence[RunPage]) -> str:
    header = ["run", "method", "images", "target top-1", "judge", "judge top-1", "judge top-5", "out-of-family judge top-1 / top-5",
              "Fréchet dist.", "diversity", "rel. act. (median)", "slope (median)", "saturation", "s / image"]  # fmt: skip
    rows = []
    for r in runs:
        s = r.evaluation.get("summary") or {}
        judges = s.get("judges") or {}
        judge, j = next(iter(judges.items()), (None, {}))
        other = next((o for o in judges.values() if o.get("family") == "out-of-family" and "top1" in o), None)
        rows.append([
            r.name, r.record.get("method"), s.get("images"), _pct(s.get("target_top1")) if s.get("class_images") else None, judge,
            _pct(j.get("top1")) if "top1" in j else None, _pct(j.get("top5")) if "top5" in j else None,
            _Raw(f"{_pct(other['top1'])} / {_pct(other.get('top5'))} ({_num(other.get('net'))})") if other else None, j.get("frechet_distance"),
            s.get("diversity"), (s.get("relative_activation") or {}).get("median"), (s.get("spectrum_slope") or {}).get("median"),
            (s.get("saturation") or {}).get("mean"), (s.get("speed") or {}).get("seconds_per_image"),
        ])  # fmt: skip
    return _table(rows, header, "comparison")


__all__ = [
    "EVALUATION_FILE", "EXEMPLARS_DIR", "NEIGHBORS_DIR", "NEIGHBORS_FILE", "REPORT_MARKER", "RunPage", "build_report", "check_report_out",
    "load_run_page", "neighbors_sheet",
    "read_record", "read_run", "render_report", "svg_curves",
]  # fmt: skip
