"""Scale-out: visualizing thousands of units over processes and GPUs with ``torchrun``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) ``dgnam visualize`` runs one process per rank:

1. every rank makes the same job list (:func:`dgnam.run.make_jobs`) and takes a contiguous, balanced
   slice of its *batches* (:func:`shard_jobs`): whole batches, so each image is computed in exactly
   the batch it would have in a one-process run (pixel methods' transforms depend on the batch);
2. it writes its images and a ``results.json`` into ``OUT/parts/rankNNN`` (:func:`part_dir`), after
   rank 0 has removed the parts an earlier run left there (:func:`clear_stale_parts`);
3. after a barrier, rank 0 merges the parts into ``OUT`` (:func:`merge_parts`): all PNGs, one
   ``results.json`` in job order, one contact sheet, the same images and items as a one-process run
   (``timing`` says how many processes ran side by side; wall times differ).

gloo on CPUs, nccl on GPUs; ``--device cuda`` means ``cuda:LOCAL_RANK``. Across machines, ``OUT``
must be on a file system that every node sees. A run whose merge did not happen (a rank died)
keeps its parts (a rank that fails still writes the ``results.json`` of what it finished);
``dgnam merge OUT`` merges what finished.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, TypeVar

import torch

from .io.rundir import RUN_FILES, RunFolderError, inside_run, read_json_object
from .infra.messages import short

T = TypeVar("T")

PARTS = "parts"


@dataclass(frozen=True)
class World:
    """This process's place in a (possibly one-process) run.

    Attributes:
        rank: Global rank (0 in a one-process run).
        size: Number of processes.
        local_rank: Rank on this machine (picks the GPU).
        device: The device this process computes on.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.size > 1


def init_process_group(device: str) -> tuple[int, int]:
    """(rank, world size): joins torchrun's process group (NCCL on CUDA, else gloo); (0, 1) outside torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return dist.get_rank(), dist.get_world_size()


def init_world(device: str = "cpu") -> World:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (gloo on CPU, nccl on CUDA).

    Args:
        device: ``cpu``, ``cuda`` (becomes ``cuda:LOCAL_RANK`` under torchrun) or an explicit
            ``cuda:N``.

    Returns:
        A :class:`World`; one process and ``device`` as given when not under torchrun.

    Raises:
        ValueError: an explicit ``cuda:N`` under torchrun (every process would share GPU N).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return World(device=torch.device(device))
    if str(device).startswith("cuda:"):
        raise ValueError(f"--device {device} under torchrun: use --device cuda: each process takes cuda:LOCAL_RANK")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        device = f"cuda:{local_rank}"
    rank, size = init_process_group(device)
    return World(rank, size, local_rank, torch.device(device))


def barrier(world: World) -> None:
    """Wait for every rank (a no-op in a one-process run)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        dist.barrier(device_ids=[world.device.index or 0])
    else:
        dist.barrier()


def close_world(world: World) -> None:
    """Leave the process group that :func:`init_world` joined."""
    if world.distributed:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def shard_jobs(jobs: Sequence[T], rank: int, world_size: int, batch_size: int) -> list[T]:
    """Rank ``rank``'s share of ``jobs``: a contiguous run of whole batches of ``batch_size``.

    Batches are split as evenly as possible (rank shares differ by at most one batch) and in order,
    so concatenating the shares of ranks 0, 1, ... gives ``jobs`` back, batch boundaries included.

    Example:
        >>> shard_jobs(list(range(10)), rank=1, world_size=2, batch_size=3)
        [6, 7, 8, 9]
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside a world of {world_size}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    batches = [list(jobs[i : i + batch_size]) for i in range(0, len(jobs), batch_size)]
    lo, hi = rank * len(batches) // world_size, (rank + 1) * len(batches) // world_size
    return [job for batch in batches[lo:hi] for job in batch]


def part_dir(out: str | Path, rank: int) -> Path:
    """Where rank ``rank`` writes its part of run ``out``."""
    return Path(out) / PARTS / f"rank{rank:03d}"


def clear_stale_parts(out: str | Path, world: World) -> None:
    """Before any rank writes: rank 0 removes ``out/parts`` left by an earlier run (another world
    size, other units), then every rank waits, so a merge sees only this run's parts."""
    parts = Path(out) / PARTS
    if world.rank == 0 and parts.exists():
        shutil.rmtree(parts)
    barrier(world)


def part_settings(settings: dict, world: World, items_total: int) -> dict:
    """A part's settings: the run's, plus (under ``"part"``) which part of how many it is."""
    part = {"rank": world.rank, "world_size": world.size, "items_total": items_total, "run_keys": list(settings)}
    return {**settings, "part": part}


def _read_parts(out: Path) -> list[tuple[dict, Path]]:
    """This run's parts, in rank order: those with the world size and job count of the newest part
    (older parts of another run are skipped with a warning); an error if two parts claim one rank."""
    from .io.read import PART_RECORD, RecordError, check_record, require_items  # the schema of every record read back

    found = [(read_json_object(p), p.parent, p.stat().st_mtime) for p in (out / PARTS).glob("rank*/results.json")]
    fix = f"it is not a part of a torchrun run as dgnam writes it; move it out of {out / PARTS} and merge again"
    for record, folder, _ in found:
        check_record(record, folder / "results.json", PART_RECORD, fix=fix)
        require_items(record, folder / "results.json", ("file", "unit", "seed", "label", "final_activation"))
        part, missing = record["part"], [key for key in record["part"]["run_keys"] if key not in record]
        if missing or part["rank"] >= part["world_size"]:
            problem = f"names {missing[0]!r}, which the record lacks" if missing else f"is {part['rank']}, not below part.world_size {part['world_size']}"
            raise RecordError(f"{folder / 'results.json'}: part.{'run_keys' if missing else 'rank'} {problem}: {fix}")
    if not found:
        raise FileNotFoundError(f"no part of a run in {out / PARTS} (rank*/results.json): nothing to merge")
    newest = max(found, key=lambda f: f[2])[0]["part"]
    run = (newest["world_size"], newest["items_total"])
    kept = [(record, folder) for record, folder, _ in found if (record["part"]["world_size"], record["part"]["items_total"]) == run]
    stale = sorted(folder.name for record, folder, _ in found if (record["part"]["world_size"], record["part"]["items_total"]) != run)
    if stale:
        warnings.warn(f"skipping part(s) {', '.join(stale)} of another run (not {run[0]} processes and {run[1]} images)", stacklevel=3)
    folders: dict[int, list[str]] = {}
    for record, folder in kept:
        folders.setdefault(record["part"]["rank"], []).append(folder.name)
    twice = {rank: names for rank, names in folders.items() if len(names) > 1}
    if twice:
        rank, names = min(twice.items())
        raise ValueError(f"rank {rank} has more than one part in {out / PARTS} ({', '.join(sorted(names))}): remove the stale one and merge again")
    return sorted(kept, key=lambda record_folder: record_folder[0]["part"]["rank"])


def _check_part_files(out: Path, record: dict, folder: Path, claimed: dict[str, str]) -> None:
    """Refuse a part whose items name files outside the part folder or outside ``out`` (a part's JSON
    must neither pull a file in from elsewhere nor push one out of the run), a record or another file
    dgnam keeps (``results.json``, ``parts/`` ...), a file that another item names (``claimed``: name ->
    where it was named), or a file already in ``out`` that this merge did not move there: dgnam never
    replaces a file it did not write."""
    items = record.get("items")
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise RunFolderError(f"{folder / 'results.json'} has no list of item records under 'items': it is not dgnam's; move it out of {out / PARTS}")
    fix = f"the part's JSON was edited or is not dgnam's: move {folder} out of {out / PARTS} and merge again"
    for k, item in enumerate(items):
        for key, name in _item_files(item):
            source = inside_run(folder, name, f"items[{k}].{key}")
            target = inside_run(out, name, f"items[{k}].{key}")
            rel, where = os.path.normpath(name), f"{folder.name} items[{k}].{key}"
            if rel in RUN_FILES or rel.split(os.sep)[0] in (PARTS, "."):
                raise RunFolderError(f"{folder / 'results.json'}: {where} names {short(rel, 60)}, which is not an image of the run; {fix}")
            if rel in claimed:
                raise RunFolderError(f"{folder / 'results.json'}: {where} names {short(rel, 60)}, as {claimed[rel]} does; {fix}")
            if source.exists() and (target.exists() or target.is_symlink()):
                raise RunFolderError(f"{target} is there already, and a merge never replaces a file: move it away (or merge into a "
                                     f"fresh run folder) and merge again")
            claimed[rel] = where


def _item_files(item: dict) -> list[tuple[str, object]]:
    """(key, file name) of every file an item names: its image, best image, receptive-field crop and maps."""
    named = [(key, item.get(key)) for key in ("file", "best_file", "rf_file", "raw_file") if item.get(key) or key == "file"]
    maps = item.get("maps") or {}
    if not isinstance(maps, dict):
        raise RunFolderError(f"an item's 'maps' is {type(maps).__name__}, not a dict of file names: the part's JSON is not dgnam's")
    return named + [(f"maps.{key}", name) for key, name in maps.items()]


def merge_parts(out: str | Path, started: float | None = None, keep_parts: bool = False) -> Path:
    """Merge the parts under ``out/parts`` into the run folder ``out``; return its ``results.json``.

    Images (and ``best/``, ``rf/``) are moved into ``out``; ``results.json`` lists every part's items
    in rank order (= job order) with the run's settings; the contact sheet is drawn from the moved
    images, so it equals a one-process run's. The parts folder is removed once every part is merged.
    Only parts of one run are merged (the world size and job count of the newest part), and a merge
    that stopped half-way can be run again (files already moved stay where they are).

    ``timing`` of the merged run: ``processes`` ran side by side, so ``optimize_seconds`` is the
    wall time of the slowest (the largest part's optimization time), ``images_per_minute`` the
    throughput of all of them, and ``process_seconds`` the sum over processes.

    Args:
        out: The run folder given to ``dgnam visualize --out``.
        started: ``time.time()`` when the run started (for ``seconds``); default: the earliest
            ``started`` of the parts.
        keep_parts: Keep ``out/parts`` after merging.

    Raises:
        FileNotFoundError: no part has a ``results.json``.
        ValueError: two parts of the run claim the same rank.
    """
    from PIL import Image

    from .infra.images import read_image
    from .io.write import RunWriter, tile_caption

    out = Path(out)
    records = _read_parts(out)
    claimed: dict[str, str] = {}
    for record, folder in records:  # every name checked before the first file moves
        _check_part_files(out, record, folder, claimed)
    part = records[0][0]["part"]
    world_size, total = part["world_size"], part["items_total"]
    settings = {k: records[0][0][k] for k in part["run_keys"]}
    writer = RunWriter(out, settings, categories=None)
    starts = [record["started"] for record, _ in records if record.get("started") is not None]
    writer.started = started if started is not None else min(starts, default=time.time())
    writer.process_seconds = []
    interrupted = len(records) < world_size
    for record, folder in records:
        interrupted = interrupted or record["interrupted"]
        offset = len(writer.batches)  # batch indices continue over the parts
        writer.batches.extend(record.get("batches", []))
        seconds = (record.get("timing") or {}).get("optimize_seconds")
        writer.process_seconds.append(float(seconds) if seconds is not None else sum(b["seconds"] for b in record.get("batches", [])))
        for item in record["items"]:
            if "batch" in item:
                item["batch"] += offset
            for _, name in _item_files(item):
                if name:
                    source, target = folder / name, out / name  # checked by _check_part_files
                    if not source.exists() and target.exists():  # moved by an earlier merge that stopped
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.move(str(source), str(target))
            writer.items.append(item)
            writer.tiles.append((Image.fromarray(read_image(out / item["file"])), tile_caption(item["label"], item["seed"], item["final_activation"])))
    path = writer.finish(interrupted=interrupted, requested=total)
    if not keep_parts and len(records) == world_size:
        shutil.rmtree(out / PARTS)
    return path


__all__ = ["World", "init_world", "barrier", "close_world", "shard_jobs", "part_dir", "clear_stale_parts", "part_settings", "merge_parts"]
