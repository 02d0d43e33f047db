"""Reading a run folder back: its ``results.json`` and its images, in the order of its items.

A record names files relative to its folder, and those names come from a file anyone can edit: every reader
goes through :func:`inside_run` before it opens, embeds or moves anything (an absolute path, a ``..`` or a
symlink that leads out of the folder is refused); :func:`refuse_repeated` refuses items dgnam never writes twice.

Every JSON record dgnam reads back (a run's ``results.json``, a torchrun part's, ``evaluation.json``,
``neighbors.json``, an atlas ``unit.json``) is checked here, in one place, against a small declarative
schema (:class:`Field`): what a field holds (object, list, string, integer, number, true/false, null) and
whether it must be there. A file that is not as dgnam writes it is one line naming the file and the
field (:class:`RecordError`), never a traceback further on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Mapping

import numpy as np

from ..infra.images import read_image
from ..infra.messages import short


# --------------------------------------------------------------------------------------------------
# What a record may name: paths kept inside the run folder, items as dgnam writes them
# --------------------------------------------------------------------------------------------------

ITEM_KEYS = ("file", "unit", "layer", "index", "seed")  # what every image record of a run holds


class RunFolderError(ValueError):
    """A run folder, or a JSON file in it, is not what dgnam wrote (or would overwrite something)."""


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
        dgnam.io.read.RunFolderError: runs/demo: a file '../../etc/passwd' leaves the run folder ...
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


def refuse_repeated(items: list[dict], path: str | Path, *groups: tuple[str, ...]) -> None:
    """Refuse a record in which two items are alike in a group of keys (``("unit", "seed")``, ``("file",)``):
    dgnam writes one image per unit and seed and one item per file, so such a record was edited.

    Raises:
        RunFolderError: naming both items and the fix.
    """
    for group in groups:
        seen: dict[str, int] = {}
        for k, item in enumerate(items):
            value = json.dumps([item.get(key) for key in group], default=str)
            if value in seen:
                raise RunFolderError(f"{path}: items[{k}] repeats items[{seen[value]}] ({', '.join(group)} {short(value, 60)}), which dgnam never "
                                     f"writes: restore the results.json dgnam wrote, or start again with --overwrite")
            seen[value] = k


# --------------------------------------------------------------------------------------------------
# Reading a run folder
# --------------------------------------------------------------------------------------------------


def read_record(run_dir: str | Path) -> dict:
    """The parsed ``results.json`` of a run folder.

    Raises:
        FileNotFoundError: the folder has no results.json (not a run folder).
        RunFolderError: results.json is broken or not a JSON object.
    """
    path = Path(run_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a run folder: no results.json (`dgnam visualize --out {run_dir}` writes one)")
    return load_record(path)


def read_run(run_dir: str | Path) -> tuple[dict, np.ndarray]:
    """``results.json`` and the run's images, in the order of its ``items``.

    Returns:
        ``(record, images)``: the parsed results.json and (N, H, W, 3) uint8 images.

    Raises:
        FileNotFoundError: no results.json, or an image it lists is missing.
        ValueError: the images differ in size.
    """
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record.get("kind") == "exemplars":
        raise ValueError(f"{run_dir} holds dataset exemplars (`dgnam exemplars`), not synthesized images: give a `dgnam visualize` run folder")
    arrays = []
    for k, item in enumerate(require_items(record, run_dir / "results.json")):
        path = inside_run(run_dir, item["file"], f"items[{k}].file")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is listed in results.json but missing")
        arrays.append(read_image(path))
    if not arrays:
        return record, np.zeros((0, 1, 1, 3), dtype=np.uint8)
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        raise ValueError(f"the images of {run_dir} differ in size ({sorted(shapes)}); evaluate runs of one size")
    return record, np.stack(arrays)


# --------------------------------------------------------------------------------------------------
# Records: a tiny declarative schema, checked as each file is read
# --------------------------------------------------------------------------------------------------

NULL = type(None)
_JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number", bool: "true/false", NULL: "null"}


class RecordError(RunFolderError):
    """A JSON record is not as dgnam writes it: one line naming the file and the field."""


@dataclass(frozen=True)
class Field:
    """What one field of a record holds.

    Attributes:
        types: Its JSON types as Python types: ``dict`` (object), ``list``, ``str``, ``int``, ``float``
            (any number: an integer is one too), ``bool``, ``NULL``. ``True`` is never an integer.
        required: The field must be there.
        fields: For an object: its named fields (others are not checked).
        each: For a list: every element; for an object without ``fields``: every value.
        minimum: For a number: the least value allowed.
    """

    types: type | tuple[type, ...]
    required: bool = False
    fields: Mapping[str, "Field"] | None = None
    each: "Field | None" = None
    minimum: float | None = None


def need(field: Field) -> Field:
    """``field``, required."""
    return replace(field, required=True)


def obj(fields: Mapping[str, Field] | None = None, each: Field | None = None, null: bool = True) -> Field:
    """An object (or null, with ``null``) whose named ``fields`` or every value (``each``) are checked."""
    return Field((dict, NULL) if null else dict, fields=fields, each=each)


def list_of(each: Field | None = None, null: bool = True) -> Field:
    """A list (or null, with ``null``) whose every element is ``each``."""
    return Field((list, NULL) if null else list, each=each)


STR, OPT_STR = Field(str), Field((str, NULL))
INT, OPT_INT, NUM = Field(int), Field((int, NULL)), Field((float, NULL))  # NUM: a number or null (NaN is written as null)
BOOL = Field(bool)

#: One item of a run (``dgnam visualize``, ``sample``, ``exemplars``): the fields it may hold.
ITEM: dict[str, Field] = {
    "file": STR, "best_file": OPT_STR, "rf_file": OPT_STR, "raw_file": OPT_STR, "sheet": OPT_STR,
    "unit": STR, "layer": STR, "index": INT, "location": Field((str, int, list, NULL)), "label": OPT_STR, "seed": INT, "step": INT,
    "final_activation": NUM, "best_activation": NUM, "activation": NUM, "best_step": OPT_INT, "history": list_of(NUM),
    "batch": Field(int, minimum=0), "maps": obj(each=STR), "receptive_field": list_of(), "stats": obj(),
    "top": list_of(obj({"file": STR}, null=False)), "bottom": list_of(obj({"file": STR}, null=False)),
}  # fmt: skip
#: ``part`` of a torchrun part's results.json (:func:`dgnam.distributed.part_settings`).
PART: dict[str, Field] = {"rank": need(Field(int, minimum=0)), "world_size": need(Field(int, minimum=1)),
                          "items_total": need(Field(int, minimum=0)), "run_keys": need(list_of(STR, null=False))}
#: A run's results.json (any kind).
RESULTS: dict[str, Field] = {
    "kind": OPT_STR, "items": list_of(obj(ITEM, null=False), null=False), "config": obj(), "versions": obj(), "timing": obj({"optimize_seconds": NUM}),
    "batches": list_of(obj({"seconds": need(Field(float)), "images": need(Field(int, minimum=0))}, null=False)),
    "command": list_of(), "started": NUM, "interrupted": BOOL, "complete": BOOL, "data": obj(), "part": obj(PART),
    "chains": list_of(obj({"unit": need(STR), "seed": need(INT)}, null=False)),
}  # fmt: skip
#: What ``dgnam merge`` needs of a part (on top of :data:`RESULTS`).
PART_RECORD: dict[str, Field] = {"part": need(obj(PART, null=False)), "interrupted": need(BOOL)}
_JUDGES = obj(each=obj(null=False))
#: evaluation.json (``dgnam evaluate``): the parts the report and the comparison table read.
EVALUATION: dict[str, Field] = {
    "summary": obj({"judges": _JUDGES, "image_px": list_of(), **dict.fromkeys(("activation", "relative_activation", "spectrum_slope", "saturation", "speed"), obj())}),
    "natural": obj({"spectrum_slope": obj(), "saturation": obj()}), "notes": list_of(STR),
    "faithfulness": obj({"layers": obj(each=obj({"natural": obj()}, null=False))}),
    "items": list_of(obj({"file": OPT_STR, "judges": obj(each=obj({"rank": need(OPT_INT), "pred_label": need(Field((str, int, NULL)))}))}, null=False)),
}  # fmt: skip
#: neighbors/neighbors.json (``dgnam neighbors``).
NEIGHBORS: dict[str, Field] = {
    "items": list_of(obj({"file": OPT_STR, "sheet": OPT_STR, "neighbors": list_of(obj({"distance": NUM}, null=False))}, null=False)),
}  # fmt: skip
_IMAGE = {"file": need(STR), "activation": need(NUM)}
#: An atlas unit's unit.json (:mod:`dgnam.atlas.store`).
UNIT: dict[str, Field] = {
    **{name: need(STR) for name in ("key", "unit", "layer", "slug")}, "index": need(INT), "label": OPT_STR, "location": Field((str, int, list, NULL)),
    "receptive_field": list_of(), "facets": list_of(obj({**_IMAGE, "seed": need(INT)}, null=False)),
    "pixel": obj({**_IMAGE, "method": OPT_STR}), "accent": obj({**_IMAGE, "source_file": need(STR), "source_activation": NUM}),
    "top": list_of(obj({**_IMAGE, "index": need(INT), "source": OPT_STR}, null=False)), "bottom": list_of(obj({**_IMAGE, "index": need(INT), "source": OPT_STR}, null=False)),
    "natural": need(obj({"images": need(INT), "max": NUM, "histogram": obj({"counts": list_of(Field(float)), "edges": list_of(Field(float))})}, null=False)),
}  # fmt: skip
#: The schema of each record dgnam reads back, by file name.
SCHEMAS: dict[str, Mapping[str, Field]] = {"results.json": RESULTS, "evaluation.json": EVALUATION, "neighbors.json": NEIGHBORS, "unit.json": UNIT}


def _is(value: object, types: tuple[type, ...]) -> bool:
    if object in types:
        return True
    if isinstance(value, bool):
        return bool in types
    if isinstance(value, int) and float in types:
        return True
    return isinstance(value, types)


def _where(where: str, key: object) -> str:
    key = str(key)
    if key.isidentifier():
        return f"{where}.{key}" if where else key
    return f"{where}[{short(json.dumps(key), 40)}]"


def _check(value: object, field: Field, where: str, fail) -> None:
    types = field.types if isinstance(field.types, tuple) else (field.types,)
    if not _is(value, types):
        held = _JSON_NAMES.get(type(value), type(value).__name__)
        shown = "" if isinstance(value, (dict, list, NULL)) else f" {short(json.dumps(value), 40)}"
        fail(where, f"is {held}{shown}, not {' or '.join(_JSON_NAMES[t] for t in types)}")
    if field.minimum is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value < field.minimum:
        fail(where, f"is {short(value, 40)}, less than {field.minimum:g}")
    if isinstance(value, dict) and field.fields is not None:
        for name, sub in field.fields.items():
            if name in value:
                _check(value[name], sub, _where(where, name), fail)
            elif sub.required:
                fail(where, f"lacks {name!r}")
    elif isinstance(value, dict) and field.each is not None:
        for key, item in value.items():
            _check(item, field.each, _where(where, key), fail)
    elif isinstance(value, list) and field.each is not None:
        for k, item in enumerate(value):
            _check(item, field.each, f"{where}[{k}]", fail)


def check_record(record: object, path: str | Path, schema: Mapping[str, Field] | None = None, what: str | None = None, fix: str | None = None) -> dict:
    """``record`` (read from ``path``) if it is an object that fits ``schema`` (default: the schema of its file name).

    Args:
        record: The parsed JSON.
        path: The file it came from (named in the error).
        schema: Field name -> :class:`Field`; None: ``SCHEMAS[Path(what or path).name]`` (no check of the fields
            when the file name has no schema).
        what: The kind of file, for the message (default: the file name).
        fix: What to do, for the message (default: restore the file dgnam wrote, or run again).

    Raises:
        RecordError: ``"PATH: items[3] lacks 'label': restore the results.json dgnam wrote, or run again"``.

    Example:
        >>> check_record({"items": [{"file": 3}]}, "runs/x/results.json")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        dgnam.io.read.RecordError: runs/x/results.json: items[0].file is an integer 3, not a string: restore ...
    """
    what = what or Path(path).name
    schema = SCHEMAS.get(Path(what).name, {}) if schema is None else schema
    fix = fix or f"restore the {what} dgnam wrote, or run again"

    def fail(where: str, problem: str):
        raise RecordError(f"{short(path, 160)}: {where or 'the record'} {problem}: {fix}")

    _check(record, Field(dict, fields=schema), "", fail)
    return record  # type: ignore[return-value]


def load_record(path: str | Path, what: str = "results.json", schema: Mapping[str, Field] | None = None, fix: str | None = None) -> dict:
    """The JSON object in ``path``, checked by :func:`check_record` (``schema``, default: the one of ``what``'s file name).

    Raises:
        FileNotFoundError: no such file.
        RecordError: the file is not valid JSON (or nested too deeply to read), not a JSON object, or a field is
            not as dgnam writes it.
    """
    path = Path(path)
    fix = fix or f"restore the {what} dgnam wrote, or run again"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RecordError(f"{short(path, 160)} is not valid JSON ({short(e, 120)}): {fix}") from e
    except RecursionError as e:
        raise RecordError(f"{short(path, 160)} is nested too deeply to be a record dgnam wrote: {fix}") from e
    if not isinstance(value, dict):
        raise RecordError(f"{short(path, 160)} holds a JSON {type(value).__name__}, not the object dgnam writes as {what}: {fix}")
    return check_record(value, path, schema, what, fix)


def require_items(record: dict, path: str | Path, keys: tuple[str, ...] = ITEM_KEYS) -> list[dict]:
    """``record["items"]`` (a list, default empty), each an object that holds ``keys`` as :data:`ITEM` says.

    Raises:
        RecordError: naming the first item and field that is not as dgnam writes it.
    """
    each = obj({**ITEM, **{key: need(ITEM.get(key, Field(object))) for key in keys}}, null=False)
    check_record(record, path, {"items": list_of(each, null=False)}, what=Path(path).name)
    return record.get("items", [])


__all__ = ["ITEM_KEYS", "RunFolderError", "inside_run", "refuse_repeated", "read_record", "read_run", "Field", "RecordError", "check_record", "load_record", "require_items", "need", "obj", "list_of",
           "SCHEMAS", "RESULTS", "PART", "PART_RECORD", "EVALUATION", "NEIGHBORS", "UNIT", "ITEM"]
