"""Scale-out of `dgnam visualize` over torchrun processes: sharding, per-rank parts and the merge."""

import json
import os
import socket

import pytest
import torch
from PIL import Image

import dgnam
from dgnam import cli
from dgnam.distributed import World, init_world, part_dir, part_settings, shard_jobs
from dgnam.io.merge import merge_parts
from dgnam.generators import GeneratorSpec
from dgnam.infra.hub import WeightSource
from dgnam.nets import InputSpec, NetSpec
from dgnam.methods.base import AMResult
from dgnam.io.write import RunWriter

from conftest import CATEGORIES, TinyGenerator, TinyNet, join_or_kill


@pytest.mark.parametrize("n, world, batch", [(10, 2, 3), (8, 3, 3), (1000, 8, 32), (5, 4, 2), (0, 2, 4), (7, 1, 2)])
def test_shards_are_balanced_whole_batches_in_order(n, world, batch):
    jobs = list(range(n))
    shards = [shard_jobs(jobs, r, world, batch) for r in range(world)]
    assert [j for s in shards for j in s] == jobs  # every job once, in order
    n_batches = [len(range(0, len(s), batch)) for s in shards]
    assert max(n_batches) - min(n_batches) <= 1
    for s in shards[:-1]:
        if s and n - s[-1] > batch:  # not the last batch overall: each shard ends on a batch boundary
            assert (s[-1] + 1) % batch == 0
    with pytest.raises(ValueError, match="outside"):
        shard_jobs(jobs, world, world, batch)


def _register(home, net_file, gen_file):
    """The tiny net and generator of the CLI tests, registered in this process (a spawned rank too)."""
    os.environ["DGNAM_HOME"] = str(home)
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    dgnam.nets.spec._REGISTRY["tiny"] = NetSpec("tiny", TinyNet, WeightSource("tiny_net.pth"), InputSpec(size=(32, 32), min_size=8), CATEGORIES)
    dgnam.generators.spec._REGISTRY["tiny_gen"] = GeneratorSpec(
        "tiny_gen", TinyGenerator, WeightSource("tiny_gen.pth"), encoder="tiny:pool", bounds=lambda g: g.set_bounds(0.0, 1.5), default=True
    )


def _argv(net_file, gen_file, out):
    # 4 units x 2 seeds = 8 jobs in batches of 3 (3, 3, 2): rank 0 takes one batch, rank 1 two
    return ["visualize", "--net", "tiny", "--net-weights", str(net_file), "--generator-weights", str(gen_file),
            "--unit", "logits:dog", "--unit", "conv2:1-2@mean", "--unit", "conv1:3", "--seeds", "0-1",
            "--steps", "6", "--batch-size", "3", "--out", str(out), "--quiet"]


def _rank(rank, world, port, home, net_file, gen_file, out):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    _register(home, net_file, gen_file)
    code = cli.main(_argv(net_file, gen_file, out))
    if code != 0:
        raise SystemExit(code)


@pytest.fixture
def tiny_files(tmp_path, monkeypatch):
    torch.manual_seed(0)
    net_file, gen_file = tmp_path / "tiny_net.pth", tmp_path / "tiny_gen.pth"
    torch.save(TinyNet().state_dict(), net_file)
    torch.save(TinyGenerator().state_dict(), gen_file)
    home = tmp_path / "home"
    monkeypatch.setenv("DGNAM_HOME", str(home))
    dgnam.nets.catalog._ensure_builtin()
    dgnam.generators.catalog._ensure_builtin()
    monkeypatch.setitem(dgnam.nets.spec._REGISTRY, "tiny", None)  # restored after the test; _register fills it
    monkeypatch.setitem(dgnam.generators.spec._REGISTRY, "tiny_gen", None)
    _register(home, net_file, gen_file)
    return home, net_file, gen_file


def test_two_process_run_equals_one_process_run(tmp_path, tiny_files):
    """torchrun-style, gloo on CPU: 2 ranks write parts, rank 0 merges; the folder equals a 1-process run."""
    import torch.multiprocessing as mp

    home, net_file, gen_file = tiny_files
    single, multi = tmp_path / "single", tmp_path / "multi"
    assert cli.main(_argv(net_file, gen_file, single)) == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_rank, args=(r, 2, port, home, net_file, gen_file, multi)) for r in range(2)]
    for p in procs:
        p.start()
    assert join_or_kill(procs, 120) == [0, 0]

    a, b = json.loads((single / "results.json").read_text()), json.loads((multi / "results.json").read_text())
    assert b["processes"] == 2 and a["processes"] == 1 and b["complete"] and not b["interrupted"]
    varying = {"command", "created", "started", "seconds", "processes", "timing", "batches", "versions", "runtime"}  # wall times, argv, threads
    assert {k: v for k, v in a.items() if k not in varying} == {k: v for k, v in b.items() if k not in varying}
    assert [x["images"] for x in a["batches"]] == [x["images"] for x in b["batches"]] == [3, 3, 2]
    assert [x["config"] for x in a["batches"]] == [x["config"] for x in b["batches"]]
    assert a["timing"]["processes"] == 1 and b["timing"]["processes"] == 2
    assert b["timing"]["optimize_seconds"] < b["timing"]["process_seconds"]  # wall: the ranks ran side by side
    assert len(b["items"]) == 8 and not (multi / "parts").exists()
    files = [i[k] for i in a["items"] for k in ("file", "best_file", "rf_file") if i[k]]
    assert any(f.startswith("rf/") for f in files)
    for name in files + ["contact_sheet.png"]:
        assert Image.open(single / name).tobytes() == Image.open(multi / name).tobytes(), name


def _fake_batch(units, seeds, value):
    n = len(units)
    return AMResult(units=units, seeds=seeds, images=torch.full((n, 3, 8, 8), value), best_images=torch.full((n, 3, 8, 8), value),
                    history=torch.zeros(n, 2), final=torch.full((n,), value), best=torch.full((n,), value), best_step=torch.zeros(n, dtype=torch.long))


def test_merge_of_a_run_with_a_missing_part_keeps_the_parts(tmp_path):
    out = tmp_path / "run"
    settings = {"net": "tiny", "units": ["logits:0", "logits:1"]}
    writer = RunWriter(part_dir(out, 0), part_settings(settings, World(rank=0, size=2), items_total=2), None)
    writer.add(_fake_batch([dgnam.Unit("logits", 0)], [0], 0.25))
    writer.finish(requested=1)
    with pytest.raises(FileNotFoundError, match="nothing to merge"):
        merge_parts(tmp_path / "empty")
    assert cli.main(["merge", str(out)]) == 0  # rank 1 never finished: merge what did
    record = json.loads((out / "results.json").read_text())
    assert record["net"] == "tiny" and record["units"] == settings["units"] and "part" not in record
    assert not record["complete"] and record["interrupted"] and record["items_requested"] == 2
    assert [i["file"] for i in record["items"]] == ["logits_0000_seed0.png"]
    assert (out / "logits_0000_seed0.png").exists() and (out / "best" / "logits_0000_seed0.png").exists()
    assert (out / "parts").exists()  # kept: the missing part may still be recovered


def _part(out, rank, world_size, items_total, units, value=0.5, seconds=1.0, started=None):
    """A finished part of a run, as rank ``rank`` writes it (fake images of one batch)."""
    settings = {"net": "tiny", "units": [str(u) for u in units]}
    writer = RunWriter(part_dir(out, rank), part_settings(settings, World(rank=rank, size=world_size), items_total=items_total), None)
    if started is not None:
        writer.started = started
    writer.add(_fake_batch(list(units), [0] * len(units), value), seconds=seconds)
    writer.finish(requested=len(units))
    return part_dir(out, rank)


def test_merged_timing_is_wall_time_of_processes_side_by_side(tmp_path):
    import time

    out = tmp_path / "run"
    now = time.time()
    _part(out, 0, 2, 3, [dgnam.Unit("logits", 0), dgnam.Unit("logits", 1)], seconds=2.0, started=now - 100)
    _part(out, 1, 2, 3, [dgnam.Unit("logits", 2)], seconds=3.0, started=now - 50)
    record = json.loads(merge_parts(out).read_text())
    timing = record["timing"]
    assert timing["processes"] == 2 and timing["optimize_seconds"] == 3.0 and timing["process_seconds"] == 5.0
    assert timing["images_per_minute"] == pytest.approx(60.0 * 3 / 3.0) and timing["seconds_per_image"] == pytest.approx(1.0)
    assert record["started"] == pytest.approx(now - 100, abs=1e-2) and record["seconds"] >= 100  # from the earliest rank's start
    assert record["complete"] and [b["seconds"] for b in record["batches"]] == [2.0, 3.0]
    from dgnam.eval.score import run_speed

    assert run_speed(record)["images_per_minute"] == pytest.approx(60.0)


def test_merge_skips_another_runs_parts_and_refuses_a_rank_twice(tmp_path):
    import os
    import shutil

    out = tmp_path / "run"
    stale = _part(out, 2, 3, 5, [dgnam.Unit("logits", 4)], value=0.9)  # an earlier run with 3 processes
    os.utime(stale / "results.json", (1, 1))  # ... written long ago
    _part(out, 0, 2, 2, [dgnam.Unit("logits", 0)], value=0.25)
    _part(out, 1, 2, 2, [dgnam.Unit("logits", 1)], value=0.5)
    with pytest.warns(UserWarning, match="rank002 of another run"):
        record = json.loads(merge_parts(out, keep_parts=True).read_text())
    assert [i["unit"] for i in record["items"]] == ["logits:0", "logits:1"] and record["items_requested"] == 2
    assert record["complete"] and not (out / "logits_0004_seed0.png").exists()
    shutil.copytree(part_dir(out, 0), out / "parts" / "rank000_copy")  # the same rank twice
    with pytest.warns(UserWarning, match="rank002"), pytest.raises(ValueError, match="rank 0 has more than one part"):
        merge_parts(out)


def test_a_merge_that_stopped_half_way_runs_again(tmp_path):
    out = tmp_path / "run"
    _part(out, 0, 2, 2, [dgnam.Unit("logits", 0)], value=0.25)
    _part(out, 1, 2, 2, [dgnam.Unit("logits", 1)], value=0.5)
    # the first merge moved rank 0's image and stopped
    (part_dir(out, 0) / "logits_0000_seed0.png").rename(out / "logits_0000_seed0.png")
    assert cli.main(["merge", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    assert record["complete"] and [i["file"] for i in record["items"]] == ["logits_0000_seed0.png", "logits_0001_seed0.png"]
    assert Image.open(out / "logits_0001_seed0.png").getpixel((0, 0)) == (128, 128, 128) and not (out / "parts").exists()
    assert (out / "best" / "logits_0000_seed0.png").exists()


@pytest.mark.parametrize("key, name", [("best_file", "../../../x.png"), ("file", "/tmp/x.png"), ("rf_file", "link/x.png")])
def test_merge_moves_no_file_from_or_to_outside_the_run(tmp_path, key, name):
    out = tmp_path / "deep" / "run"
    _part(out, 0, 2, 2, [dgnam.Unit("logits", 0)], value=0.25)
    _part(out, 1, 2, 2, [dgnam.Unit("logits", 1)], value=0.5)
    victim = tmp_path / "x.png"
    victim.write_bytes(b"keep me")
    (part_dir(out, 1) / "link").symlink_to(tmp_path, target_is_directory=True)
    path = part_dir(out, 1) / "results.json"
    record = json.loads(path.read_text())
    record["items"][0][key] = name
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=rf"items\[0\]\.{key} .* leaves the run folder"):
        merge_parts(out)
    assert victim.read_bytes() == b"keep me" and not (tmp_path / "deep" / "x.png").exists()
    assert (part_dir(out, 0) / "logits_0000_seed0.png").exists()  # nothing moved: every name is checked first
    assert cli.main(["merge", str(out)]) == 2


def _fake_world(monkeypatch, rank):
    """cli visualize believes it is rank ``rank`` of 2 (no process group: barriers are no-ops)."""
    import dgnam.distributed as distributed

    monkeypatch.setattr(distributed, "init_world", lambda device="cpu": World(rank=rank, size=2, local_rank=rank))
    monkeypatch.setattr(distributed, "barrier", lambda world: None)


def test_a_failing_rank_writes_its_finished_part_and_merge_takes_it(tmp_path, tiny_files, monkeypatch):
    home, net_file, gen_file = tiny_files
    out = tmp_path / "run"
    calls = {"n": 0}
    real = dgnam.run.dgn_am

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(*args, **kwargs)

    _fake_world(monkeypatch, rank=1)  # rank 1 takes batches 2 and 3 of 8 jobs in batches of 3
    monkeypatch.setattr(dgnam.run, "dgn_am", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        cli.main(_argv(net_file, gen_file, out))
    part = json.loads((part_dir(out, 1) / "results.json").read_text())
    assert part["interrupted"] and len(part["items"]) == 3 and part["items_requested"] == 5
    assert cli.main(["merge", str(out)]) == 0
    record = json.loads((out / "results.json").read_text())
    assert [i["file"] for i in record["items"]] == [i["file"] for i in part["items"]] and not record["complete"]


def test_rank0_removes_an_earlier_runs_parts_before_writing(tmp_path, tiny_files, monkeypatch):
    home, net_file, gen_file = tiny_files
    out = tmp_path / "run"
    _part(out, 5, 8, 40, [dgnam.Unit("logits", 4)])  # left by an 8-process run
    _fake_world(monkeypatch, rank=0)
    assert cli.main(_argv(net_file, gen_file, out)) == 2  # refused: merge the old parts first, or overwrite them
    assert part_dir(out, 5).exists()
    assert cli.main(_argv(net_file, gen_file, out) + ["--overwrite"]) == 130  # rank 1 never wrote: merged what finished
    assert not part_dir(out, 5).exists() and part_dir(out, 0).exists()
    record = json.loads((out / "results.json").read_text())
    assert len(record["items"]) == 3 and record["items_requested"] == 8 and record["interrupted"]


def test_an_explicit_gpu_under_torchrun_names_the_fix(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="use --device cuda: each process takes cuda:LOCAL_RANK"):
        init_world("cuda:1")
