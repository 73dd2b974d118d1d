"""`drltune search`: Optuna samples and prunes (re-init aware), Ray Tune runs the trials.

The names below load on first use, so importing a light submodule (e.g. the pruner names
for `drltune search --help`) does not import torch through the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SearchSpec": "runner",
    "run_search": "runner",
    "SearchSpace": "space",
    "load_space": "space",
    "open_storage": "storage",
    "open_reader": "storage",
    "open_writer": "storage",
    "resolve_storage_url": "storage_url",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'drltune.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"drltune.search.{_EXPORTS[name]}"), name)
