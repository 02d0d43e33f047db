"""Issue 26 (trust, round 2), the training side: a used training folder, SIGTERM, the code cache, crafted
configs and checkpoints, the judge's cached weights, ``--categories`` and ``dgnam bounds``.

Each test fails on the code before the issue: it assumes nothing it does not check.
"""

from __future__ import annotations

import json
import os
import pickle
import signal

import numpy as np
import pytest
import torch

import dgnam
from dgnam import cli
from dgnam.infra.hub import WeightsError, load_state_dict
from dgnam.nets.squeezenet import cached_conversion, load_squeezenet_weights
from dgnam.train.codes import cached_codes, make_views
from dgnam.train.trainer import Trainer

from test_squeezenet import fake_weights
from test_train import TINY_PRIOR, config, register_tiny_encoder, write_pool


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    register_tiny_encoder(tmp_path / "home", monkeypatch)
    pool = write_pool(tmp_path / "pool")
    cfg = tmp_path / "cfg.json"
    cfg.write_text(json.dumps({"prior": TINY_PRIOR, "comparator_layer": "conv1", "steps": 4, "batch_size": 8, "views": 2,
                               "sample_every": 100, "heldout_samples": 2}))  # fmt: skip
    return pool, cfg, tmp_path


def train_cmd(pool, cfg, out, *extra):
    return ["train-generator", "--pool", str(pool), "--out", str(out), "--config", str(cfg), "--quiet", *extra]


def error_line(capsys) -> str:
    """The one error line of the last command (earlier commands' notes, e.g. a recorded hash, are ignored)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("dgnam: error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def logged_steps(out) -> list[int]:
    import csv

    return [int(r["step"]) for r in csv.DictReader((out / "log.csv").open(newline=""))]


# ---------------------------------------------------------------- item 6: a used --out


def test_a_used_training_folder_is_refused_without_resume_or_overwrite(tiny, capsys):
    pool, cfg, tmp = tiny
    out = tmp / "run"
    assert cli.main(train_cmd(pool, cfg, out)) == 0
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "log.csv")}
    assert cli.main(train_cmd(pool, cfg, out)) == 2
    line = error_line(capsys)
    assert "not empty" in line and "--resume" in line and "--overwrite" in line
    assert {name: (out / name).read_bytes() for name in before} == before  # nothing replaced, nothing mixed
    assert cli.main(train_cmd(pool, cfg, out, "--overwrite")) == 0
    assert logged_steps(out) == [1, 2, 3, 4]  # one run's log, not two
    assert cli.main(train_cmd(pool, cfg, out, "--resume", "--overwrite")) == 2


def test_overwrite_refuses_a_folder_with_files_it_did_not_write(tiny, capsys):
    pool, cfg, tmp = tiny
    out = tmp / "run"
    assert cli.main(train_cmd(pool, cfg, out)) == 0
    (out / "samples").mkdir(exist_ok=True)
    (out / "samples" / "my_photo.png").write_bytes(b"mine")
    assert cli.main(train_cmd(pool, cfg, out, "--overwrite")) == 2
    assert "samples/my_photo.png" in error_line(capsys)
    assert (out / "samples" / "my_photo.png").read_bytes() == b"mine" and (out / "checkpoint.pt").is_file()


def test_resume_drops_log_rows_after_the_checkpoint(tiny):
    pool, cfg, tmp = tiny
    out = tmp / "run"
    assert cli.main(train_cmd(pool, cfg, out, "--until", "2")) == 0
    with open(out / "log.csv", "a", newline="") as f:  # a run killed (-9) at step 3, after its last checkpoint at step 2
        f.write("3," + ",".join(["0.5"] * (len(open(out / "log.csv").readline().split(",")) - 1)) + "\r\n")
    assert cli.main(train_cmd(pool, cfg, out, "--resume")) == 0
    assert logged_steps(out) == [1, 2, 3, 4]


# ---------------------------------------------------------------- item 11: SIGTERM


def test_sigterm_exits_143_with_a_checkpoint_and_no_export(tiny, monkeypatch, capsys):
    pool, cfg, tmp = tiny
    out, export = tmp / "run", tmp / "prior.safetensors"
    real = Trainer.train_step

    def train_step(self, x, y):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # as a batch scheduler's time limit does
        return real(self, x, y)

    monkeypatch.setattr(Trainer, "train_step", train_step)
    assert cli.main(train_cmd(pool, cfg, out, "--export", str(export))) == 143
    assert not export.exists()  # no half-trained prior passed off as finished
    err = capsys.readouterr().err
    assert "interrupted (SIGTERM) at step 3 of 4" in err and "--resume" in err and "nothing exported" in err
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 3
    monkeypatch.setattr(Trainer, "train_step", real)
    assert cli.main(train_cmd(pool, cfg, out, "--resume", "--export", str(export))) == 0
    assert export.is_file() and logged_steps(out) == [1, 2, 3, 4]


# ---------------------------------------------------------------- item 12: the code cache


def test_a_rebuilt_pool_with_as_many_images_is_encoded_again(tiny, monkeypatch):
    pool, _, tmp = tiny
    cfg = config()
    views = make_views(np.load(pool / "images.npy"), 16, 2)
    first = cached_codes(pool / "cache", views, cfg, progress=False)
    write_pool(pool, seed=1)  # rebuilt: other images, the same count
    views2 = make_views(np.load(pool / "images.npy"), 16, 2)
    assert views2.shape == views.shape and not torch.equal(views2, views)
    second = cached_codes(pool / "cache", views2, cfg, progress=False)
    assert not torch.equal(first, second)
    monkeypatch.setattr("dgnam.train.codes.encode_views", lambda *a, **k: pytest.fail("encoded although the pool is the same"))
    assert torch.equal(cached_codes(pool / "cache", views2, cfg, progress=False), second)  # unchanged data: the cache


# ---------------------------------------------------------------- item 17: crafted configs, checkpoints and .pt files


@pytest.mark.parametrize("value, expected", [
    ({"steps": 4, "stepz": 9}, ["unknown key 'stepz'", "valid keys: prior, comparator_layer, steps"]),
    ({"prior": {"layers": "pool"}}, ["prior: unknown key 'layers'", "valid keys: encoder, layer"]),
    ([{"steps": 4}], ["holds a JSON list, not an object of TrainConfig fields"]),
    ({"steps": "many"}, ["'steps' is 'many', not a whole number"]),
    ({"lr": float("nan")}, ["'lr' is nan, not a finite number"]),
])  # fmt: skip
def test_a_crafted_training_config_is_one_line_naming_the_key(tiny, capsys, value, expected):
    pool, _, tmp = tiny
    (tmp / "bad.json").write_text(json.dumps(value))
    assert cli.main(train_cmd(pool, tmp / "bad.json", tmp / "run")) == 2
    line = error_line(capsys)
    assert "bad.json" in line and all(e in line for e in expected), line


def test_a_crafted_checkpoint_is_one_line_naming_the_file_and_field(tiny, capsys):
    pool, cfg, tmp = tiny
    out = tmp / "run"
    assert cli.main(train_cmd(pool, cfg, out, "--until", "2")) == 0
    good = torch.load(out / "checkpoint.pt", weights_only=True)

    def resume_with(state) -> str:
        torch.save(state, out / "checkpoint.pt")
        assert cli.main(train_cmd(pool, cfg, out, "--resume")) == 2
        return error_line(capsys)

    key = next(iter(good["gen"]))
    line = resume_with({**good, "gen": {**good["gen"], key: torch.zeros(3)}})
    assert "checkpoint.pt" in line and f"gen: {key!r} has shape (3,)" in line
    line = resume_with({**good, "config": {**good["config"], "evil": 1}})
    assert "checkpoint.pt: config: unknown key 'evil'" in line
    moments = {**good["opt_g"]["state"][0], "exp_avg": torch.zeros(2)}
    line = resume_with({**good, "opt_g": {**good["opt_g"], "state": {**good["opt_g"]["state"], 0: moments}}})
    assert "checkpoint.pt: opt_g" in line and "'exp_avg' has shape (2,)" in line
    line = resume_with({**good, "step": "2"})
    assert "'step' is not a step count" in line
    (out / "checkpoint.pt").write_bytes(b"\x80\x02garbage")  # a bad .pt
    assert cli.main(train_cmd(pool, cfg, out, "--resume")) == 2
    line = error_line(capsys)
    assert "checkpoint" in line and "cannot be read" in line and "weights_only" not in line


def test_a_bad_pt_weight_file_is_one_line_that_never_suggests_weights_only_false(tmp_path):
    import datetime

    torch.save({"w": datetime.date(2020, 1, 1)}, tmp_path / "object.pt")  # an object weights_only refuses
    (tmp_path / "garbage.pt").write_bytes(b"not a torch file at all")
    torch.save({"w": torch.zeros(3)}, tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    for name, says in (("object.pt", "holds a datetime.date object"), ("garbage.pt", "damaged or not a torch file"),
                       ("cut.pt", "damaged or not a torch file")):  # fmt: skip
        with pytest.raises(WeightsError) as info:
            load_state_dict(tmp_path / name)
        text = str(info.value)
        assert "\n" not in text and "weights_only" not in text and name in text and says in text, text


# ---------------------------------------------------------------- item 4: the judge's cached conversion


def test_a_tampered_squeezenet_conversion_is_refused_never_read(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    pkl = tmp_path / "squeezenet_weights.pkl"
    pkl.write_bytes(pickle.dumps(fake_weights(seed=4), protocol=3))
    first = load_squeezenet_weights(pkl)
    cache = cached_conversion(pkl)
    raw = bytearray(cache.read_bytes())
    raw[-5] ^= 0x40  # one byte of conv10's bias: the file still parses, the weights differ
    cache.write_bytes(bytes(raw))
    with pytest.raises(WeightsError) as info:
        load_squeezenet_weights(pkl)
    text = str(info.value)
    assert "\n" not in text and cache.name in text and "recorded" in text and "delete it" in text
    cache.unlink()  # as the message says: converted again, the pickle's own weights
    again = load_squeezenet_weights(pkl)
    assert all(torch.equal(first[k], again[k]) for k in first)


def test_a_conversion_without_a_recorded_hash_is_converted_again(tmp_path, monkeypatch):
    monkeypatch.setenv("DGNAM_HOME", str(tmp_path / "home"))
    pkl = tmp_path / "squeezenet_weights.pkl"
    pkl.write_bytes(pickle.dumps(fake_weights(seed=5), protocol=3))
    first = load_squeezenet_weights(pkl)
    cache = cached_conversion(pkl)
    from safetensors.torch import save_file

    save_file({k: v + 1 for k, v in first.items()}, str(cache))  # another file, and no record of it (an older dgnam's cache)
    (tmp_path / "home" / "recorded_sha256.json").unlink()
    again = load_squeezenet_weights(pkl)
    assert all(torch.equal(first[k], again[k]) for k in first)  # the pickle's weights, not the stray file's
    assert json.loads((tmp_path / "home" / "recorded_sha256.json").read_text())[cache.name] == dgnam.infra.hub.sha256_file(cache)


# ---------------------------------------------------------------- item 13: --categories and bounds


def test_categories_must_match_the_number_of_outputs(tiny_registry):
    from dgnam.nets.adapters import SpecOverrides, load_target

    net_file, _ = tiny_registry
    with pytest.raises(ValueError) as info:
        load_target("tiny", weights=net_file, overrides=SpecOverrides(categories=("ant", "bee")))
    assert "gives 2 class names" in str(info.value) and "have 5 outputs" in str(info.value)
    target = load_target("tiny", weights=net_file, overrides=SpecOverrides(categories=tuple("abcde")))
    assert target.categories == tuple("abcde")


def test_bounds_refuses_one_image_and_writes_strict_json(tiny, capsys):
    _, _, tmp = tiny
    one = write_pool(tmp / "one", n=1)
    out = tmp / "bounds.json"
    assert cli.main(["bounds", "--net", "tiny_enc", "--layer", "pool", "--data", str(one), "--out", str(out)]) == 2
    assert "at least 2 images" in error_line(capsys) and not out.exists()
    three = write_pool(tmp / "three", n=3)
    assert cli.main(["bounds", "--net", "tiny_enc", "--layer", "pool", "--data", str(three), "--out", str(out)]) == 0
    record = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    assert len(record["std"]) == 6 and all(np.isfinite(record["upper"])) and record["images"] == 3
