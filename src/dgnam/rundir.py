"""Rules for run folders: paths read from a run's JSON stay inside it, and its JSON is read and written safely.

A run folder's ``results.json`` (and ``evaluation.json``, ``neighbors/neighbors.json``, a part's
``results.json``) names files relative to the folder. Those names come from a file anyone can edit, so
every reader goes through :func:`inside_run` before it opens, embeds or moves anything: an absolute
path, a ``..`` or a symlink that leads out of the folder is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path, PurePosixPath, PureWindowsPath


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
        dgnam.rundir.RunFolderError: runs/demo: a file '../../etc/passwd' leaves the run folder ...
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


def write_json_atomic(path: str | Path, value: object, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON (no NaN/Infinity) to a temporary file beside ``path``, then
    rename it over ``path``: a reader (or a kill -9 in the middle) sees the old file or the new one,
    never half of one.

    Raises:
        ValueError: ``value`` holds NaN or an infinity (strict JSON has neither).
    """
    path = Path(path)
    text = json.dumps(value, indent=indent, allow_nan=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


__all__ = ["RunFolderError", "inside_run", "read_json_object", "write_json_atomic", "short"]
