"""Sphinx extension of the attnbook site (``_config.yml``: ``sphinx.local_extensions``).

It reads the version of the ``attnbook`` being documented at build time, so the site states the
version whose docstrings the API reference shows without anyone typing it: Sphinx's ``version``
and ``release``, and the MyST substitution ``{{ attnbook_version }}`` (used in the title of
``book/api.md``).
"""

from __future__ import annotations

from typing import Any


def _set_version(app: Any, config: Any) -> None:
    import attnbook

    version = attnbook.__version__
    config.version = config.release = version
    substitutions = dict(getattr(config, "myst_substitutions", None) or {})
    substitutions["attnbook_version"] = version
    config.myst_substitutions = substitutions


def setup(app: Any) -> dict[str, Any]:
    app.connect("config-inited", _set_version)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
