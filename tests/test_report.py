"""`dgnam evaluate`, `dgnam neighbors` and `dgnam report` on a tiny run folder made by `dgnam visualize`."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dgnam
from dgnam import cli
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec
from dgnam.io.report import build_report, neighbors_sheet, svg_curves
from dgnam.io.read import read_run

from conftest import CATEGORIES, TinyNet, missing
from test_assess import write_color_run

SPEC = InputSpec(size=(32, 32), min_size=8)


@pytest.fixture
def tiny_nets(tmp_path, monkeypatch):
    """A registered tiny target (weights passed as a file) and a tiny judge (weights in the cache)."""
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("DGNAM_HOME", str(home))
    torch.manual_seed(0)
    net_file = tmp_path / "tiny_net.pth"
    torch.save(TinyNet().state_dict(), net_file)
    torch.manual_seed(5)
    torch.save(TinyNet().state_dict(), home / "weights" / "tiny_judge.pth")
    dgnam.nets.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", NetSpec("tiny", TinyNet, WeightSource("tiny_net.pth"), SPEC, CATEGORIES))
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny_judge", NetSpec("tiny_judge", TinyNet, WeightSource("tiny_judge.pth"), SPEC, CATEGORIES))
    return net_file


@pytest.fixture
def natural_folder(tmp_path):
    """Twelve 32x32 'natural' images: smooth random colour fields (distinct features, nonzero spectrum)."""
    folder = tmp_path / "natural"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(small).resize((32, 32), Image.BILINEAR).save(folder / f"img_{i:02d}.png")
    return folder


@pytest.fixture
def tiny_run(tmp_path, tiny_nets):
    out = tmp_path / "run"
    argv = ["visualize", "--net", "tiny", "--net-weights", str(tiny_nets), "--pixel", "pixel", "--unit", "logits:1-2",
            "--unit", "conv2:3", "--seeds", "0-1", "--steps", "4", "--batch-size", "4", "--out", str(out), "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0
    return out


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs))


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def test_visualize_records_batch_timing(tiny_run):
    record = json.loads((tiny_run / "results.json").read_text())
    assert [b["images"] for b in record["batches"]] == [4, 2]  # 6 images in batches of 4
    assert all(b["seconds"] > 0 for b in record["batches"])
    assert [it["batch"] for it in record["items"]] == [0, 0, 0, 0, 1, 1]
    timing = record["timing"]
    assert timing["optimize_seconds"] == pytest.approx(sum(b["seconds"] for b in record["batches"]), abs=2e-3)
    # optimize_seconds is rounded to 1e-3 (up to 5e-4 / 6 per image) and seconds_per_image to 1e-4 (5e-5)
    assert timing["seconds_per_image"] == pytest.approx(timing["optimize_seconds"] / 6, abs=5e-4 / 6 + 5e-5 + 1e-9)
    assert timing["optimize_seconds"] <= record["seconds"] + 1e-3
    assert timing["processes"] == 1 and timing["process_seconds"] == timing["optimize_seconds"]
    assert record["started"] <= time.time() - record["seconds"] + 1.0  # the run's start, as an epoch
    assert all(b["history_axis"] == "step" and b["config"]["steps"] == 4 and b["method"] == "pixel" for b in record["batches"])


def test_evaluate_neighbors_report_end_to_end(tmp_path, tiny_run, tiny_nets, natural_folder):
    # one synthesized image replaced by a copy of a folder image: it must find that image at distance ~0
    shutil.copy(natural_folder / "img_03.png", tiny_run / "logits_0001_seed0.png")
    argv = ["evaluate", str(tiny_run), "--judge", "tiny_judge", "--natural", str(natural_folder), "--natural-size", "32"]
    assert cli.main(argv) == 2  # the run records --net-weights outside its folder: not opened
    argv += ["--net-weights", str(tiny_nets)]
    assert cli.main(argv) == 0
    ev = json.loads((tiny_run / "evaluation.json").read_text())
    record, images = read_run(tiny_run)
    assert [it["file"] for it in ev["items"]] == [it["file"] for it in record["items"]]
    # target ranks agree with a direct forward pass of the tiny net on the PNGs
    net = dgnam.load_net("tiny", weights=tiny_nets)
    with torch.no_grad():
        logits = net(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    for item, row, ev_item in zip(record["items"], logits, ev["items"]):
        if item["layer"] == "logits":
            assert ev_item["target_rank"] == 1 + int((row > row[item["index"]]).sum())
            assert ev_item["judges"]["tiny_judge"]["rank"] >= 1
            assert ev_item["activation"] == pytest.approx(float(row[item["index"]]), abs=1e-4)
        else:  # a hidden unit: no class rank
            assert "target_rank" not in ev_item and "judges" not in ev_item
    s = ev["summary"]
    assert s["class_images"] == 4 and 0.0 <= s["target_top1"] <= 1.0
    assert s["judges"]["tiny_judge"]["frechet_distance"] > 0 and s["judges"]["tiny_judge"]["frechet_natural_images"] == 12
    assert 0.0 <= s["diversity"] <= 2.0 and len(s["judges"]["tiny_judge"]["diversity_per_unit"]) == 3
    assert s["speed"]["seconds_per_image"] == pytest.approx(record["timing"]["optimize_seconds"] / 6, rel=1e-2, abs=1e-4)
    assert ev["natural"]["images"] == 12 and ev["natural"]["spectrum_slope_p5"] is not None

    # neighbours: the copied image is its own nearest neighbour
    argv = ["neighbors", str(tiny_run), "--data", str(natural_folder), "--net", "tiny", "--net-weights", str(tiny_nets),
            "--size", "32", "-k", "3"]  # fmt: skip
    assert cli.main(argv) == 0
    nb = json.loads((tiny_run / "neighbors" / "neighbors.json").read_text())
    assert nb["metric"] == "cosine" and nb["data_images"] == 12 and len(nb["items"]) == 6
    first = nb["items"][0]
    assert first["file"] == "logits_0001_seed0.png"
    assert first["neighbors"][0]["file"] == "img_03.png" and first["neighbors"][0]["distance"] < 1e-6
    assert first["neighbors"][1]["distance"] > 1e-5
    for item in nb["items"]:
        distances = [n["distance"] for n in item["neighbors"]]
        assert len(distances) == 3 and distances == sorted(distances)
        with Image.open(tiny_run / "neighbors" / item["sheet"]) as sheet:
            assert sheet.size[0] >= 4 * 128

    # the report: every image embedded as a valid PNG, tables and curves present
    assert cli.main(["report", str(tiny_run)]) == 0
    text = (tiny_run / "report.html").read_text()
    page = _parse(text)
    assert len(page.imgs) == 6 + 1 + 6  # items, contact sheet, neighbour sheets
    for img in page.imgs:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix) :], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        with Image.open(io.BytesIO(png)) as im:
            im.verify()
        with Image.open(io.BytesIO(png)) as im:
            assert im.size[0] > 0 and im.size[1] > 0
    assert page.tags.count("table") >= 3  # metrics, per image, settings
    assert page.tags.count("svg") == 6 + 1 and page.tags.count("polyline") == 6 + 6
    assert "<script" not in text and 'src="http' not in text and "tiny_judge" in text and "Fréchet" in text


def test_report_of_two_runs_has_a_comparison(tmp_path):
    a, b = write_color_run(tmp_path / "a"), write_color_run(tmp_path / "b", seconds=1.0)
    summary = {"images": 4, "class_images": 4, "target_top1": 0.75, "judges": {"j": {"top1": 0.5, "top5": 1.0}}, "speed": {"seconds_per_image": 0.25}}
    (b / "evaluation.json").write_text(json.dumps({"summary": summary, "items": [], "notes": ["a note"]}))
    text = build_report([a, b], title="two runs")
    page = _parse(text)
    assert page.tags.count("section") == 2 and "Comparison" in text and "a note" in text
    assert text.count("75%") >= 2  # comparison table and metrics table
    assert len(page.imgs) == 2 * (4 + 1)
    # judges are labelled by family; the out-of-family judge has its own comparison column
    summary["judges"] = {"efficientnet_lite1": {"top1": 0.5, "top5": 1.0, "family": "in-family", "net": "efficientnet_lite1"},
                         "squeezenet1_1": {"top1": 0.25, "top5": 0.75, "family": "out-of-family", "net": "squeezenet1_1"}}
    (b / "evaluation.json").write_text(json.dumps({"summary": summary, "items": [], "notes": []}))
    text = build_report([a, b], title="two runs")
    assert "judge squeezenet1_1 (out-of-family) top-1" in text and "judge efficientnet_lite1 (in-family) top-5" in text
    assert "out-of-family judge top-1 / top-5" in text and "25% / 75% (squeezenet1_1)" in text


HOSTILE = '<script>alert("x")</script> & <b onload="y">'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &lt;b onload=&quot;y&quot;&gt;"


def test_every_string_from_a_run_is_escaped(tmp_path):
    """Names, labels, the command, notes, neighbour labels and file names come from files anyone can edit:
    each must reach the page as text (with <, & and " escaped), never as markup."""
    from dgnam.io.report import RunPage, render_report

    run = write_color_run(tmp_path / "run")
    record = json.loads((run / "results.json").read_text())
    record.update(net=HOSTILE, method=HOSTILE, command=["dgnam", HOSTILE], units=[HOSTILE])
    record["items"][0]["label"] = HOSTILE
    record["items"][1]["unit"] = HOSTILE
    record["batches"][0]["config"] = {"steps": HOSTILE}
    (run / "results.json").write_text(json.dumps(record))
    (run / "evaluation.json").write_text(json.dumps({"summary": {"images": 4, "judges": {HOSTILE: {"top1": 0.5}}}, "items": [], "notes": [HOSTILE]}))
    (run / "neighbors").mkdir()
    (run / "neighbors" / "neighbors.json").write_text(json.dumps({"items": [{"label": HOSTILE, "seed": HOSTILE, "sheet": "x.png", "neighbors": []}]}))
    text = build_report([run], title=HOSTILE)
    page = _parse(text)
    assert "<script" not in text and "<b " not in text and 'onload="' not in text
    assert text.count(ESCAPED) >= 8  # title twice, net, method, label, unit, command, notes, neighbour label ...
    assert "script" not in page.tags and "b" not in page.tags
    # an image's alt text (its file name) is escaped too
    alt = render_report([RunPage(name="r", record={"items": [{"file": HOSTILE, "unit": "u", "label": "l", "seed": 0}]}, files={HOSTILE: b"x"})])
    assert f'alt="{ESCAPED}"' in alt and "<script" not in alt


def test_the_report_shows_the_batch_size(tmp_path):
    """Images depend on --batch-size (README, Reliability): the page says which one made them."""
    run = write_color_run(tmp_path / "run")
    record = json.loads((run / "results.json").read_text())
    record["batch_size"] = 4
    (run / "results.json").write_text(json.dumps(record))
    assert '<td>batch_size</td><td class="n">4</td>' in build_report([run])


def test_svg_curves_and_sheet():
    svg = svg_curves([[0, 1, 2, 3], [3, 2, 1, 0]], ["up", "down"], width=200, height=100)
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and ">up<" in svg
    assert svg_curves([]) == "" and svg_curves([[float("nan")]]) == ""
    q = np.zeros((20, 20, 3), dtype=np.uint8)
    sheet = neighbors_sheet(q, [q, q], ["d=0", "d=1"], title="q", tile=50)
    assert sheet.size == (3 * 50 + 12, 50 + 28)
    with pytest.raises(ValueError, match="captions"):
        neighbors_sheet(q, [q], [])


def test_missing_run_folder_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/etc/passwd", "../secret.png", "best/../../secret.png", "link/secret.png", "link_file.png"])
def test_report_embeds_no_file_from_outside_the_run_folder(tmp_path, capsys, name):
    run = write_color_run(tmp_path / "run")
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"SECRET-BYTES-0123456789")
    (run / "link").symlink_to(tmp_path, target_is_directory=True)  # a folder symlink that leaves the run
    (run / "link_file.png").symlink_to(secret)  # a file symlink that leaves the run
    record = json.loads((run / "results.json").read_text())
    record["items"][0]["file"] = name
    (run / "results.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"items\[0\]\.file .* leaves the run folder"):
        build_report([run])
    with pytest.raises(ValueError, match="leaves the run folder"):
        read_run(run)  # evaluate reads the images through the same check
    assert cli.main(["report", str(run), "--out", str(tmp_path / "r.html")]) == 2
    assert "leaves the run folder" in capsys.readouterr().err and not (tmp_path / "r.html").exists()


def test_report_refuses_a_neighbour_sheet_outside_the_run(tmp_path):
    run = write_color_run(tmp_path / "run")
    (run / "neighbors").mkdir()
    (run / "neighbors" / "neighbors.json").write_text(json.dumps({"items": [{"sheet": "../../secret.png", "label": "x", "seed": 0}]}))
    with pytest.raises(ValueError, match=r"neighbors.json items\[0\]\.sheet .* leaves the run folder"):
        build_report([run])


# --------------------------------------------------------------------------------------------------
# The page in a real browser (headless Chromium), when one is available
# --------------------------------------------------------------------------------------------------


def find_chromium() -> tuple[list[str], dict] | None:
    """A headless-capable Chromium: ``$DGNAM_CHROMIUM`` (a binary, or a folder where Debian's
    chromium-headless-shell .debs were unpacked with ``dpkg -x``), a browser on PATH, or such a
    folder at ``$DGNAM_HOME/chromium`` or ``/work/cache/chromium``. Returns (command, extra env)."""
    home = Path(os.environ.get("DGNAM_HOME", Path.home() / ".cache" / "dgnam"))
    places = [os.environ.get("DGNAM_CHROMIUM")]
    places += [shutil.which(n) for n in ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "headless_shell")]
    places += [str(home / "chromium"), "/work/cache/chromium"]
    for place in filter(None, places):
        path = Path(place)
        if path.is_file() and os.access(path, os.X_OK):
            return [str(path)], {}
        if path.is_dir():
            for exe in ("usr/lib/chromium/chromium-headless-shell", "usr/lib/chromium/chromium"):
                if (path / exe).is_file():
                    libs = [path / "usr/lib/x86_64-linux-gnu", path / "usr/lib/x86_64-linux-gnu/pulseaudio"]
                    ld = os.pathsep.join([str(p) for p in libs] + [os.environ.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
                    return [str(path / exe)], {"LD_LIBRARY_PATH": ld}
    return None


def test_report_screenshot_in_headless_chromium(tmp_path):
    """The page as a browser draws it. Skipped only where no browser is installed and CI is not set; with a browser (or in CI, where
    .ci/run installs one) a crash or a missing screenshot fails the test."""
    found = find_chromium()
    if found is None:
        missing("no Chromium was found: set DGNAM_CHROMIUM, or unpack Debian's chromium-headless-shell (.ci/run installs it; see DEVELOPERS.md)")
    command, extra_env = found
    run = write_color_run(tmp_path / "run", size=64)  # solid red, pink, green and blue images
    page = tmp_path / "report.html"
    page.write_text(build_report([run]), encoding="utf-8")
    shot = tmp_path / "shot.png"
    args = command + ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                      f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()]  # fmt: skip
    try:
        proc = subprocess.run(args, env={**os.environ, **extra_env}, capture_output=True, text=True, timeout=90)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"Chromium at {command[0]} does not run headless here: {exc}")
    if proc.returncode != 0 or not shot.is_file():
        pytest.fail(f"Chromium at {command[0]} made no screenshot (exit {proc.returncode}): {proc.stderr[-400:]}")
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (900, 1200)
    # each synthesized image is shown at 200x200 px: its solid colour must fill about that area on screen
    for rgb in [(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 100)]:
        match = (np.abs(pixels - np.array(rgb)).max(-1) <= 3).sum()
        assert match >= 0.8 * 200 * 200, f"colour {rgb}: only {match} px on screen"
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50  # text and curves, not a blank page


def test_a_browser_that_crashes_fails_the_screenshot_test(tmp_path, monkeypatch):
    """The screenshot test must fail, not skip, when the browser it found crashes or draws nothing."""
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'crashed' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DGNAM_CHROMIUM", str(fake))
    with pytest.raises(pytest.fail.Exception, match="made no screenshot"):
        test_report_screenshot_in_headless_chromium(tmp_path / "t")
    monkeypatch.setenv("DGNAM_CHROMIUM", str(tmp_path / "nowhere"))
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setenv("CI", "1")
    if find_chromium() is None:  # (a browser in /work/cache/chromium is still found)
        with pytest.raises(pytest.fail.Exception, match="CI is set, but no Chromium"):
            test_report_screenshot_in_headless_chromium(tmp_path / "u")


def _svg_ends(svg_text: str) -> tuple[int, str]:
    """The number of points of an SVG's first polyline and its x-axis end label."""
    import re

    points = re.search(r'<polyline [^>]*points="([^"]*)"', svg_text).group(1).split()
    end = re.findall(r">(step \d+)</text>", svg_text)[-1]
    return len(points), end


def test_the_curve_reaches_the_best_step(tiny_run):
    """The loops record the last image's activation as step ``steps`` (after ``history``'s steps 0 to steps - 1):
    each curve ends there, so "best ... (step 4)" of a 4-step run lies on its curve."""
    record = json.loads((tiny_run / "results.json").read_text())
    text = build_report([tiny_run])
    cards = text.split('<div class="card">')[1:]
    assert len(cards) == len(record["items"]) == 6
    for item, card in zip(record["items"], cards):
        assert len(item["history"]) == 4 and 0 <= item["best_step"] <= 4
        assert f"(step {item['best_step']})" in card
        assert _svg_ends(card) == (5, "step 4")  # history and the final activation; before: 4 points, "step 3"
    best_at_end = [it for it in record["items"] if it["best_step"] == 4]
    assert best_at_end and all(it["best_activation"] == it["final_activation"] for it in best_at_end)
    overview = text.split("<h3>Activation per step")[1]
    assert _svg_ends(overview) == (5, "step 4")


class _Grid(HTMLParser):
    """The side-by-side table: its header cells and, per row, the first cell's text and each run's card count."""

    def __init__(self):
        super().__init__()
        self.inside, self.cell, self.header, self.rows = False, None, [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("class") == "side-by-side":
            self.inside = True
        elif self.inside and tag == "tr":
            self.rows.append([])
        elif self.inside and tag in ("th", "td"):
            self.cell = {"tag": tag, "text": "", "cards": 0}
            self.rows[-1].append(self.cell)
        elif self.inside and self.cell is not None and attrs.get("class") == "card":
            self.cell["cards"] += 1

    def handle_endtag(self, tag):
        if tag == "table" and self.inside:
            self.inside = False

    def handle_data(self, data):
        if self.inside and self.cell is not None and not self.cell["cards"]:  # a cell's own text, not its cards'
            self.cell["text"] += data


def test_a_report_of_two_runs_shows_each_unit_side_by_side(tmp_path):
    """`dgnam report A B`: one row per unit (matched by label), one column per run, each cell that run's images of the
    unit; a unit one run lacks is "–" there; every name is escaped."""
    a, b = write_color_run(tmp_path / "a"), write_color_run(tmp_path / f"b{HOSTILE[:8]}")
    record = json.loads((b / "results.json").read_text())
    labels = list(dict.fromkeys(it["label"] for it in record["items"]))
    assert len(labels) == 2
    record["items"][3]["label"] = HOSTILE  # b's second image of the second unit becomes a unit of its own
    (b / "results.json").write_text(json.dumps(record))
    out = tmp_path / "multi.html"
    assert cli.main(["report", str(a), str(b), "--out", str(out)]) == 0
    text = out.read_text()
    grid = _Grid()
    grid.feed(text)
    header, *rows = grid.rows
    assert [c["text"] for c in header] == ["unit", str(a), str(b)]
    assert [r[0]["text"] for r in rows] == [labels[0], labels[1], HOSTILE]
    assert [[c["cards"] for c in r[1:]] for r in rows] == [[2, 2], [2, 1], [0, 1]]
    assert rows[2][1]["text"] == "–"
    assert "<script" not in text and ESCAPED in text
    page = _parse(text)
    assert len(page.imgs) == 2 * (4 + 1)  # each image once (in the grid), and each run's contact sheet
    assert text.index("Side by side") < text.index('<section id="run0">')
    one = build_report([a])  # one run: its cards in its own section, no grid
    assert "side-by-side" not in one and one.count('<div class="card">') == 4
