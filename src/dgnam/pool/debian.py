"""Debian packages as image sources: fetched and unpacked into a cache (never installed), and the licence of
each file read from the package's machine-readable (DEP-5) copyright file."""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


# ---------------------------------------------------------------------------------------------
# Licences (Debian machine-readable copyright files)
# ---------------------------------------------------------------------------------------------


def parse_dep5(text: str) -> list[tuple[list[str], str]]:
    """Read the ``Files:`` stanzas of a DEP-5 copyright file.

    Args:
        text: contents of ``/usr/share/doc/PKG/copyright``.

    Returns:
        ``[(patterns, licence), ...]`` in file order (the last matching stanza wins).
    """
    stanzas = []
    for para in text.replace("\r\n", "\n").split("\n\n"):
        fields: dict[str, str] = {}
        current = None
        for line in para.split("\n"):
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line and not line.startswith("#"):
                current, _, value = line.partition(":")
                current = current.strip().lower()
                fields[current] = value.strip()
        if "files" in fields and "license" in fields:
            stanzas.append((fields["files"].split(), fields["license"].split("\n")[0].strip()))
    return stanzas


def licence_for(source_path: str, stanzas: list[tuple[list[str], str]], default: str) -> str:
    """The licence of one file of the upstream source tree.

    Args:
        source_path: path as the copyright file names it, e.g. ``16.04/life.jpg``.
        stanzas: from :func:`parse_dep5`.
        default: returned when no stanza matches.

    Returns:
        The licence short name, e.g. ``CC-BY-4.0``.
    """
    found = default
    for patterns, licence in stanzas:
        if any(fnmatch.fnmatchcase(source_path, p) for p in patterns):
            found = licence
    return found


# ---------------------------------------------------------------------------------------------
# Debian packages (I/O)
# ---------------------------------------------------------------------------------------------


def default_cache_dir() -> Path:
    """Returns:
    ``$DGNAM_HOME/debs``, with ``DGNAM_HOME`` defaulting to ``~/.cache/dgnam``.
    """
    home = os.environ.get("DGNAM_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "dgnam")
    return Path(home) / "debs"


@dataclass
class DebPackage:
    """A Debian package unpacked (not installed) into the cache.

    Attributes:
        name: package name.
        version: package version.
        root: folder the package was unpacked into (holds ``usr/...``).
    """

    name: str
    version: str
    root: Path

    def copyright(self) -> str:
        """Returns:
        Text of the package's ``usr/share/doc/NAME/copyright`` ('' if missing).
        """
        path = self.root / "usr/share/doc" / self.name / "copyright"
        return path.read_text(errors="replace") if path.exists() else ""


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def fetch_deb(package: str, cache_dir: Path) -> DebPackage:
    """Download a package with ``apt-get download`` and unpack it with ``dpkg -x``.

    A package already unpacked in the cache is reused. ``apt-get update`` runs only if the
    first download fails.

    Args:
        package: Debian package name.
        cache_dir: folder holding one sub-folder per package.

    Returns:
        The unpacked package.

    Raises:
        RuntimeError: if the download or the unpacking fails.
    """
    pkg_dir = Path(cache_dir) / package
    root, marker = pkg_dir / "root", pkg_dir / "root" / ".dgnam-version"
    if marker.exists():
        return DebPackage(package, marker.read_text().strip(), root)
    pkg_dir.mkdir(parents=True, exist_ok=True)
    for old in pkg_dir.glob("*.deb"):
        old.unlink()
    result = _run(["apt-get", "download", package], cwd=pkg_dir)
    if result.returncode != 0:
        _run(["apt-get", "update"])
        result = _run(["apt-get", "download", package], cwd=pkg_dir)
    debs = sorted(pkg_dir.glob("*.deb"))
    if result.returncode != 0 or not debs:
        raise RuntimeError(f"apt-get download {package} failed: {result.stderr.strip()}")
    version = _run(["dpkg-deb", "-f", str(debs[0]), "Version"]).stdout.strip()
    if root.exists():
        shutil.rmtree(root)
    unpack = _run(["dpkg", "-x", str(debs[0]), str(root)])
    if unpack.returncode != 0:
        raise RuntimeError(f"dpkg -x {debs[0]} failed: {unpack.stderr.strip()}")
    marker.write_text(version + "\n")
    return DebPackage(package, version, root)


__all__ = ["DebPackage", "default_cache_dir", "fetch_deb", "licence_for", "parse_dep5"]
