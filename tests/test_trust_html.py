"""Pages made from records anyone can edit (issue 26, items 2, 3 and 7): every value read from a run's JSON
or an atlas unit's reaches HTML escaped, `dgnam atlas serve` answers only with the site's own files and only
to localhost, and neither `dgnam report` nor `dgnam atlas` replaces a file dgnam did not write."""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
from html.parser import HTMLParser

import pytest

from dgnam import cli
from dgnam.atlas import serve
from dgnam.atlas.site import write_site
from dgnam.io.report import build_report
from dgnam.io.read import RunFolderError

from test_assess import write_color_run
from test_atlas import _build, photos, registered, tiny  # noqa: F401 (fixtures)
from test_report import natural_folder, tiny_nets, tiny_run  # noqa: F401 (fixtures)

# --------------------------------------------------------------------------------------------------
# Every value of results.json, evaluation.json, neighbors.json and an exemplars record, escaped
# --------------------------------------------------------------------------------------------------

NAMED = {"judges", "layers", "config", "timing", "versions", "maps"}  # objects keyed by names from the run


class Poison:
    """Replaces every value (string, number, boolean, null) and every name key of a JSON document by
    ``<script>xN</script>&"`` (with ``strings``: only strings and names, so the document keeps the types
    a reader checks); equal strings get the same payload, so files still match across documents."""

    def __init__(self, strings: bool = False):
        self.strings = strings
        self.where: dict[int, list[str]] = {}  # payload number -> the JSON paths it replaced
        self._strings: dict[str, int] = {}

    @staticmethod
    def payload(n: int) -> str:
        return f'<script>x{n}</script>&"'

    @staticmethod
    def escaped(n: int) -> str:
        return f"&lt;script&gt;x{n}&lt;/script&gt;&amp;&quot;"

    def _new(self, path: str, value):
        if self.strings and not isinstance(value, str):
            return value
        n = self._strings.setdefault(value, len(self.where)) if isinstance(value, str) else len(self.where)
        self.where.setdefault(n, []).append(path)
        return self.payload(n)

    def __call__(self, value, path: str = "$", named: bool = False):
        if isinstance(value, dict):
            return {(self._new(f"{path}.<{k}>", k) if named else k): self(v, f"{path}.{k}", k in NAMED) for k, v in value.items()}
        if isinstance(value, list):
            return [self(v, f"{path}[{i}]") for i, v in enumerate(value)]
        return self._new(path, value)

    def number(self, path: str) -> int:
        return next(n for n, paths in self.where.items() if path in paths)


class _Tags(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.handlers = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.handlers += [name for name, _ in attrs if name.startswith("on")]


def _tags(text: str) -> _Tags:
    parser = _Tags()
    parser.feed(text)
    parser.close()
    return parser


def _assert_no_markup(text: str) -> None:
    assert "<script" not in text and "</script>&" not in text
    parsed = _tags(text)
    assert "script" not in parsed.tags and not parsed.handlers


def _shown(poison: Poison, text: str, paths: list[str]) -> None:
    shown = {n for n in poison.where if poison.escaped(n) in text}
    missing = [path for path in paths if poison.number(path) not in shown]
    assert not missing, f"not on the page as escaped text: {missing}"


def test_every_value_of_a_real_run_reaches_the_report_escaped(tmp_path, tiny_run, tiny_nets, natural_folder):
    """A real run with every record the report reads (evaluation with faithfulness, neighbours, exemplars).
    Each value, numbers included, replaced by markup in what the page is made from: the page has no <script>,
    but the escaped text of each value it shows. Then the files themselves, their strings and names poisoned."""
    from dgnam.io.report import load_run_page, render_report

    weights = ["--net", "tiny", "--net-weights", str(tiny_nets)]
    assert cli.main(["evaluate", str(tiny_run), "--judge", "tiny_judge", "--natural", str(natural_folder), "--natural-size", "32",
                     "--data", str(natural_folder), "-k", "3", *weights]) == 0  # fmt: skip
    assert cli.main(["neighbors", str(tiny_run), "--data", str(natural_folder), *weights, "--size", "32", "-k", "3"]) == 0
    assert cli.main(["exemplars", "tiny", "logits:1", "--net-weights", str(tiny_nets), "--data", str(natural_folder), "--size", "32",
                     "-k", "2", "--out", str(tiny_run / "exemplars"), "--no-cache"]) == 0  # fmt: skip
    page = load_run_page(tiny_run)
    ev = page.evaluation
    assert ev["faithfulness"]["layers"] and ev["notes"] and page.neighbors["items"] and page.exemplars["items"]  # the real structure is complete
    judged = next(i for i, it in enumerate(ev["items"]) if it.get("judges"))
    judge, layer = next(iter(ev["items"][judged]["judges"])), next(iter(ev["faithfulness"]["layers"]))

    # 1. every value, numbers included, as render_report receives it
    poison = Poison()
    page.record, page.evaluation = poison(page.record, "results"), poison(page.evaluation, "evaluation")
    page.neighbors, page.exemplars = poison(page.neighbors, "neighbors"), {**poison(page.exemplars, "exemplars"), "prefix": "exemplars/"}
    text = render_report([page, page], title="two")  # two runs: the comparison table too
    _assert_no_markup(text)
    _shown(poison, text, [
        "results.items[0].final_activation", "results.items[0].best_activation", "results.items[0].best_step", "results.items[0].label",
        "results.items[0].seed", "results.net", "results.command[0]", "results.seeds[0]",
        f"evaluation.items[{judged}].judges.{judge}.rank", f"evaluation.items[{judged}].judges.{judge}.pred_label",
        f"evaluation.items[{judged}].activation", f"evaluation.items[{judged}].relative_activation", f"evaluation.items[{judged}].target_rank",
        "evaluation.summary.target_top1", "evaluation.summary.images", f"evaluation.summary.judges.{judge}.top1",
        f"evaluation.summary.judges.{judge}.frechet_distance", f"evaluation.summary.judges.<{judge}>", "evaluation.summary.speed.seconds_per_image",
        "evaluation.summary.spectrum_slope.median", "evaluation.natural.spectrum_slope_p5", "evaluation.natural.images", "evaluation.notes[0]",
        f"evaluation.faithfulness.layers.{layer}.accuracy", f"evaluation.faithfulness.layers.{layer}.earlier_layer",
        f"evaluation.faithfulness.layers.{layer}.chance", f"evaluation.faithfulness.layers.<{layer}>",
        "neighbors.k", "neighbors.data_images", "neighbors.items[0].neighbors[0].distance", "neighbors.items[0].seed", "neighbors.metric",
        "neighbors.net", "exemplars.k", "exemplars.items[0].stats.max", "exemplars.data.path", "exemplars.data.images",
    ])  # fmt: skip

    # 2. the files on disk: every string and name poisoned (the reader checks the types of the rest)
    files = {"results": tiny_run / "results.json", "evaluation": tiny_run / "evaluation.json",
             "neighbors": tiny_run / "neighbors" / "neighbors.json", "exemplars": tiny_run / "exemplars" / "results.json"}  # fmt: skip
    poison = Poison(strings=True)
    for name, path in files.items():
        path.write_text(json.dumps(poison(json.loads(path.read_text()), name)))
    text = build_report([tiny_run])
    _assert_no_markup(text)
    _shown(poison, text, ["results.items[0].label", "results.items[0].file", "results.net", "results.method", f"evaluation.items[{judged}].label",
                          f"evaluation.items[{judged}].judges.{judge}.pred_label", "evaluation.notes[0]", f"evaluation.summary.judges.<{judge}>",
                          "neighbors.data", "neighbors.layer", "neighbors.items[0].label", "exemplars.items[0].label", "exemplars.data.path"])  # fmt: skip


def test_a_number_field_holding_markup_is_text(tmp_path, capsys):
    """The case of issue 26: `final_activation` holding a <script>. The page shows it as text; from the files,
    the report is either refused (the record's schema: one line, no page) or made with the text escaped."""
    from dgnam.io.report import RunPage, render_report

    item = {"file": "a.png", "unit": "logits:0", "seed": 0, "final_activation": "<script>alert(1)</script>",
            "best_activation": '"><img src=x onerror=alert(2)>', "best_step": ["<b>"], "history": ["<b>", 1, None, 10**400]}  # fmt: skip
    text = render_report([RunPage(name="r", record={"items": [item]})])
    _assert_no_markup(text)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&quot;&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    run = write_color_run(tmp_path / "run")
    record = json.loads((run / "results.json").read_text())
    record["items"][0].update(item, file=record["items"][0]["file"])
    (run / "results.json").write_text(json.dumps(record))
    rc = cli.main(["report", str(run)])
    if rc == 0:
        page = (run / "report.html").read_text()
        _assert_no_markup(page)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    else:
        assert rc == 2 and len(capsys.readouterr().err.strip().splitlines()) == 1 and not (run / "report.html").exists()


# --------------------------------------------------------------------------------------------------
# `dgnam report --out`: never over a file dgnam did not write as a report
# --------------------------------------------------------------------------------------------------


def test_report_out_never_replaces_a_file_dgnam_did_not_write(tmp_path, capsys):
    run = write_color_run(tmp_path / "run")
    record = (run / "results.json").read_bytes()
    assert cli.main(["report", str(run), "--out", str(run / "results.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "results.json exists and is not a report dgnam wrote" in err and len(err.splitlines()) == 1
    assert (run / "results.json").read_bytes() == record
    mine = tmp_path / "page.html"
    mine.write_text("<!DOCTYPE html><p>my notes</p>")
    assert cli.main(["report", str(run), "--out", str(mine)]) == 2 and mine.read_text() == "<!DOCTYPE html><p>my notes</p>"
    (tmp_path / "dangling.html").symlink_to(tmp_path / "nowhere.html")
    assert cli.main(["report", str(run), "--out", str(tmp_path / "dangling.html")]) == 2 and not (tmp_path / "nowhere.html").exists()
    # its own report is replaced (the default --out, twice), and so is a report of an older dgnam
    assert cli.main(["report", str(run)]) == 0 and cli.main(["report", str(run)]) == 0
    old = tmp_path / "old.html"
    old.write_text('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>t</title><style>\nbody{font-family:system-ui,-apple')
    assert cli.main(["report", str(run), "--out", str(old)]) == 0 and "written by dgnam report" in old.read_text()


# --------------------------------------------------------------------------------------------------
# `dgnam atlas --out`: a new or empty folder, or an atlas dgnam made; never a user's file
# --------------------------------------------------------------------------------------------------


def test_atlas_refuses_a_folder_that_is_not_an_atlas(tiny, photos, tmp_path):  # noqa: F811
    net, gen = tiny
    site = tmp_path / "mine"
    site.mkdir()
    (site / "index.html").write_text("my home page")
    (site / "atlas.css").write_text("body{}")
    with pytest.raises(RunFolderError, match=r"holds atlas\.css \(and 1 more\) and is not an atlas dgnam made"):
        _build(net, gen, site, photos, units=("logits:0",), seeds=(0,), steps=1)
    assert (site / "index.html").read_text() == "my home page" and (site / "atlas.css").read_text() == "body{}"
    assert sorted(p.name for p in site.iterdir()) == ["atlas.css", "index.html"]  # nothing computed or written


def test_atlas_never_replaces_a_users_file_in_its_own_site(tiny, photos, registered, tmp_path, capsys):  # noqa: F811
    from dgnam.atlas.site import MANIFEST

    net, gen = tiny
    site = tmp_path / "site"
    _build(net, gen, site, photos, units=("logits:0",), seeds=(0,), steps=1)
    listed = set(json.loads((site / MANIFEST).read_text())["files"])
    assert {"index.html", "atlas.css", "atlas.js", "atlas.json", "layers/logits.html", "units/logits/0000.html"} <= listed
    assert "units/conv2/0000.html" not in listed
    (site / "units" / "conv2").mkdir()
    (site / "units" / "conv2" / "0000.html").write_text("my own page")  # where the next build's page of conv2:0 would go
    with pytest.raises(RunFolderError, match=r"already holds units/conv2/0000\.html, which dgnam did not write"):
        _build(net, gen, site, photos, units=("logits:0,conv2:0",), seeds=(0,), steps=1)
    assert (site / "units/conv2/0000.html").read_text() == "my own page" and not (site / "units/conv2/0000").exists()  # refused before any work
    (site / "units/conv2/0000.html").unlink()
    (site / "layers" / "logits.html").write_text("edited")  # a page dgnam wrote (listed) is dgnam's to rewrite
    assert _build(net, gen, site, photos, units=("logits:0,conv2:0",), seeds=(0,), steps=1).computed == 1
    # an atlas of an older dgnam (no manifest, its atlas.json) is still completed
    (site / MANIFEST).unlink()
    assert _build(net, gen, site, photos, units=("logits:0,conv2:0",), seeds=(0,), steps=1).cached == 2
    # from the command line: one line, exit 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    argv = ["atlas", "tiny", "--layers", "logits", "--units", "logits:0", "--data", str(photos), "--out", str(tmp_path / "other"), "--quiet"]
    assert cli.main(argv) == 2
    assert "holds notes.txt and is not an atlas dgnam made" in capsys.readouterr().err


def test_every_value_of_an_atlas_unit_reaches_its_pages_escaped(tiny, photos, tmp_path):  # noqa: F811
    """Unit records and settings (a site folder may come from anyone) poisoned, except the checked file names and
    slugs: the pages hold the shipped script only, and the escaped text of names and numbers."""
    net, gen = tiny
    site = tmp_path / "site"
    _build(net, gen, site, photos, units=("logits:0-1,conv2:0",), seeds=(0,), steps=1)
    poison = Poison()
    keep = {"file", "source_file", "slug"}
    records = []
    for path in sorted((site / "units").glob("*/*/unit.json")):
        record = json.loads(path.read_text())
        bad = poison({k: v for k, v in record.items() if k not in keep}, f"{path.parent.parent.name}/{path.parent.name}")
        for key in ("facets", "top", "bottom"):  # names of files stay (they are checked), everything else is markup
            bad[key] = [{**b, "file": r["file"]} for b, r in zip(bad[key], record[key])]
        for key in ("pixel", "accent"):
            bad[key] = {**bad[key], **{k: record[key][k] for k in keep & record[key].keys()}}
        records.append({**bad, "slug": record["slug"], "layer": record["layer"]})
    settings = poison(json.loads((site / "atlas.json").read_text()), "settings")
    layers = [{"name": name, "shape": [poison.payload(9001)], "units": poison.payload(9002), "done": poison.payload(9003)} for name in ("logits", "conv2")]
    write_site(site, settings, layers, records)
    pages = [site / "index.html", site / "layers/logits.html", site / "units/logits/0000.html", site / "units/conv2/0000.html"]
    for page in pages:
        text = page.read_text()
        assert "<script>x" not in text and "</script>&" not in text, page
        parsed = _tags(text)
        assert parsed.tags.count("script") == 1 and not parsed.handlers
        assert re.findall(r"<script[^>]*>", text) == [f'<script src="{"../" * (len(page.relative_to(site).parts) - 1)}atlas.js">']
    unit = (site / "units/logits/0000.html").read_text()
    for path in ["unit", "label", "pixel.method", "top[0].source", "natural.images", "facets[0].seed"]:
        assert Poison.escaped(poison.number(f"logits/0000.{path}")) in unit, path
    assert "× best natural" not in unit and unit.count("—") >= 5  # activations that are not numbers: shown as missing
    index = (site / "index.html").read_text()
    assert all(Poison.escaped(poison.number(f"settings.{key}")) in index for key in ("net", "data", "created", "seeds[0]"))
    assert Poison.escaped(9003) in index and Poison.escaped(9001) in index  # a layer's count and shape


# --------------------------------------------------------------------------------------------------
# `dgnam atlas serve`: the site's regular files, to localhost only
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path):
    """A site with a page, a symlink to a file outside and one to a folder outside, served on a free port."""
    site, outside = tmp_path / "site", tmp_path / "outside"
    (site / "sub").mkdir(parents=True)
    outside.mkdir()
    (site / "index.html").write_text("<p>the index</p>")
    (site / "sub" / "page.html").write_text("<p>a page</p>")
    (outside / "secret.txt").write_text("SECRET-0123")
    (site / "leak.txt").symlink_to(outside / "secret.txt")
    (site / "leakdir").symlink_to(outside, target_is_directory=True)
    (site / "inner.html").symlink_to(site / "sub" / "page.html")  # a link inside the site is fine
    server = serve(site, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(5)


def _get(port: int, path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.putrequest("GET", path, skip_host=True, skip_accept_encoding=True)
    conn.putheader("Host", host if host is not None else f"127.0.0.1:{port}")
    conn.endheaders()
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def test_serve_answers_only_with_regular_files_inside_the_site(served, capfd):
    port = served
    assert _get(port, "/index.html") == (200, b"<p>the index</p>") and _get(port, "/") == (200, b"<p>the index</p>")
    assert _get(port, "/sub/page.html") == (200, b"<p>a page</p>") and _get(port, "/inner.html") == (200, b"<p>a page</p>")
    for path, status in [("/leak.txt", 404), ("/leakdir/secret.txt", 404), ("/..%2f..%2fetc/passwd", 404), ("/../outside/secret.txt", 404),
                         ("/%2e%2e/outside/secret.txt", 404), ("/sub/..%2f..%2foutside/secret.txt", 404), ("/sub/", 404), ("/sub", 404),
                         ("/index.html%00.png", 400), ("/index.html%0a", 400), ("/%ff%fe", 400), ("/sub%5c..%5cindex.html", 400),
                         ("/nothing.html", 404)]:  # fmt: skip
        got, body = _get(port, path)
        assert got == status, (path, got)
        assert b"SECRET" not in body and b"root:" not in body
    err = capfd.readouterr().err
    assert "Traceback" not in err and err == "", err


def test_serve_answers_only_to_a_localhost_host_header(served):
    port = served
    assert _get(port, "/index.html", f"localhost:{port}")[0] == 200
    for host in ["evil.example", f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", f"localhost.evil.example:{port}", ""]:
        assert _get(port, "/index.html", host)[0] in ((400,) if host == "" else (403,)), host
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:  # HTTP/1.0 without a Host header
        raw.sendall(b"GET /index.html HTTP/1.0\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.0 400")
