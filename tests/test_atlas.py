"""The atlas on a tiny net and prior: what it computes, its cache, interrupts, the CLI, and the pages in Chromium."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import dgnam
import dgnam.methods.accentuate
import dgnam.core.param
from dgnam import cli
from dgnam.atlas import AtlasConfig, AtlasMethod, build_atlas, open_data, serve, split_unit_list
from dgnam.atlas import build as atlas_build
from dgnam.atlas import compute as atlas_compute
from dgnam.atlas.site import histogram_svg
from dgnam.generators import GeneratorSpec
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec
from dgnam.methods.dgn_am import dgnam_config
from dgnam.methods.pixel import PixelConfig

from conftest import TinyNet, join_or_kill, missing

SPEC = InputSpec(size=(32, 32), min_size=8)
NAMES = ('cat <b>&"tabby"', "dog", "bell pepper", "crane", "crane")  # a class name that must be escaped
COLORS = [(230, 20, 20), (20, 200, 40), (30, 40, 220), (240, 220, 30), (200, 30, 200), (20, 210, 210)]


class _Encoder:
    """What a dgnam prior's config says about the layer it inverts."""

    encoder, layer = "tiny", "pool"


class TinyPrior(dgnam.Generator):
    """6-d code (TinyNet's pooled features) -> 32x32 image: a prior whose encoder is known."""

    def __init__(self):
        super().__init__((6,), (32, 32))
        self.fc = nn.Linear(6, 3 * 8 * 8)
        self.up = nn.Upsample(scale_factor=4, mode="bilinear", align_corners=False)
        self.config = _Encoder()

    def decode(self, code):
        return torch.sigmoid(self.up(self.fc(code).view(-1, 3, 8, 8)))


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    net = dgnam.wrap_model(TinyNet(), SPEC, categories=NAMES, name="tiny")
    torch.manual_seed(1)
    gen = TinyPrior().eval().set_bounds(0.0, 3.0)
    for p in gen.parameters():
        p.requires_grad_(False)
    return net, gen


@pytest.fixture
def photos(tmp_path):
    """Six solid-colour 32x32 photos, so a screenshot can find each exemplar by its colour."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, rgb in enumerate(COLORS):
        Image.new("RGB", (32, 32), rgb).save(folder / f"photo_{i}.png")
    return folder


def _build(net, gen, site, data, units=("logits:0-2,conv2:0-1",), steps=3, **config):
    method = AtlasMethod(gen, dgnam_config(gen, steps=steps), PixelConfig(method="fourier", steps=steps), "tiny_prior")
    settings = {"seeds": (0, 1), "k": 3, "batch_size": 4, **config}
    return build_atlas(net, "tiny", site, open_data(data, size=32), method, ["logits", "conv2"], list(units), AtlasConfig(**settings), progress=False)


def test_unit_lists_split_on_layers_only():
    assert split_unit_list("logits:0-7,_blocks.15:0-7") == ["logits:0-7", "_blocks.15:0-7"]
    assert split_unit_list("logits:1,5,9,conv2:3@mean") == ["logits:1,5,9", "conv2:3@mean"]


def test_atlas_builds_every_part_and_a_rerun_does_no_work(tiny, photos, tmp_path, monkeypatch):
    net, gen = tiny
    site = tmp_path / "site"
    first = _build(net, gen, site, photos)
    assert (first.units, first.computed, first.cached, first.activation_passes, first.interrupted) == (5, 5, 0, 2, False)
    record = json.loads((site / "units/logits/0001/unit.json").read_text())
    assert record["label"] == "dog" and [f["seed"] for f in record["facets"]] == [0, 1]
    assert record["pixel"]["method"] == "fourier" and record["accent"]["file"] == "accent.png"
    # exemplars: the data's activations of logits:1, sorted, and the histogram counts every photo
    images = open_data(photos, size=32).batch(range(6))
    with torch.no_grad():
        logits = net(atlas_compute.to_tensor(images))[:, 1].numpy()
    assert [e["index"] for e in record["top"]] == list(np.argsort(-logits, kind="stable")[:3])
    assert record["top"][0]["activation"] == pytest.approx(float(logits.max()), abs=1e-5)
    assert record["natural"]["max"] == pytest.approx(float(logits.max()), abs=1e-5) and sum(record["natural"]["histogram"]["counts"]) == 6
    # each synthesized image's activation is the net's on the saved PNG (up to 8-bit rounding)
    with Image.open(site / "units/logits/0001" / record["facets"][0]["file"]) as im:
        saved = atlas_compute.to_tensor(np.asarray(im.convert("RGB"))[None])
    with torch.no_grad():
        assert float(net(saved)[0, 1]) == pytest.approx(record["facets"][0]["activation"], abs=0.05)
    hidden = json.loads((site / "units/conv2/0000/unit.json").read_text())
    top, left, bottom, right = hidden["receptive_field"]
    with Image.open(site / "units/conv2/0000" / hidden["top"][0]["file"]) as im:
        assert im.size == (right - left, bottom - top) and im.size != (32, 32)  # cropped to the receptive field
    assert hidden["label"] is None

    # the pages: escaped names, relative links that exist, only the shipped script
    index = (site / "index.html").read_text()
    assert "cat &lt;b&gt;&amp;&quot;tabby&quot;" in index and "<b>&" not in index
    for page in [site / "index.html", site / "layers/logits.html", site / "units/logits/0001.html", site / "units/conv2/0000.html"]:
        links = _links(page.read_text())
        assert links and all(not re.match(r"^[a-z]+:", l) or l.startswith("data:") for l in links)  # no network
        for link in links:
            if not link.startswith("data:"):
                assert (page.parent / link.split("#")[0]).is_file(), f"{page.name}: {link} is missing"
    unit_page = (site / "units/logits/0001.html").read_text()
    assert unit_page.count("<img") == 2 + 1 + 2 + 3 + 3 + 2  # facets, pixel, photo + accentuated, top, bottom, neighbours (0, 2)
    assert "× best natural" in unit_page and "<svg" in unit_page

    # a re-run computes nothing: no optimization and no activation pass
    def fail(*args, **kwargs):
        raise AssertionError("a re-run computed something")

    monkeypatch.setattr(atlas_build, "synthesize", fail)
    monkeypatch.setattr(atlas_build, "layer_activations", fail)
    stamp = (site / "units/logits/0001/unit.json").stat().st_mtime_ns
    again = _build(net, gen, site, photos)
    assert (again.computed, again.cached, again.activation_passes) == (0, 5, 0)
    assert (site / "units/logits/0001/unit.json").stat().st_mtime_ns == stamp


def test_an_interrupted_atlas_keeps_its_units_and_resumes(tiny, photos, tmp_path, monkeypatch):
    net, gen = tiny
    site = tmp_path / "site"
    real, calls = atlas_build.synthesize, []

    def stop_in_second_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) > 2:  # batch 1: facets + pixel baseline; then a scheduler's SIGTERM
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(atlas_build, "synthesize", stop_in_second_batch)
    first = _build(net, gen, site, photos)  # 2 units per batch (4 images / 2 seeds)
    assert first.interrupted and first.exit_code == 143 and first.computed == 2 and (site / "index.html").is_file()
    assert "2 units" in (site / "index.html").read_text()
    monkeypatch.setattr(atlas_build, "synthesize", real)
    rest = _build(net, gen, site, photos)
    assert (rest.computed, rest.cached, rest.interrupted) == (3, 2, False)
    # --units limits the work; other settings are other units (a new key)
    more = _build(net, gen, site, photos, units=("logits:0-3",))
    assert (more.computed, more.cached) == (1, 3)
    other = _build(net, gen, site, photos, units=("logits:0",), seeds=(0,))
    assert other.computed == 1


def test_a_change_of_steps_computes_the_units_again(tiny, photos, tmp_path):
    net, gen = tiny
    site, small = tmp_path / "site", {"seeds": (0,), "pixel_baseline": False, "accentuate": False}
    first = _build(net, gen, site, photos, ("logits:0",), **small)
    key = json.loads((site / "units/logits/0000/unit.json").read_text())["key"]
    again = _build(net, gen, site, photos, ("logits:0",), steps=4, **small)  # --steps 4: other images, so another key
    assert (first.computed, again.computed, again.cached) == (1, 1, 0)
    assert json.loads((site / "units/logits/0000/unit.json").read_text())["key"] != key
    assert json.loads((site / "atlas.json").read_text())["steps"] == 4
    assert _build(net, gen, site, photos, ("logits:0",), steps=4, **small).computed == 0  # and that key is reused


def test_steps_show_a_progress_bar_unless_quiet(tiny, photos, tmp_path, capsys):
    net, gen = tiny
    method = AtlasMethod(gen, dgnam_config(gen, steps=5), PixelConfig(method="fourier", steps=5), "tiny_prior")
    config = AtlasConfig(seeds=(0,), k=2, batch_size=2)
    for progress in (True, False):  # progress=False is `dgnam atlas --quiet`
        build_atlas(net, "tiny", tmp_path / f"site{progress}", open_data(photos, size=32), method, ["logits"], ["logits:0"], config, progress=progress)
        err = capsys.readouterr().err
        if progress:  # as visualize: a bar over each optimization's steps (DGN-AM, the pixel baseline, the accentuation)
            assert "dgn-am:" in err and "fourier:" in err and "/5 [" in err and "atlas units" in err, err
        else:
            assert err == ""


def test_k_is_capped_at_half_the_images(tiny, photos, tmp_path, capsys):
    net, gen = tiny
    _build(net, gen, tmp_path / "site", photos, ("logits:0-1",), k=5, seeds=(0,), accentuate=False, pixel_baseline=False)
    assert "-k 5 capped to 3, half the 6 images" in capsys.readouterr().out
    for unit in ("0000", "0001"):
        record = json.loads((tmp_path / "site" / "units/logits" / unit / "unit.json").read_text())
        top, bottom = [e["index"] for e in record["top"]], [e["index"] for e in record["bottom"]]
        assert len(top) == len(bottom) == 3 and not set(top) & set(bottom) and set(top) | set(bottom) == set(range(6))
    assert json.loads((tmp_path / "site" / "atlas.json").read_text())["k"] == 3
    _build(net, gen, tmp_path / "site2", photos, ("logits:0",), k=3, seeds=(0,), accentuate=False, pixel_baseline=False)
    assert "capped" not in capsys.readouterr().out


def test_accentuation_starts_from_the_photo(tiny, photos):
    net, gen = tiny
    from dgnam.methods.accentuate import accentuate, photo_codes, prior_encoder

    photo = dgnam.methods.accentuate.load_photo(photos / "photo_2.png", 32)[None]
    units = dgnam.parse_units(["logits:1"])
    encoder = prior_encoder(gen, net)
    code = photo_codes(gen, encoder, photo)
    with torch.no_grad(), dgnam.frozen_eval(net.model):
        pooled = net.model.pool(net.model.act2(net.model.conv2(net.model.act1(net.model.bn1(net.model.conv1(net.preprocess(photo)))))))
        start = dgnam.run_objective(net, gen(code), dgnam.units_objective(units))
    assert torch.allclose(code, gen.clip(pooled), atol=1e-6)
    r = accentuate(net, units, [0], gen, dgnam.DGNAMConfig(steps=4, lr_start=0.5, lr_end=0.5), photo)
    assert float(r.history[0, 0]) == pytest.approx(float(start), abs=1e-5)  # step 0 is G(E(photo))
    assert float(r.final[0]) > float(start)
    for method in ("pixel", "fourier"):  # pixel methods start from the photo itself
        r = accentuate(net, units, [0], None, PixelConfig(method=method, steps=3), photo)
        with torch.no_grad():
            direct = float(dgnam.run_objective(net, photo, dgnam.units_objective(units)))
        assert float(r.history[0, 0]) == pytest.approx(direct, abs=2e-2), method
    fourier = dgnam.core.param.FourierImage([0], 32, init=photo.clamp(0.01, 0.99))
    assert torch.allclose(fourier(), photo.clamp(0.01, 0.99), atol=1e-4)


def test_histogram_svg_marks_each_synthesized_image():
    svg = histogram_svg({"counts": [1, 3, 2], "edges": [0.0, 1.0, 2.0, 3.0]}, [(5.0, "a <b>", "#000"), (None, "none", "#111")])
    plot = svg.split("</g>", 1)[1]
    assert plot.count("<rect") == 3 and plot.count("stroke-width=\"2\"") == 1 and "a &lt;b&gt;" in plot


def test_histogram_has_a_legend_for_the_data_and_each_marker_colour():
    markers = [(5.0, "DGN-AM seed 0", "#0072B2"), (6.0, "DGN-AM seed 1", "#0072B2"), (2.0, "pixel fourier", "#D55E00"), (None, "accentuated", "#009E73")]
    svg = histogram_svg({"counts": [1, 3, 2], "edges": [0.0, 1.0, 2.0, 3.0]}, markers, legend={"#0072B2": "DGN-AM <2 seeds>"})
    legend = re.search(r'<g class="legend">(.*?)</g>', svg).group(1)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", legend)
    assert texts == ["data images (6)", "DGN-AM &lt;2 seeds&gt;", "pixel fourier"]  # one entry a colour; no line, no entry
    assert 'fill="#bbb"' in legend and 'stroke="#0072B2"' in legend and 'stroke="#D55E00"' in legend and "#009E73" not in legend
    xs = [float(x) for x in re.findall(r'<text x="([\d.]+)"', legend)]
    assert xs == sorted(xs) and len(set(xs)) == 3  # side by side, not on top of each other
    long = {"#0072B2": "DGN-AM (lite0_blocks7_conv_resize), 3 seed(s)", "#D55E00": "pixel baseline", "#009E73": "accentuated"}
    markers[3] = (4.0, "accentuated", "#009E73")
    legend = re.search(r'<g class="legend">(.*?)</g>', histogram_svg({"counts": [1], "edges": [0.0, 1.0]}, markers, legend=long)).group(1)
    placed = [(float(x), float(y), text) for x, y, text in re.findall(r'<text x="([\d.]+)" y="([\d.]+)"[^>]*>([^<]*)</text>', legend)]
    assert len(placed) == 4 and len({y for _, y, _ in placed}) == 2  # too wide for one row: a second row
    assert all(x + 6 * len(text) <= 560 for x, _, text in placed)  # nothing runs off the 560-px figure


# --------------------------------------------------------------------------------------------------
# The command line, and the site in a real browser
# --------------------------------------------------------------------------------------------------


def _register(home: Path) -> None:
    """The tiny net and prior registered by name (in this process, or a spawned rank), weights in the cache at ``home``."""
    os.environ["DGNAM_HOME"] = str(home)
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    dgnam.nets.spec._REGISTRY["tiny"] = NetSpec("tiny", TinyNet, WeightSource("tiny.pth"), SPEC, NAMES)
    dgnam.generators.spec._REGISTRY["tiny_prior"] = GeneratorSpec(
        "tiny_prior", TinyPrior, WeightSource("tiny_prior.pth"), encoder="tiny:pool", bounds=lambda g: g.set_bounds(0.0, 3.0), default=True)


@pytest.fixture
def registered(tmp_path, monkeypatch):
    """The tiny net and prior registered by name, weights in the cache."""
    home = tmp_path / "home"
    (home / "weights").mkdir(parents=True)
    monkeypatch.setenv("DGNAM_HOME", str(home))
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), home / "weights" / "tiny.pth")
    torch.manual_seed(1)
    torch.save(TinyPrior().state_dict(), home / "weights" / "tiny_prior.pth")
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", None)  # restored after the test; _register fills them
    monkeypatch.setitem(dgnam.generators.spec._REGISTRY, "tiny_prior", None)
    _register(home)
    return home


def _atlas_argv(site, data, *extra):
    return ["atlas", "tiny", "--layers", "logits,conv2", "--units", "logits:0-2,conv2:0-1", "--data", str(data), "--out", str(site),
            "--seeds", "0-1", "--steps", "3", "-k", "3", "--batch-size", "4", "--quiet", *extra]


def test_cli_builds_then_adds_nothing(registered, photos, tmp_path, capsys):
    site = tmp_path / "site"
    assert cli.main(_atlas_argv(site, photos)) == 0
    assert "5 computed now" in capsys.readouterr().out
    settings = json.loads((site / "atlas.json").read_text())
    assert settings["generator"] == "tiny_prior" and settings["pixel_method"] == "deepinversion" and settings["steps"] == 3
    assert cli.main(_atlas_argv(site, photos)) == 0
    assert "0 computed now, 5 already done, 0 activation pass" in capsys.readouterr().out
    assert cli.main(["atlas", "tiny", "--layers", "nope", "--data", str(photos), "--out", str(site)]) == 2
    assert "unknown layer 'nope'" in capsys.readouterr().err
    assert cli.main(["atlas", "serve", str(tmp_path / "nothing")]) == 2
    assert "has no index.html" in capsys.readouterr().err


def _rank(rank: int, world: int, port: int, home: Path, argv: list[str]) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _register(home)
    code = cli.main(argv)
    if code != 0:
        raise SystemExit(code)


def test_two_processes_split_the_units_and_make_the_same_site(registered, photos, tmp_path):
    """torchrun-style, gloo on CPU: each rank computes its batches of units; the site equals a 1-process build."""
    import socket

    import torch.multiprocessing as mp

    single, multi = tmp_path / "single", tmp_path / "multi"
    assert cli.main(_atlas_argv(single, photos)) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, 2, port, registered, _atlas_argv(multi, photos))) for r in range(2)]
    for p in procs:
        p.start()
    assert join_or_kill(procs, 120) == [0, 0]
    units = sorted(p.parent.relative_to(single) for p in single.glob("units/*/*/unit.json"))
    assert len(units) == 5 and units == sorted(p.parent.relative_to(multi) for p in multi.glob("units/*/*/unit.json"))
    ranks = []
    for unit in units:
        a, b = (json.loads((root / unit / "unit.json").read_text()) for root in (single, multi))
        assert {k: v for k, v in a.items() if k not in ("seconds", "cpu_seconds", "rank")} == {k: v for k, v in b.items() if k not in ("seconds", "cpu_seconds", "rank")}
        ranks.append(b["rank"])
        for name in sorted(p.name for p in (single / unit).iterdir()):
            if name.endswith(".png"):
                assert Image.open(single / unit / name).tobytes() == Image.open(multi / unit / name).tobytes(), f"{unit}/{name}"
    # batches of 2 units (4 images / 2 seeds): [logits 0, 1] on rank 0; [logits 2, conv2 0], [conv2 1] on rank 1
    assert ranks == [1, 1, 0, 0, 1], ranks  # conv2/0000, conv2/0001, logits/0000 ... (folder order)
    assert (multi / "index.html").read_text().count('class="card"') == 5


def test_without_data_the_atlas_uses_the_offline_pool(registered, photos, tmp_path, monkeypatch):
    from dgnam.pool.store import load_image_folder, save_folder_pool

    built = []

    def fake_build(path, progress=True):  # no download in tests: the pool is written from the photos
        built.append(path)
        images, meta = load_image_folder(photos, size=32)
        save_folder_pool(path, images, meta)

    monkeypatch.setattr("dgnam.pool.build_pool", fake_build)
    argv = [a for a in _atlas_argv(tmp_path / "site", photos) if a not in ("--data", str(photos))]
    assert cli.main(argv) == 0 and built == [registered / "pool"]
    assert cli.main(argv) == 0 and len(built) == 1  # built once
    record = json.loads((tmp_path / "site/units/logits/0000/unit.json").read_text())
    assert record["natural"]["images"] == 6


def test_visualize_from_a_photo(registered, photos, tmp_path):
    out = tmp_path / "run"
    argv = ["visualize", "--net", "tiny", "--unit", "logits:1", "--steps", "3", "--init-image", str(photos / "photo_1.png"), "--out", str(out), "--quiet"]
    assert cli.main(argv) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["init_image"].endswith("photo_1.png")
    net, gen = dgnam.load_net("tiny"), dgnam.load_generator("tiny_prior")
    photo = dgnam.methods.accentuate.load_photo(photos / "photo_1.png", 32)[None]
    code = dgnam.methods.accentuate.photo_codes(gen, dgnam.methods.accentuate.prior_encoder(gen, net, "tiny_prior"), photo)
    with torch.no_grad():
        start = float(dgnam.run_objective(net, gen(code), dgnam.units_objective(dgnam.parse_units(["logits:1"]))))
    assert record["items"][0]["history"][0] == pytest.approx(start, abs=1e-4)
    assert cli.main(argv[:-3] + ["--pixel", "fourier", "--out", str(tmp_path / "px"), "--quiet"]) == 0


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.links += [a[k] for k in ("href", "src") if a.get(k)]


def _links(text: str) -> list[str]:
    parser = _Links()
    parser.feed(text)
    return parser.links


def _chromium():
    from test_report import find_chromium

    found = find_chromium()
    if found is None:  # in CI (.ci/run installs it) a missing browser is a failure, not a skip
        missing("no Chromium: apt-get install chromium-headless-shell (see DEVELOPERS.md)")
    return found


def _browse(found, url: str, *args) -> tuple[str, str]:
    """Open ``url`` headless; return (stdout, console lines of stderr)."""
    command, env = found
    proc = subprocess.run(command + ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=1",
                                     "--enable-logging=stderr", "--v=0", "--virtual-time-budget=3000", *args, url],
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=90)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-600:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    return proc.stdout, "\n".join(console)


def test_site_in_headless_chromium_from_file_and_server(tiny, photos, tmp_path):
    found = _chromium()
    net, gen = tiny
    site = tmp_path / "site"
    _build(net, gen, site, photos, k=2)
    _add_probe(site)
    server = serve(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base_http = f"http://127.0.0.1:{server.server_address[1]}/"
        for base in (site.as_uri() + "/", base_http):
            # the index: every image loads, the search box filters (a query in the address), no console message,
            # and the cards it hides are not rendered (laid out with a box), not only left out of the count
            dom, console = _browse(found, base + "probe.html#q=pepper", "--dump-dom")
            body = re.search(r"<body[^>]*>", dom).group(0)
            assert 'data-broken-images="0"' in body and 'data-shown="1"' in body, body
            assert _rendered(body) == ["units/logits/0002.html"], body
            assert console == "", console
            dom, _ = _browse(found, base + "probe.html#q=conv2", "--dump-dom")
            body = re.search(r"<body[^>]*>", dom).group(0)
            assert 'data-shown="2"' in body and _rendered(body) == ["units/conv2/0000.html", "units/conv2/0001.html"], body
            # a unit page, screenshotted: the top exemplars' colours and the synthesized images are on screen
            shot = tmp_path / "shot.png"
            _, console = _browse(found, base + "units/logits/0001.html", f"--screenshot={shot}", "--window-size=1200,1400")
            assert console == "", console
            pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
            record = json.loads((site / "units/logits/0001/unit.json").read_text())
            for entry in record["top"]:
                rgb = np.array(COLORS[int(re.search(r"(\d+)", entry["source"]).group(1))])
                match = (np.abs(pixels - rgb).max(-1) <= 6).sum()
                assert match >= 0.8 * 112 * 112, f"exemplar {entry['source']}: {match} px"
            with Image.open(site / "units/logits/0001" / record["facets"][0]["file"]) as im:
                shown = np.asarray(im.convert("RGB").resize((192, 192), Image.BILINEAR)).astype(int)
            assert _found_in(pixels, shown), "the first DGN-AM image is not on screen"
    finally:
        server.shutdown()
        server.server_close()


#: Appended to a copy of the index: after the page's own script ran, which cards has the browser laid out
#: (a box with an area and a display other than none)?
PROBE = """<script>window.addEventListener("load", function () {
  var shown = [];
  document.querySelectorAll(".card").forEach(function (c) {
    var box = c.getBoundingClientRect();
    if (box.width > 0 && box.height > 0 && getComputedStyle(c).display !== "none") shown.push(c.getAttribute("href"));
  });
  document.body.setAttribute("data-rendered", shown.join(" "));
});</script>"""


def _add_probe(site: Path) -> None:
    """``probe.html``: the atlas's index with :data:`PROBE` before ``</body>`` (the site's own files untouched)."""
    page = (site / "index.html").read_text()
    assert page.count("</body>") == 1
    (site / "probe.html").write_text(page.replace("</body>", PROBE + "</body>"))


def _rendered(body: str) -> list[str]:
    """The cards the probe found rendered, from the ``<body>`` tag of a dumped DOM."""
    found = re.search(r'data-rendered="([^"]*)"', body)
    assert found, f"the probe did not run: {body}"
    return found.group(1).split()


def _found_in(screen: np.ndarray, image: np.ndarray, tolerance: float = 12.0) -> bool:
    """Whether ``image`` appears (as the browser scaled it, within ``tolerance`` mean error) somewhere on ``screen``."""
    h, w = image.shape[:2]
    corner = image[0, 0]
    candidates = np.argwhere(np.abs(screen - corner).max(-1) <= 40)
    for y, x in candidates[:5000]:
        window = screen[y : y + h, x : x + w]
        if window.shape == image.shape and np.abs(window - image).mean() <= tolerance:
            return True
    return False


def test_any_net_that_net_takes(tmp_path, photos, monkeypatch, capsys):
    """A model file (``PATH.py:FUNC``) without a prior: the atlas runs its pixel method, accentuating from the photo."""
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    source = Path(__file__).with_name("conftest.py").read_text()
    (tmp_path / "mynet.py").write_text(source.split("class TinyGenerator")[0] + "\n\ndef build():\n    torch.manual_seed(0)\n    return TinyNet()\n")
    site = tmp_path / "site"
    argv = ["atlas", f"{tmp_path / 'mynet.py'}:build", "--input-size", "32", "--units", "logits:0-1,conv2:0", "--data", str(photos),
            "--out", str(site), "--pixel", "pixel", "--seeds", "0", "--steps", "2", "-k", "2", "--quiet"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    record = json.loads((site / "units/conv2/0000/unit.json").read_text())
    assert record["facets"][0]["seed"] == 0 and "pixel" not in record and record["accent"]["source"].startswith("photo_")
    assert json.loads((site / "atlas.json").read_text())["method"] == "pixel: pixel"
