"""Reading a run folder back: its ``results.json`` and its images, in the order of its items."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .images import read_image
from .rundir import check_items, inside_run, read_json_object


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
    return read_json_object(path)


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
    for k, item in enumerate(check_items(record, run_dir / "results.json")):
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
