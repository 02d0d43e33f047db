"""Rules for run folders: paths read from a run's JSON stay inside it, and its JSON is read and written safely.

A run folder's ``results.json`` (and ``evaluation.json``, ``neighbors/neighbors.json``, a part's
``results.json``) names files relative to the folder. Those names come from a file anyone can edit, so
every reader goes through :func:`inside_run` before it opens, embeds or moves anything: an absolute
path, a ``..`` or a symlink that leads out of the folder is refused.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath

#: What dgnam writes at the top of a run folder; ``--overwrite`` removes these and nothing else.
RUN_FILES = ("results.json", "contact_sheet.png", "evaluation.json", "report.html")
RUN_FOLDERS = ("best", "rf", "parts", "neighbors", "transparency")  # transparency: MACO's maps


class RunFolderError(ValueError):
    """A run folder, or a JSON file in it, is not what dgnam wrote (or would overwrite something)."""


def short(text: object, limit: int = 80) -> str:
    """``text`` as a string cut to ``limit`` characters (for echoing user input in an error)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def inside_run(run_dir: str | Path, name: object, what: str = "a file") -> Path:
    """``run_dir / name``, refused unless ``name`` is a relative path that stays inside ``run_dir``.

    Args:
        run_dir: The run folder.
        name: The path as written in the run's JSON (``item["file"]``, ``best_file``, a sheet ...).
        what: What the path is, for the error message (``"items[3].file"``).

    Returns:
        ``Path(run_dir) / name`` (not resolved: callers keep the folder's own spelling).

    Raises:
        RunFolderError: ``name`` is not a non-empty string, is absolute, contains ``..``, or resolves
            (following symlinks) outside ``run_dir``.

    Example:
        >>> inside_run("runs/demo", "best/logits_0001_seed0.png").as_posix()
        'runs/demo/best/logits_0001_seed0.png'
        >>> inside_run("runs/demo", "../../etc/passwd")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        dgnam.io.rundir.RunFolderError: runs/demo: a file '../../etc/passwd' leaves the run folder ...
    """
    fix = "(absolute paths, '..' and symlinks out of it are refused); the run's JSON was edited or is not dgnam's"
    if not isinstance(name, str) or not name or "\x00" in name:
        raise RunFolderError(f"{run_dir}: {what} is {short(repr(name))}, not a file name inside the run folder; the run's JSON was edited or is not dgnam's")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive or ".." in parts:
        raise RunFolderError(f"{run_dir}: {what} {short(repr(name))} leaves the run folder {fix}")
    path = Path(run_dir) / name
    root = Path(run_dir).resolve()
    if not path.resolve().is_relative_to(root):
        raise RunFolderError(f"{run_dir}: {what} {short(repr(name))} leaves the run folder through a symlink {fix}")
    return path


def read_json_object(path: str | Path, what: str = "results.json") -> dict:
    """The JSON object in ``path``; a clear error when it is broken or not an object (a list, a number).

    Raises:
        FileNotFoundError: no such file.
        RunFolderError: the file is not valid JSON or not a JSON object.
    """
    path = Path(path)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{path} is not valid JSON ({short(e, 120)}): restore the {what} dgnam wrote, or run again") from e
    if not isinstance(value, dict):
        raise RunFolderError(f"{path} holds a JSON {type(value).__name__}, not the object dgnam writes as {what}: restore it, or run again")
    return value


ITEM_KEYS = ("file", "unit", "layer", "index", "seed")  # what every image record of a run holds


def check_items(record: dict, path: str | Path, keys: tuple[str, ...] = ITEM_KEYS) -> list[dict]:
    """``record["items"]``, checked: a list of objects that each hold ``keys``.

    Raises:
        RunFolderError: naming the first item (and key) that is not as dgnam writes it.
    """
    items = record.get("items", [])
    if not isinstance(items, list):
        raise RunFolderError(f"{path}: 'items' is a JSON {type(items).__name__}, not the list dgnam writes: restore the file, or run again")
    for k, item in enumerate(items):
        missing = [key for key in keys if key not in item] if isinstance(item, dict) else list(keys)
        if missing:
            raise RunFolderError(f"{path}: items[{k}] lacks {', '.join(map(repr, missing))}: restore the results.json dgnam wrote, or run again")
    return items


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to a temporary file beside ``path`` (its folder made if missing), then rename it
    over ``path``: a reader (or a kill -9 in the middle) sees the old file or the new one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, value: object, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON (no NaN/Infinity) atomically (:func:`write_text_atomic`).

    Raises:
        ValueError: ``value`` holds NaN or an infinity (strict JSON has neither).
    """
    return write_text_atomic(path, json.dumps(value, indent=indent, allow_nan=False))


def _is_run_output(entry: Path) -> bool:
    name = entry.name
    if entry.is_symlink():
        return False  # never follow (or remove through) a link
    if entry.is_dir():
        return name in RUN_FOLDERS
    return name in RUN_FILES or name.endswith(".png") or (name.startswith(".results.json.") and name.endswith(".tmp"))


def prepare_run_folder(out: str | Path, resume: bool = False, overwrite: bool = False, apply: bool = True) -> bool:
    """Make ``out`` ready for a run, refusing to mix two runs in one folder.

    A new or empty folder is used as it is. A folder with anything in it is refused, unless
    ``resume`` (a folder with a ``results.json`` is continued) or ``overwrite`` (dgnam's own outputs
    are removed first: PNGs, ``best/``, ``rf/``, ``parts/``, results.json ...; a folder holding
    anything else is refused, so ``--overwrite`` never deletes a user's files).

    Args:
        out: The run folder (``--out``).
        resume: Continue the run in ``out``.
        overwrite: Replace the run in ``out``.
        apply: Create the folder and (with ``overwrite``) remove the old outputs. False only checks,
            so that bad arguments found later leave nothing behind (and under torchrun every rank
            checks while rank 0 clears).

    Returns:
        True when a run is to be resumed (``resume`` and a results.json is there).

    Raises:
        RunFolderError: ``out`` is a file, cannot be written, is in use without a flag, or holds
            files that are not dgnam's (with ``overwrite``); ``resume`` and ``overwrite`` together.
    """
    out = Path(out)
    if resume and overwrite:
        raise RunFolderError("give --resume or --overwrite, not both")
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {short(out)} is a file: give a folder for the run (it is created)")
    existing = next((p for p in (out, *out.absolute().parents) if p.exists()), Path("/"))
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"cannot write the run folder {short(out)} ({short(existing)} is not a folder you can write to): "
                             f"give --out a folder you can write to")
    entries = sorted(out.iterdir()) if out.is_dir() else []
    resuming = False
    if entries and resume:
        if not (out / "results.json").is_file():
            raise RunFolderError(f"nothing to resume in {short(out)}: it has no results.json; use --overwrite to replace what is there, or another --out")
        resuming = True
    elif entries and not overwrite:
        names = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        parts = f" (parts/ holds an unmerged torchrun run: `dgnam merge {short(out)}` keeps it)" if (out / "parts").is_dir() else ""
        raise RunFolderError(f"the run folder {short(out)} is not empty ({len(entries)} entries: {short(names)}){parts}: give --resume to continue "
                             f"its run, --overwrite to replace it, or another --out")
    elif entries:
        foreign = [e.name for e in entries if not _is_run_output(e)]
        if not foreign and not (out / "results.json").is_file() and not (out / "parts").is_dir():
            foreign = [e.name for e in entries if e.is_file()]  # PNGs with no results.json: not known to be a run's
        if foreign:
            raise RunFolderError(f"--overwrite removes only what dgnam writes, but {short(out)} also holds {short(', '.join(foreign[:3]))}: "
                                 f"move those away, or give another --out")
    if apply:
        if entries and overwrite:
            for entry in entries:
                shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {short(out)} ({e.strerror}): give --out a folder you can write to") from e
    return resuming


def check_same_settings(out: str | Path, record: dict, settings: dict, ignore: tuple[str, ...] = ("command",)) -> None:
    """Refuse to resume the run in ``out`` (its results.json is ``record``) with other settings.

    Raises:
        RunFolderError: a setting differs (the first few are named, with both values).
    """
    from .write import json_safe

    now = json_safe({k: v for k, v in settings.items() if k not in ignore})
    differ = [k for k, v in now.items() if record.get(k) != v]
    if differ:
        detail = "; ".join(f"{k}: {short(json.dumps(now[k]), 60)} now, {short(json.dumps(record.get(k)), 60)} there" for k in differ[:3])
        raise RunFolderError(f"cannot resume {short(out)} with other settings ({detail}): repeat the command it was run with "
                             f"(its results.json has it under 'command'), or use --overwrite")


__all__ = ["RunFolderError", "ITEM_KEYS", "check_items", "RUN_FILES", "RUN_FOLDERS", "inside_run", "read_json_object", "write_json_atomic", "prepare_run_folder",
           "check_same_settings", "short"]
