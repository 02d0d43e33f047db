"""Writing a run to disk: one PNG per unit x seed, the best images, a contact sheet and results.json.

``results.json`` holds the resolved settings, versions, seeds and every item's activation history,
so a run folder alone says how its images were made.
"""

from __future__ import annotations

import math
import platform
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..methods.base import AMResult
from ..core.units import Unit
from ..infra.images import contact_sheet, png_bytes, read_image, to_pil
from .read import ITEM_KEYS, RunFolderError, inside_run, refuse_repeated, require_items
from ..infra.files import write_bytes_atomic, write_npy_atomic
from ..infra.version import __version__


def unit_label(unit: Unit, categories: Sequence[str] | None, output_layers: Sequence[str] | None = None) -> str:
    """``logits:945 bell pepper`` for class units, else the unit string."""
    if output_layers is None:  # logits, output and every registered net's own class layer (CaffeNet's fc8)
        from ..nets import known_class_layers

        output_layers = known_class_layers()
    if categories and unit.layer in output_layers and unit.index < len(categories):
        return f"{unit} {categories[unit.index].split(',')[0]}"
    return str(unit)


def tile_caption(label: str, seed: int, activation: float) -> str:
    """The caption under an image on the contact sheet: label, seed and final activation."""
    return f"{label} s{seed}\nact {activation:.2f}"


def save_png(image: Image.Image, path: str | Path) -> Path:
    """``image`` as a PNG at ``path``, atomically (:func:`~dgnam.infra.files.write_bytes_atomic`): a full
    disk or a kill leaves the old file or none, never a truncated one."""
    return write_bytes_atomic(path, png_bytes(image))


def image_name(unit: Unit, seed: int) -> str:
    """File name carrying layer, unit index and seed, e.g. ``logits_0945_seed0.png``."""
    return f"{unit.slug}_seed{seed}.png"


class RunWriter:
    """Writes a run folder incrementally, so an interrupted run keeps what finished.

    Args:
        out_dir: The run folder (created).
        settings: Resolved settings to record (net, generator, method, config, seeds, command ...).
        categories: Category names of the target, for labels.

    Timing: each :meth:`add` records its batch's wall time (``batches`` in results.json), by default
    the time since the previous ``add`` (or since the writer was made) minus the time spent writing,
    which is the optimization time when the writer consumes :func:`~dgnam.run.iter_visualize` as it
    yields. Pass ``seconds=`` when the batches were computed elsewhere. Each batch record also holds
    the batch's resolved method settings (``config``; for CMA-ES/GA with ``popsize``, ``generations``
    and ``evals_used``) and what an item's ``history`` counts (``history_axis``: ``step`` or
    ``generation``).
    """

    def __init__(self, out_dir: str | Path, settings: dict, categories: Sequence[str] | None = None, fields: dict | None = None,
                 requested: int | None = None):
        self.out = Path(out_dir)
        (self.out / "best").mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.requested = requested  # images the whole run asks for (for ``complete`` in the record written after each batch)
        self.categories = categories
        self.fields = fields or {}  # unit -> receptive-field box (top, left, bottom, right) for hidden units
        self.items: list[dict] = []
        self.tiles: list[tuple[Image.Image, str]] = []
        self.started = time.time()
        self.batches: list[dict] = []  # per batch: images, optimization wall time and resolved config
        self.process_seconds: list[float] | None = None  # per process, when parts that ran side by side are merged
        self._mark = time.perf_counter()  # end of the last add: the next batch's computing starts here

    def add(self, result: AMResult, seconds: float | None = None) -> None:
        """Save the images of one batch and remember their records (and the batch's wall time)."""
        seconds = time.perf_counter() - self._mark if seconds is None else float(seconds)
        axis = "generation" if result.method in ("cmaes", "ga") else "step"  # what history[i] indexes
        batch = {"images": len(result.units), "seconds": round(seconds, 4), "method": result.method,
                 "history_axis": axis, "config": json_safe(result.config)}
        items, tiles = [], []  # committed together at the end: an interrupt never leaves half a batch recorded
        self._check_new_names(result)
        for i, (unit, seed) in enumerate(zip(result.units, result.seeds)):
            name = image_name(unit, seed)
            image = to_pil(result.images[i])
            save_png(image, self.out / name)  # every file atomically: a full disk leaves no truncated image
            raw = None
            if result.images.shape[1] not in (1, 3):  # an N-channel net's image: the PNG shows the channel mean
                raw = f"raw/{Path(name).stem}.npy"
                write_npy_atomic(self.out / raw, result.images[i].detach().cpu().numpy().astype(np.float32))
            save_png(to_pil(result.best_images[i]), self.out / "best" / name)
            maps = {}
            for key, values in result.maps.items():  # a method's per-image maps (MACO's transparency): grey PNGs
                if not key.isidentifier():
                    raise ValueError(f"map name {key!r} must be an identifier (it names a folder of the run)")
                save_png(to_pil(values[i][None].clamp(0, 1)), self.out / key / name)
                maps[key] = f"{key}/{name}"
            label = unit_label(unit, self.categories)
            box = self.fields.get(unit)
            if box is not None:  # hidden unit: also its receptive field; box (top, left, bottom, right), PIL crops (left, top, right, bottom)
                save_png(image.crop((box[1], box[0], box[3], box[2])), self.out / "rf" / name)
            items.append(
                {
                    "unit": str(unit),
                    "layer": unit.layer,
                    "index": unit.index,
                    "location": list(unit.location) if isinstance(unit.location, tuple) else unit.location,
                    "label": label,
                    "seed": seed,
                    "file": name,
                    "best_file": f"best/{name}",
                    **({"raw_file": raw} if raw else {}),
                    **({"maps": maps} if maps else {}),
                    "receptive_field": list(box) if box is not None else None,
                    "rf_file": f"rf/{name}" if box is not None else None,
                    "final_activation": float(result.final[i]),
                    "best_activation": float(result.best[i]),
                    "best_step": int(result.best_step[i]),
                    "history": [round(float(v), 5) if math.isfinite(v) else None for v in result.history[i].tolist()],  # None: not scored
                    "batch": len(self.batches),
                }
            )
            tiles.append((image, tile_caption(label, seed, float(result.final[i]))))
        self.batches.append(batch)
        self.items.extend(items)
        self.tiles.extend(tiles)
        # the record of what finished, after every batch: a run killed now (even by kill -9) leaves a valid folder
        self._write(interrupted=True, requested=self.requested)
        self._mark = time.perf_counter()

    def start(self) -> Path:
        """results.json before the first batch (settings, no items, ``interrupted: true``): a run killed
        before its first batch leaves a folder that ``--resume`` continues and ``--overwrite`` clears."""
        return self._write(interrupted=True, requested=self.requested)

    def _check_new_names(self, result: AMResult) -> None:
        """Refuse a batch that would write over an image this run already holds (a unit or seed twice)."""
        names = [image_name(unit, seed) for unit, seed in zip(result.units, result.seeds)]
        taken = {item["file"] for item in self.items}
        twice = next((n for k, n in enumerate(names) if n in taken or n in names[:k]), None)
        if twice is not None:
            raise ValueError(f"{self.out / twice} would hold two images of this run (a unit and seed given twice, or two layers "
                             f"whose names differ only in punctuation): give each unit and seed once")

    def finish(self, interrupted: bool = False, requested: int | None = None) -> Path:
        """Write the contact sheet and results.json; return the results.json path."""
        if self.tiles:
            save_png(contact_sheet(self.tiles), self.out / "contact_sheet.png")  # what AMResult displays
        return self._write(interrupted, requested if requested is not None else self.requested)

    def _write(self, interrupted: bool, requested: int | None) -> Path:
        """results.json, atomically (temporary file + rename) and as strict JSON. While a run goes on,
        the record written after each batch says ``interrupted: true`` (what it is if the run dies)."""
        from ..infra.files import write_json_atomic

        record = {
            **run_header(self.settings, self.started, len(self.items), interrupted, requested),
            "timing": self.timing(),
            "batches": self.batches,
            "items": self.items,
        }
        return write_json_atomic(self.out / "results.json", json_safe(record))

    def resume(self, record: dict) -> set[tuple[str, int]]:
        """Take over the finished items of an earlier, interrupted run in this folder (its
        ``results.json`` is ``record``): their records, batches and contact-sheet tiles (read back
        from the PNGs, which hold exactly the tiles that were drawn). Returns the finished
        ``(unit, seed)`` pairs, which the caller skips.

        Raises:
            RunFolderError: an item's image is missing or its name leaves the folder.
        """
        items = require_items(record, self.out / "results.json", ITEM_KEYS + ("label", "final_activation"))
        refuse_repeated(items, self.out / "results.json", ("unit", "seed"), ("file",))  # else a resume would run the repeated one again
        tiles = []
        for k, item in enumerate(items):
            path = inside_run(self.out, item.get("file"), f"items[{k}].file")
            if not path.is_file():
                raise RunFolderError(f"{path} is listed in {self.out / 'results.json'} but missing: use --overwrite to start the run again")
            tiles.append((Image.fromarray(read_image(path)), tile_caption(item["label"], item["seed"], item["final_activation"])))
        self.items, self.tiles, self.batches = list(items), tiles, list(record.get("batches") or [])
        self.started = float(record.get("started") or self.started)
        return {(item["unit"], int(item["seed"])) for item in items}

    def timing(self) -> dict:
        """Optimization time: ``optimize_seconds`` is wall time, the sum of the batches' times in one
        process; when :attr:`process_seconds` holds the times of processes that ran side by side
        (merged torchrun parts), it is the slowest process's. ``process_seconds`` is the sum over
        the ``processes``; ``seconds_per_image`` and ``images_per_minute`` follow the wall time."""
        total = sum(b["seconds"] for b in self.batches)
        n = sum(b["images"] for b in self.batches)
        per_process = self.process_seconds or [total]
        wall = max(per_process)
        return {
            "processes": len(per_process),
            "optimize_seconds": round(wall, 3),
            "process_seconds": round(sum(per_process), 3),
            "seconds_per_image": round(wall / n, 4) if n else None,
            "images_per_minute": round(60.0 * n / wall, 3) if n and wall > 0 else None,
        }


def save_result(result: AMResult, out_dir: str | Path, settings: dict | None = None) -> Path:
    """Write ``result`` as a run folder (images, best/, contact_sheet.png, results.json) with :class:`RunWriter`.

    Args:
        result: What a method or :func:`dgnam.visualize` returned (its ``categories`` label the images).
        out_dir: The run folder (created; files of the same names are replaced).
        settings: More settings to record in results.json besides the result's ``method`` and ``config``.

    Returns:
        The path of results.json. The folder's ``contact_sheet.png`` holds exactly the bytes that
        :func:`dgnam.show` displays for ``result``.

    Example:
        >>> path = dgnam.save_result(result, "runs/notebook")  # doctest: +SKIP
    """
    writer = RunWriter(out_dir, {"method": result.method, "config": result.config, **(settings or {})}, result.categories)
    writer.add(result, seconds=0.0)
    return writer.finish()


def run_header(settings: dict, started: float, n_items: int, interrupted: bool, requested: int | None) -> dict:
    """The opening of every results.json: settings, versions, time, and whether the run is complete."""
    return {
        **settings,
        "versions": versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "started": round(started, 3),  # time.time() at the start (a merge of parts takes the earliest)
        "seconds": round(time.time() - started, 2),
        "interrupted": interrupted,
        "complete": not interrupted and (requested is None or n_items == requested),
        "items_requested": requested,
    }


def json_safe(value):
    """``value`` with tuples, tensors and NumPy values as lists and numbers, non-finite floats as
    None and anything else unknown as its string, so that ``json.dumps`` writes strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (torch.Tensor, np.ndarray, np.generic)):
        return json_safe(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


def sample_name(unit: Unit, seed: int, step: int) -> str:
    """File name of a chain state, e.g. ``logits_0945_seed0_step0060.png``."""
    return f"{unit.slug}_seed{seed}_step{step:04d}.png"


class SampleWriter:
    """Writes the samples of :func:`dgnam.methods.ppgn.sample` (a sibling of :class:`RunWriter`): one PNG per
    kept chain state, a contact sheet (one row per chain), and results.json with every sample's
    activation, every chain's activation trajectory and the samples' diversity per unit.

    Args:
        out_dir: The run folder (created).
        settings: Resolved settings to record.
        categories: Category names of the target, for labels.
    """

    def __init__(self, out_dir: str | Path, settings: dict, categories: Sequence[str] | None = None):
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.categories = categories
        self.items: list[dict] = []
        self.chains: list[dict] = []
        self.rows: list[list[tuple[Image.Image, str]]] = []  # contact sheet: one row of tiles per chain
        self.kept: dict[str, list[torch.Tensor]] = {}
        self.started = time.time()

    def add(self, result, counts: Sequence[int] | None = None) -> None:
        """Save a batch of chains (a :class:`~dgnam.methods.ppgn.SampleResult`); chain ``c`` keeps its first
        ``counts[c]`` samples (default: all). The batch is recorded at once, after its files are written."""
        chains, rows, items, kept = [], [], [], []
        for c, (unit, seed) in enumerate(zip(result.units, result.seeds)):
            label = unit_label(unit, self.categories)
            keep = len(result.steps) if counts is None else int(counts[c])
            row: list[tuple[Image.Image, str]] = []
            rows.append(row)
            is_class = result.class_terms[c] == "log_softmax"
            chains.append({
                "unit": str(unit), "label": label, "seed": seed, "class_term": result.class_terms[c],
                "trajectory": [round(float(v), 5) for v in result.trajectory[c]],
                "score_trajectory": [round(float(v), 5) for v in result.score_trajectory[c]],
            })
            for k, step in enumerate(result.steps[:keep]):
                name = sample_name(unit, seed, step)
                image = to_pil(result.images[c, k])
                save_png(image, self.out / name)
                kept.append((str(unit), _pixels(image)))  # the saved 8-bit pixels: a resumed run sees the same
                activation, score = float(result.activations[c, k]), float(result.scores[c, k])
                probability = math.exp(score) if is_class else None
                items.append({
                    "unit": str(unit), "layer": unit.layer, "index": unit.index,
                    "location": list(unit.location) if isinstance(unit.location, tuple) else unit.location,
                    "label": label, "seed": seed, "step": step, "file": name,
                    "activation": activation, "log_probability": score if is_class else None, "probability": probability,
                })
                row.append((image, _sample_caption(items[-1])))
        self.chains.extend(chains)
        self.rows.extend(rows)
        self.items.extend(items)
        for unit, pixels in kept:
            self.kept.setdefault(unit, []).append(pixels)

    def resume(self, record: dict) -> set[tuple[str, int]]:
        """Take over the finished chains of an earlier, interrupted run in this folder (its results.json
        is ``record``), reading their samples back from the PNGs; returns the finished ``(unit, seed)`` chains.

        Raises:
            RunFolderError: a sample's image is missing or its name leaves the folder.
        """
        items = require_items(record, self.out / "results.json", ("file", "unit", "seed", "step", "label", "activation"))
        refuse_repeated(items, self.out / "results.json", ("unit", "seed", "step"), ("file",))
        by_chain: dict[tuple[str, int], list[tuple[Image.Image, str]]] = {}
        for k, item in enumerate(items):
            path = inside_run(self.out, item["file"], f"items[{k}].file")
            if not path.is_file():
                raise RunFolderError(f"{path} is listed in {self.out / 'results.json'} but missing: use --overwrite to start again")
            image = Image.fromarray(read_image(path))
            by_chain.setdefault((item["unit"], int(item["seed"])), []).append((image, _sample_caption(item)))
            self.kept.setdefault(item["unit"], []).append(_pixels(image))
        self.chains = list(record.get("chains") or [])
        self.rows = [by_chain.get((chain["unit"], int(chain["seed"])), []) for chain in self.chains]
        self.items = list(items)
        self.started = float(record.get("started") or self.started)
        return {(chain["unit"], int(chain["seed"])) for chain in self.chains}

    def finish(self, interrupted: bool = False, requested: int | None = None) -> Path:
        """Write the contact sheet and results.json (with the diversity of the samples); return its path."""
        from ..eval.metrics import image_diversity
        from ..infra.files import write_json_atomic

        columns = max((len(row) for row in self.rows), default=0)
        if columns:  # one row per chain, shorter chains padded with blank tiles
            blank = (Image.new("RGB", (8, 8), "white"), "")
            tiles = [tile for row in self.rows for tile in row + [blank] * (columns - len(row))]
            save_png(contact_sheet(tiles, columns=columns), self.out / "contact_sheet.png")
        diversity = image_diversity({u: torch.stack(v) for u, v in self.kept.items()}) if self.kept else None
        diversity = json_safe(diversity)  # NaN (a unit with one sample) is not JSON
        record = {
            **run_header(self.settings, self.started, len(self.items), interrupted, requested),
            "diversity": diversity,
            "chains": self.chains,
            "items": self.items,
        }
        return write_json_atomic(self.out / "results.json", json_safe(record))

    def write_progress(self, requested: int | None = None) -> Path:
        """results.json of the chains so far (``interrupted: true`` until :meth:`finish`), written
        atomically after each batch, so a killed run leaves a valid record of what finished."""
        from ..infra.files import write_json_atomic

        record = {**run_header(self.settings, self.started, len(self.items), True, requested), "diversity": None,
                  "chains": self.chains, "items": self.items}  # fmt: skip
        return write_json_atomic(self.out / "results.json", json_safe(record))


def _pixels(image: Image.Image) -> torch.Tensor:
    """(3, H, W) in [0, 1] from 8-bit RGB pixels (what a saved PNG holds)."""
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def _sample_caption(item: dict) -> str:
    """The contact-sheet caption of one sample record."""
    p = item.get("probability")
    return f"{item['label']}\ns{item['seed']} t{item['step']} act {item['activation']:.2f}" + (f" p {p:.2g}" if p is not None else "")


def versions() -> dict:
    """The versions a run records: dgnam, torch, numpy, Python and the platform."""
    return {"dgnam": __version__, "torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0], "platform": platform.platform()}




def runtime(device: str | torch.device) -> dict:
    """What else decides a run's bytes besides its settings: the torch build, the device (a GPU's name, or
    the CPU's instruction set) and, on a CPU, torch's thread count (reductions split by thread round
    differently). Recorded as ``runtime`` in results.json; ``--resume`` refuses another
    (:func:`dgnam.io.rundir.check_same_runtime`)."""
    device = torch.device(device)
    record = {"torch": torch.__version__, "cuda": torch.version.cuda}
    if device.type == "cuda":
        record["device"] = torch.cuda.get_device_name(device)
    else:
        capability = getattr(torch.backends.cpu, "get_cpu_capability", lambda: "unknown")()
        record.update(device=f"{device.type} ({capability})", threads=torch.get_num_threads())
    return record
