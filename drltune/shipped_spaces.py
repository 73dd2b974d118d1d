"""Where the search spaces shipped with drltune lie: the one folder `search_spaces/` at the
repository's top.

A wheel installs that folder as package data, drltune/search_spaces/ (pyproject.toml maps the
package `drltune.search_spaces` onto it); a checkout, run from its folder or installed with
`pip install -e`, has no such folder inside the package and reads the top-level one beside it.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_INSTALLED = (
    _PACKAGE / "search_spaces"
)  # known by its default.yaml: an emptied folder left in a checkout is not it
SPACES_DIR = (
    _INSTALLED if (_INSTALLED / "default.yaml").is_file() else _PACKAGE.parent / "search_spaces"
)
DEFAULT_SPACE = SPACES_DIR / "default.yaml"  # `drltune search` without --space
PUBLISHED_FILE = SPACES_DIR / "published.yaml"  # the papers' settings: drltune.published reads it
