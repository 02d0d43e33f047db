"""dgnam's version, in a leaf so that any module can record it (``results.json``'s ``versions``) without
importing the top-level package. pyproject.toml states the same (``tests/test_version.py`` checks)."""

__version__ = "0.1.0"
