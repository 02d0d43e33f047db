"""dgnam's version is stated in one leaf (``dgnam/infra/version.py``) and in pyproject.toml, and they agree."""

from __future__ import annotations

import re
from pathlib import Path

import dgnam
from dgnam.infra import version
from dgnam.io.write import versions


def test_version_leaf_pyproject_and_records_agree():
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    stated = re.search(r'(?m)^version = "([^"]+)"$', pyproject.split("[project]", 1)[1])  # a static version (no tomllib on 3.10)
    assert stated is not None and stated.group(1) == version.__version__ == dgnam.__version__
    assert versions()["dgnam"] == version.__version__  # what results.json records, read without the top-level package
