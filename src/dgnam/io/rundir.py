"""Preparing a run folder: refuse a used one, ``--resume`` it with the same settings and runtime, or ``--overwrite``
only what dgnam wrote there (:class:`RunOutputs`).

A run folder's records name files relative to the folder, and those names come from a file anyone can edit:
what they name is found through :func:`dgnam.io.read.inside_run` (no absolute path, ``..`` or symlink out of
the folder), and the records themselves are checked by :func:`dgnam.io.read.load_record`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..infra.messages import short
from .read import RunFolderError, inside_run, load_record

#: What dgnam writes at the top of a run folder besides the files its records list (``--overwrite`` removes both).
RUN_FILES = ("results.json", "contact_sheet.png", "evaluation.json", "report.html")
RUN_FOLDERS = ("best", "rf", "raw", "parts", "neighbors", "transparency")  # folders dgnam makes (transparency: MACO's maps)


def read_json_object(path: str | Path, what: str = "results.json") -> dict:
    """The JSON object in ``path``, checked against the schema of ``what``'s file name (:func:`dgnam.io.read.load_record`).

    Raises:
        FileNotFoundError: no such file.
        RunFolderError: the file is not valid JSON, not a JSON object, or a field is not as dgnam writes it.
    """
    return load_record(path, what)


#: Keys of a record's items that name a file (relative to the record's folder); also ``maps`` and exemplars' ``top``/``bottom``.
ITEM_FILE_KEYS = ("file", "best_file", "rf_file", "raw_file", "sheet")
#: The records dgnam writes inside a run folder: (where, the keys of their items that name files, the fixed files beside them).
_RECORDS = (("results.json", ITEM_FILE_KEYS, RUN_FILES), ("parts/rank*/results.json", ITEM_FILE_KEYS, ("results.json", "contact_sheet.png")),
            ("exemplars/results.json", ITEM_FILE_KEYS, ("results.json",)), ("neighbors/neighbors.json", ("sheet",), ("neighbors.json",)))
_IMAGE_FOLDERS = ("", "best", "rf", "raw", "transparency")  # where a run's images are, under its record's folder
_PLANNED = re.compile(r"(?P<slug>.+)_seed(?P<seed>\d+)(?:_step\d+)?\.(?:png|npy)")  # image_name / sample_name, raw arrays
_PART_FOLDER = re.compile(r"parts/rank\d+(?:/(?:best|rf|raw|transparency))?")  # a rank's folders, made before its first record
_TEMP = re.compile(r"\.(?P<name>.+)\.[A-Za-z0-9_]+\.tmp")  # write_bytes_atomic's temporary file (left by a kill -9)


class RunOutputs:
    """What dgnam wrote in a run folder, as paths relative to it: what ``--overwrite`` may remove.

    The files its records list (``results.json`` items, a torchrun run's parts, ``neighbors/``, ``exemplars/``),
    its fixed outputs (``contact_sheet.png``, ``report.html`` ...), the images its record's units and seeds
    name (written by a batch that had not been recorded when the run died), the temporary files of its
    atomic writes, and the folders it makes. A record is data: its names only ever match files found in
    the folder, and go through :func:`inside_run`.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.files: set[str] = set()
        self.folders: set[str] = set(RUN_FOLDERS)
        self.planned: dict[str, tuple[set[str], set[int]]] = {}  # record folder -> (unit slugs, seeds)
        self.unread: list[str] = []  # records that could not be read
        for pattern, keys, fixed in _RECORDS:
            for record in sorted(self.out.glob(pattern)):
                self._add_record(record, keys, fixed)

    def _add_record(self, path: Path, keys: tuple[str, ...], fixed: tuple[str, ...]) -> None:
        folder = path.parent.relative_to(self.out).as_posix().strip(".")
        self._add_folder(folder)
        self.files.update(_join(folder, name) for name in fixed)
        self.folders.update(_join(folder, name) for name in _IMAGE_FOLDERS if name)
        try:
            record = read_json_object(path, path.name)
        except (RunFolderError, OSError):
            self.unread.append(_join(folder, path.name))
            return
        items = record.get("items")
        for k, item in enumerate(items if isinstance(items, list) else []):
            for name in _item_names(item, keys):
                try:
                    listed = inside_run(self.out / folder, name, f"items[{k}]")
                except RunFolderError:
                    continue  # a name that leaves the folder matches none of its files
                rel = os.path.normpath(listed.relative_to(self.out).as_posix())
                self.files.add(rel)
                self._add_folder(os.path.dirname(rel))
        units, seeds = record.get("units"), record.get("seeds")
        if isinstance(units, list) and isinstance(seeds, list):
            self.planned[folder] = ({_slug(u) for u in units} - {None}, {s for s in seeds if isinstance(s, int)})

    def _add_folder(self, folder: str) -> None:
        while folder not in ("", "."):
            self.folders.add(folder)
            folder = os.path.dirname(folder)

    def owns(self, rel: str) -> bool:
        """Whether the file ``rel`` (relative to the run folder) is dgnam's."""
        if rel in self.files:
            return True
        folder, name = os.path.split(rel)
        temp = _TEMP.fullmatch(name)
        if temp:
            return self.owns(_join(folder, temp["name"]))
        planned = _PLANNED.fullmatch(name)
        for base, (slugs, seeds) in self.planned.items() if planned else ():
            if folder in {_join(base, sub) for sub in _IMAGE_FOLDERS} and planned["slug"] in slugs and int(planned["seed"]) in seeds:
                return True
        return False

    def removal(self) -> tuple[list[Path], list[Path]]:
        """(files, folders) to remove to clear the run folder: every file and folder in it.

        Raises:
            RunFolderError: something in the folder is not dgnam's (named, with the fix); nothing is removed.
        """
        files, folders, foreign = [], [], []
        for root, dirs, names in os.walk(self.out):
            base = Path(root).relative_to(self.out).as_posix().strip(".")
            for d in list(dirs):
                rel = _join(base, d)
                if (Path(root) / d).is_symlink() or not (rel in self.folders or _PART_FOLDER.fullmatch(rel)):
                    foreign.append(rel + "/")
                    dirs.remove(d)  # never looked into, never removed
                else:
                    folders.append(self.out / rel)
            for name in names:
                rel = _join(base, name)
                mine = self.owns(rel) and not (Path(root) / name).is_symlink()
                files.append(self.out / rel) if mine else foreign.append(rel)
        if foreign:
            unread = f" ({short(', '.join(self.unread), 60)} cannot be read, so what it lists is not known to be dgnam's)" if self.unread else ""
            raise RunFolderError(f"--overwrite removes only what dgnam wrote, but {short(self.out)} also holds {short(', '.join(sorted(foreign)[:3]), 120)}"
                                 f"{' and ' + str(len(foreign) - 3) + ' more' if len(foreign) > 3 else ''}{unread}: move those away, or give another --out")
        return files, sorted(folders, key=lambda f: len(f.parts), reverse=True)


def _join(folder: str, name: str) -> str:
    return f"{folder}/{name}" if folder else name


def _item_names(item: object, keys: tuple[str, ...]) -> list[object]:
    """The file names one record item gives: ``keys``, ``maps`` values, exemplars' ``top``/``bottom`` files."""
    if not isinstance(item, dict):
        return []
    names = [item[key] for key in keys if item.get(key) is not None]
    if isinstance(item.get("maps"), dict):
        names += list(item["maps"].values())
    for end in ("top", "bottom"):
        if isinstance(item.get(end), list):
            names += [e.get("file") for e in item[end] if isinstance(e, dict)]
    return names


def _slug(text: object) -> str | None:
    """The file-name slug of a recorded unit string (``logits:1`` -> ``logits_0001``), or None."""
    from ..core.units import Unit, _parse_location

    m = re.fullmatch(r"(?P<layer>.+):(?P<index>\d{1,9})(?:@(?P<loc>.+))?", text) if isinstance(text, str) else None
    try:
        return Unit(m["layer"], int(m["index"]), _parse_location(m["loc"]) if m["loc"] else None).slug if m else None
    except ValueError:
        return None

def _complete_run(out: Path) -> bool:
    """Whether ``out`` holds a finished run (its results.json reads and says ``complete: true``); False for anything else."""
    try:
        return (out / "results.json").is_file() and read_json_object(out / "results.json").get("complete") is True
    except (OSError, ValueError):  # a broken or foreign record: the usual refusal names it no worse
        return False


def prepare_run_folder(out: str | Path, resume: bool = False, overwrite: bool = False, apply: bool = True) -> bool:
    """Make ``out`` ready for a run, refusing to mix two runs in one folder.

    A new or empty folder is used as it is. A folder with anything in it is refused, unless
    ``resume`` (a folder with a ``results.json`` is continued; one that holds only the empty folders
    of a run killed before its first record is started afresh) or ``overwrite`` (what the earlier run's
    records list and dgnam's fixed outputs are removed first, :class:`RunOutputs`; a folder holding
    anything else is refused before anything is removed, so ``--overwrite`` never deletes a user's files).

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
    resuming, removal = False, None
    if entries and resume and all(_empty_run_folder(e) for e in entries):
        entries = []  # killed before its first record: nothing to resume, nothing of anyone's to keep
    elif entries and resume:
        if not (out / "results.json").is_file():
            raise RunFolderError(f"nothing to resume in {short(out)}: it has no results.json; use --overwrite to replace what is there, or another --out")
        resuming = True
    elif entries and not overwrite:
        names = ", ".join(e.name for e in entries[:3]) + (", ..." if len(entries) > 3 else "")
        parts = f" (parts/ holds an unmerged torchrun run: `dgnam merge {short(out)}` keeps it)" if (out / "parts").is_dir() else ""
        if _complete_run(out):  # nothing left for --resume to do: do not suggest it
            raise RunFolderError(f"the run folder {short(out)} is not empty: this run is already complete (its results.json says so): "
                                 "give another --out, or --overwrite to run it again")
        raise RunFolderError(f"the run folder {short(out)} is not empty ({len(entries)} entries: {short(names)}){parts}: give --resume to continue "
                             f"its run, --overwrite to replace it, or another --out")
    elif entries:
        removal = RunOutputs(out).removal()  # refuses (naming them) files that are not dgnam's, before anything is removed
    if apply:
        if removal is not None:
            files, folders = removal
            for file in files:
                file.unlink(missing_ok=True)
            for folder in folders:  # deepest first; each held only dgnam's files
                folder.rmdir()
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the run folder {short(out)} ({e.strerror}): give --out a folder you can write to") from e
    return resuming


def _empty_run_folder(entry: Path) -> bool:
    """A folder dgnam makes (``best/`` ...) with nothing in it, not a link."""
    return entry.name in RUN_FOLDERS and entry.is_dir() and not entry.is_symlink() and not any(entry.iterdir())


def check_same_settings(out: str | Path, record: dict, settings: dict, ignore: tuple[str, ...] = ("command",)) -> None:
    """Refuse to resume the run in ``out`` (its results.json is ``record``) with other settings.

    Raises:
        RunFolderError: a setting differs (the first few are named, with both values).
    """
    from .write import json_safe

    now = json_safe({k: v for k, v in settings.items() if k not in ignore})
    if isinstance(now.get("runtime"), dict):
        check_same_runtime(out, record.get("runtime"), now.pop("runtime"))
    differ = [k for k, v in now.items() if record.get(k) != v]
    if differ:
        detail = "; ".join(f"{k}: {short(json.dumps(now[k]), 60)} now, {short(json.dumps(record.get(k)), 60)} there" for k in differ[:3])
        raise RunFolderError(f"cannot resume {short(out)} with other settings ({detail}): repeat the command it was run with "
                             f"(its results.json has it under 'command'), or use --overwrite")


_RUNTIME_NAMES = {"threads": "torch threads", "torch": "torch", "cuda": "CUDA", "device": "device"}


def check_same_runtime(out: str | Path, recorded: object, now: dict) -> None:
    """Refuse to resume the run in ``out`` where its recorded ``runtime`` (:func:`dgnam.io.write.runtime`:
    CPU threads, torch build, device) differs from this process's: the rest of its images would not be the
    bytes an uninterrupted run makes. A record without one (an older dgnam's) is not checked.

    Raises:
        RunFolderError: naming the recorded and the current values and the fix (``--threads N``, the build, ``--overwrite``).
    """
    if not isinstance(recorded, dict):
        return
    differ = [k for k in now if recorded.get(k) != now[k]]
    if not differ:
        return
    there = ", ".join(f"{_RUNTIME_NAMES.get(k, k)} {short(json.dumps(recorded.get(k)), 40)}" for k in differ)
    here = ", ".join(f"{_RUNTIME_NAMES.get(k, k)} {short(json.dumps(now[k]), 40)}" for k in differ)
    threads = recorded.get("threads")
    fixes = [f"--threads {threads} (or OMP_NUM_THREADS={threads})"] if "threads" in differ and isinstance(threads, int) and threads > 0 else []
    fixes += ["the torch build and device it ran on"] if set(differ) - {"threads"} else []
    raise RunFolderError(f"cannot resume {short(out)}: it ran with {there}, this process has {here}, and its remaining images would differ "
                         f"from an uninterrupted run's: resume with {' and '.join(fixes)}, or start again with --overwrite")


__all__ = ["RunOutputs", "ITEM_FILE_KEYS", "RUN_FILES", "RUN_FOLDERS", "read_json_object", "prepare_run_folder", "check_same_settings", "check_same_runtime"]
