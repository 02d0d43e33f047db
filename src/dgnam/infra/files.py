"""Atomic file writes: a temporary file beside the target, then a rename (a reader never sees half a file)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, Union

if TYPE_CHECKING:
    import numpy as np

Buffer = Union[bytes, bytearray, memoryview]  # what os.write takes


def write_bytes_atomic(path: str | Path, data: Buffer | Sequence[Buffer]) -> Path:
    """Write ``data`` (bytes, or a sequence of bytes-like chunks written one after the other, so a large
    array need not be copied into one ``bytes``) to a temporary file beside ``path`` (its folder made if
    missing), then rename it over ``path``: a reader (or a kill -9 in the middle) sees the old file or the
    new one, never half of one.

    The file gets the mode ``open()`` would give it (0o666 less the umask), not the temporary file's 0o600.

    Raises:
        OSError: the write failed (a full disk: ``errno.ENOSPC``); its file name is ``path``, so the
            command's error line names it, and neither a partial file nor the temporary file is left.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            _write_fd(fd, data)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError) and e.errno is not None:  # name the file written, not the temporary one
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise
    return path


def _write_fd(fd: int, data: Buffer | Sequence[Buffer]) -> None:
    """All of ``data`` (or of each of its chunks, in order) to the open file ``fd`` (``os.write`` may write
    less than asked)."""
    for chunk in (data,) if isinstance(data, (bytes, bytearray, memoryview)) else data:
        view = memoryview(chunk).cast("B")
        while view:
            view = view[os.write(fd, view):]


def _umask() -> int:
    """This process's umask, read without changing it where Linux says it (``/proc/self/status``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) atomically, as :func:`write_bytes_atomic` does."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | Path, value: object, indent: int | None = 1) -> Path:
    """Write ``value`` as strict JSON (no NaN/Infinity) atomically (:func:`write_text_atomic`).

    Raises:
        ValueError: ``value`` holds NaN or an infinity (strict JSON has neither).
    """
    return write_text_atomic(path, json.dumps(value, indent=indent, allow_nan=False))


def write_npy_atomic(path: str | Path, array: "np.ndarray") -> Path:
    """``array`` as a ``.npy`` file at ``path``, atomically (:func:`write_bytes_atomic`): the bytes
    ``np.save`` writes, streamed from the array's memory (a 1 GB pool is not copied first).

    Raises:
        ValueError: an array of Python objects (``.npy`` would need a pickle).
        OSError: as :func:`write_bytes_atomic`.
    """
    import io

    import numpy as np
    from numpy.lib import format as npy

    array = np.asanyarray(array)
    if not (array.flags.c_contiguous or array.flags.f_contiguous):
        array = array.copy(order="C")
    if array.dtype.hasobject:
        raise ValueError(f"{path}: an array of Python objects is not written (it would need a pickle)")
    header = npy.header_data_from_array_1_0(array)
    buffer = io.BytesIO()
    try:
        npy.write_array_header_1_0(buffer, header)  # what np.save chooses when the header fits
    except ValueError:
        buffer = io.BytesIO()
        npy.write_array_header_2_0(buffer, header)
    data = array.T if header["fortran_order"] else array  # C-ordered memory either way
    return write_bytes_atomic(path, (buffer.getvalue(), memoryview(data.reshape(-1).view(np.uint8))))
