"""What the ``dgnam`` command prints for an error: one line naming the thing and the fix.

Expected errors (a bad argument, a missing or unreadable file, a folder that cannot be written, a
weight file that does not fit) become one line and exit code 2; anything else is a bug and keeps its
traceback. ``dgnam --debug ...`` (or ``DGNAM_DEBUG=1``) shows the traceback of every error.
"""

from __future__ import annotations

import errno
import json
import os

from .messages import short

#: What an OSError means for the user, by errno, and what to do about it.
_OS_FIXES = {
    errno.ENOENT: ("does not exist", "check the path"),
    errno.EACCES: ("cannot be accessed (permission denied)", "give a path you can read and write"),
    errno.EPERM: ("cannot be accessed (operation not permitted)", "give a path you can read and write"),
    errno.EROFS: ("is on a read-only file system", "give a path on a writable disk"),
    errno.EISDIR: ("is a folder, not a file", "give a file name"),
    errno.ENOTDIR: ("is not a folder (a part of the path is a file)", "check the path"),
    errno.EEXIST: ("exists already", "remove it or give another path"),
    errno.ENOSPC: ("cannot be written: the disk is full", "free some space or write elsewhere"),
    errno.ENAMETOOLONG: ("is too long a name", "give a shorter path"),
}

#: The same for an OSError that names no file (a write that filled the disk, a port taken).
_NAMELESS_FIXES = {
    errno.ENOSPC: "a write failed: the disk is full: free some space or write elsewhere (another --out)",
    errno.EDQUOT: "a write failed: the disk quota is exceeded: free some space or write elsewhere (another --out)",
    errno.EFBIG: "a write failed: the file is larger than this file system allows: write elsewhere",
    errno.EADDRINUSE: "the port is in use already: give another --port (or stop what listens there)",
    errno.EADDRNOTAVAIL: "the address is not available on this machine: serve on 127.0.0.1",
    errno.ENOMEM: "the system is out of memory: ask for less (fewer units, smaller --batch-size)",
}


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` is in ``argv`` (anywhere) or ``DGNAM_DEBUG`` is set; ``argv`` without the flag."""
    rest = [a for a in argv if a != "--debug"]
    return (len(rest) != len(argv) or os.environ.get("DGNAM_DEBUG", "") not in ("", "0")), rest


def error_line(exc: BaseException) -> str | None:
    """The one-line message of an expected error, or None for a bug (which keeps its traceback).

    Example:
        >>> error_line(IsADirectoryError(21, "Is a directory", "runs/x"))
        "runs/x is a folder, not a file: give a file name"
    """
    from .hub import WeightsError

    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({short(exc, 120)}): fix the file, or give the one dgnam wrote"
    if isinstance(exc, (WeightsError, ValueError)):  # ValueError includes units' UnitError, records' RunFolderError
        return _first_line(exc)
    if isinstance(exc, KeyError):
        text = str(exc.args[0]) if exc.args else ""
        return _first_line(text) if " " in text else None  # a bare KeyError('config') is a bug: keep the traceback
    if isinstance(exc, ImportError):
        return _first_line(exc) if "pip install" in str(exc) else None
    if isinstance(exc, OSError):
        if exc.filename is None:
            if exc.args and isinstance(exc.args[0], str):
                return _first_line(exc)  # our own messages
            if exc.errno in _NAMELESS_FIXES:
                return _NAMELESS_FIXES[exc.errno]
            if exc.errno is not None:  # the system refused something that names no file: one line, what it said
                return f"the system refused an operation ({errno.errorcode.get(exc.errno, exc.errno)}: {exc.strerror or exc}): dgnam --debug shows where"
            return None
        meaning, fix = _OS_FIXES.get(exc.errno, (f"cannot be used ({exc.strerror or exc})", "check the path"))
        other = f" (and {short(exc.filename2)})" if getattr(exc, "filename2", None) else ""
        return f"{short(exc.filename)}{other} {meaning}: {fix}"
    return None


def _first_line(exc: object) -> str:
    return short(str(exc).strip() or type(exc).__name__, 1500)


__all__ = ["error_line", "debug_requested"]
