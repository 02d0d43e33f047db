"""What ``train-generator`` reads and writes besides tensors: its folder, its config's fields, its log.

A training folder holds ``config.json``, ``log.csv``, ``checkpoint.pt``, ``samples/stepNNNNNN.png``,
``priors/stepNNNNNN.safetensors`` and (for an image-folder pool) ``cache/``. One folder is one
training: a used folder is refused unless ``--resume`` continues it or ``--overwrite`` starts again,
and ``--overwrite`` removes only those files (the code cache is kept: it is keyed by the views'
content). A resumed training's log is cut back to its checkpoint's step, so no step is logged twice.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import shutil
from pathlib import Path

from ..io.read import RunFolderError
from ..infra.files import write_text_atomic
from ..infra.messages import short

TRAIN_FILES = ("config.json", "log.csv", "checkpoint.pt", "checkpoint.pt.tmp")
TRAIN_FOLDERS = {"samples": re.compile(r"step\d{6,}\.png|\.step\d{6,}\.png\.[A-Za-z0-9_]+\.tmp"),  # (the temporary file of a killed write)
                 "priors": re.compile(r"step\d{6,}\.safetensors"), "cache": None}


def check_fields(cls: type, value: object, where: str) -> dict:
    """``value`` as keyword arguments of the dataclass ``cls``, checked: an object, known keys, values of the defaults' types.

    Args:
        cls: A dataclass whose fields all have defaults (``TrainConfig``, ``PriorConfig``).
        value: What a JSON file held.
        where: The file (and field), for the message: ``"--config cfg.json"``, ``"checkpoint X: config"``.

    Returns:
        ``dict(value)``.

    Raises:
        ValueError: one line naming ``where``, the key and what is expected (the valid keys for an unknown one).

    Example:
        >>> check_fields(PriorConfig, {"layers": "pool"}, "--config cfg.json")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        ValueError: --config cfg.json: unknown key 'layers'; valid keys: encoder, layer, code_shape, ...
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(value, dict):
        raise ValueError(f"{where} holds a JSON {type(value).__name__}, not an object of {cls.__name__} fields "
                         f"({short(', '.join(fields), 120)})")
    for key, given in value.items():
        if key not in fields:
            raise ValueError(f"{where}: unknown key {short(repr(key), 40)}; valid keys: {', '.join(fields)}")
        f = fields[key]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        problem = _type_problem(default, given)
        if problem:
            raise ValueError(f"{where}: {key!r} is {short(repr(given), 40)}, {problem}")
    return dict(value)


def _type_problem(default: object, given: object) -> str | None:
    """What is wrong with ``given`` for a field whose default is ``default`` (None: nothing)."""
    if dataclasses.is_dataclass(default):
        return None if isinstance(given, dict) else "not an object"
    if isinstance(default, tuple):
        if not isinstance(given, (list, tuple)) or not given:
            return "not a list of numbers"
        kind = type(default[0]) if default else float
        return next((p for p in (_type_problem(kind(), g) for g in given) if p), None)
    if isinstance(default, bool):
        return None if isinstance(given, bool) else "not true or false"
    if isinstance(default, int):
        return None if isinstance(given, int) and not isinstance(given, bool) else "not a whole number"
    if isinstance(default, float):
        ok = isinstance(given, (int, float)) and not isinstance(given, bool) and math.isfinite(given)
        return None if ok else "not a finite number"
    if isinstance(default, str):
        return None if isinstance(given, str) else "not a string"
    return None


def _entries(out: Path) -> list[Path]:
    return sorted(out.iterdir()) if out.is_dir() else []


def foreign_entries(out: Path) -> list[str]:
    """The entries of a training folder that train-generator did not write (relative names)."""
    foreign = []
    for entry in _entries(out):
        if entry.is_symlink() or not (entry.name in TRAIN_FILES if entry.is_file() else entry.name in TRAIN_FOLDERS):
            foreign.append(entry.name)
        elif entry.is_dir() and TRAIN_FOLDERS[entry.name] is not None:
            pattern = TRAIN_FOLDERS[entry.name]
            foreign += [f"{entry.name}/{e.name}" for e in sorted(entry.iterdir()) if e.is_symlink() or not e.is_file() or not pattern.fullmatch(e.name)]
    return foreign


def prepare_train_folder(out: str | Path, resume: bool = False, overwrite: bool = False, apply: bool = True) -> bool:
    """Make ``out`` ready for a training, refusing to mix two trainings in one folder (as ``visualize`` does for runs).

    A new or empty folder is used as it is. A used folder needs ``resume`` (continue from its
    ``checkpoint.pt``; without one, a folder holding only train-generator's files starts again from
    step 0) or ``overwrite`` (train-generator's files are removed, the code cache kept); either way
    a folder holding anything else is refused, naming it.

    Args:
        out: The training folder (``--out``).
        resume: ``--resume``.
        overwrite: ``--overwrite``.
        apply: Remove the old files (with ``overwrite``); False only checks (every torchrun rank
            checks, rank 0 removes).

    Returns:
        True when ``out/checkpoint.pt`` is to be resumed.

    Raises:
        RunFolderError: one line naming the folder, what is in it and the flag to give.
    """
    out = Path(out)
    if resume and overwrite:
        raise RunFolderError("give --resume or --overwrite, not both")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {short(out)} is a file: give a folder for the training (it is created)")
    entries = _entries(out)
    if not entries:
        return False
    if not resume and not overwrite:
        names = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise RunFolderError(f"the training folder {short(out)} is not empty ({len(entries)} entries: {short(names)}): give --resume to "
                             f"continue its training from checkpoint.pt, --overwrite to start again, or another --out")
    foreign = foreign_entries(out)
    if foreign:
        flag = "--resume" if resume else "--overwrite"
        raise RunFolderError(f"{flag} needs a folder train-generator wrote, but {short(out)} also holds {short(', '.join(foreign[:3]), 120)}: "
                             f"move those away, or give another --out")
    if resume:
        if (out / "checkpoint.pt").is_file():
            return True  # Trainer.resume cuts the log back to the checkpoint's step
        if apply:
            trim_log(out / "log.csv", 0)  # died before its first checkpoint: it starts again at step 0
        return False
    if apply:
        for entry in entries:
            if entry.name != "cache":
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    return False


def trim_log(path: str | Path, step: int) -> int:
    """Drop the rows of a training log after ``step`` (logged by a run that died before its next checkpoint).

    The rest is kept as it was (header included); the file is rewritten atomically, and only when a
    row goes. Returns the number of rows dropped.
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return 0
    col = rows[0].index("step") if "step" in rows[0] else 0
    keep = [r for r in rows[1:] if len(r) == len(rows[0]) and r[col].isdigit() and int(r[col]) <= step]
    dropped = len(rows) - 1 - len(keep)
    if dropped:
        mode = path.stat().st_mode & 0o777
        text = io.StringIO()
        csv.writer(text, lineterminator="\r\n").writerows([rows[0], *keep])  # as csv.DictWriter wrote it
        write_text_atomic(path, text.getvalue())
        os.chmod(path, mode)
    return dropped


__all__ = ["TRAIN_FILES", "TRAIN_FOLDERS", "check_fields", "foreign_entries", "prepare_train_folder", "trim_log"]
