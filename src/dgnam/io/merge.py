"""Merging the parts of a torchrun run (``OUT/parts/rankNNN``, :mod:`dgnam.distributed`) into one run folder.

Rank 0 calls :func:`merge_parts` after the last barrier (``dgnam merge OUT`` does it for a run whose merge did
not happen): every part's record is checked against its schema (:data:`~dgnam.io.read.PART_RECORD`), every file
an item names is checked to stay inside the part and the run and to replace nothing, and only then are the
images moved up and one ``results.json`` and contact sheet written: the same images and items as a one-process
run.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

from PIL import Image

from ..distributed import PARTS
from ..infra.images import read_image
from ..infra.messages import short
from .read import PART_RECORD, RecordError, RunFolderError, check_record, inside_run, load_record, require_items
from .rundir import RUN_FILES
from .write import RunWriter, tile_caption


def _read_parts(out: Path) -> list[tuple[dict, Path]]:
    """This run's parts, in rank order: those with the world size and job count of the newest part
    (older parts of another run are skipped with a warning); an error if two parts claim one rank."""
    found = [(load_record(p), p.parent, p.stat().st_mtime) for p in (out / PARTS).glob("rank*/results.json")]
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


__all__ = ["merge_parts"]
