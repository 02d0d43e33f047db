"""Message helpers shared by every error: user input echoed short, and the nearest valid names."""

from __future__ import annotations

import difflib
from typing import Iterable


def short(text: object, limit: int = 80) -> str:
    """``text`` as a string cut to ``limit`` characters (for echoing user input in an error)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def unknown_name(kind: str, name: str, known) -> KeyError:
    """The error for a name missing from a registry: lists the registered names and the closest ones."""
    known = sorted(known)
    close = difflib.get_close_matches(name[:200], known, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return KeyError(f"unknown {kind} {short(repr(name))}. Registered {kind}s: {', '.join(known) or 'none'}.{hint}")


def nearest_names(name: str, names: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` of ``names`` closest to ``name`` (for "did you mean" hints)."""
    names = list(names)
    name = name[:200]  # a pasted wall of text is not matched character by character
    return difflib.get_close_matches(name, names, n=n, cutoff=0.4) or [x for x in names if name in x][:n]
