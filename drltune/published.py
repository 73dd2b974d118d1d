"""The papers' published CREMA-D settings (search_spaces/published.yaml) as TrialConfigs.

Two sources: `papers` (each method's own paper or official script) and `balancebenchmark` (one
shared protocol for every method, with BalanceBenchmark's method defaults). A search starts from
them (`search --seed-with`) and `compare` trains them as reference rows. The file is data: a new
method adds one block, and `check_published` says when a registered method has neither an entry
nor a line under `unpublished`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from drltune import safe_yaml
from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.shipped_spaces import PUBLISHED_FILE

SOURCES = ("papers", "balancebenchmark")
ENTRY_KEYS = {"source", "config", "unmapped", "protocol"}
NOT_PUBLISHED_KEYS = ("dataset", "data_root", "seed", "method", "device", "threads", "selection")


@dataclass(frozen=True)
class Published:
    """One method's published configuration: the TrialConfig keys it sets (no dataset, seed or
    epochs-independent defaults filled in), where they come from, and what drltune cannot map."""

    method: str
    source: str
    values: dict[str, Any]  # TrialConfig keys, method parameters under `params`
    unmapped: tuple[str, ...]

    def config(self, dataset: str, **extra: Any) -> TrialConfig:
        return TrialConfig.from_dict(
            {"dataset": dataset, **self.values, "method": self.method, **extra},
            where=f"published config of {self.method}",
        )


def scale_epochs(value: int, factor: float, max_epochs: int) -> int:
    """A published epoch count (lr_step, a method's window) moved to a budget of `max_epochs`:
    multiplied by max_epochs / published epochs (`factor`), at least 1 (0 stays 0), at most
    max_epochs."""
    return int(min(max_epochs, max(1 if value > 0 else 0, round(value * factor))))


def read_file(path: Path = PUBLISHED_FILE) -> dict[str, Any]:
    try:
        data = safe_yaml.load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise DrltuneError(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DrltuneError(f"{path}: not valid YAML: {safe_yaml.describe(exc)}") from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise DrltuneError(f"{path}: expected a mapping with `methods:`")
    return data


def published(source: str, path: Path = PUBLISHED_FILE) -> dict[str, Published]:
    """Every method's configuration under `source` (papers or balancebenchmark), in file order."""
    if source not in SOURCES:
        raise DrltuneError(f"unknown published source {source!r}; valid: {', '.join(SOURCES)}")
    data = read_file(path)
    protocols = data.get("protocols") or {}
    out = {}
    for method, entry in data["methods"].items():
        where = f"{path.name}: methods.{method}"
        if not isinstance(entry, dict) or not set(entry) <= ENTRY_KEYS or "source" not in entry:
            raise DrltuneError(
                f"{where}: expected `source` and `config` or `protocol` (keys {sorted(ENTRY_KEYS)})"
            )
        name = entry.get("protocol") if source == "papers" else source
        if name is None:
            values, unmapped, cite = (
                dict(entry.get("config") or {}),
                entry.get("unmapped") or [],
                entry["source"],
            )
        else:
            if name not in protocols:
                raise DrltuneError(f"{where}: unknown protocol {name!r}")
            proto = protocols[name]
            values = {
                **(proto.get("config") or {}),
                "params": dict((proto.get("params") or {}).get(method) or {}),
            }
            own = (
                (entry.get("unmapped") or []) if source == "papers" else []
            )  # the entry's notes are its paper's
            unmapped = [*(proto.get("unmapped") or []), *own]
            cite = entry["source"] if source == "papers" else proto["source"]
        bad = sorted(set(values) & set(NOT_PUBLISHED_KEYS))
        if bad:
            raise DrltuneError(f"{where}: {', '.join(bad)} cannot be published settings")
        out[method] = Published(method, str(cite), values, tuple(str(u) for u in unmapped))
    return out


def unpublished(path: Path = PUBLISHED_FILE) -> dict[str, str]:
    """Registered methods with no published CREMA-D configuration, with the reason."""
    return {str(k): str(v) for k, v in (read_file(path).get("unpublished") or {}).items()}


def check_published(path: Path = PUBLISHED_FILE) -> list[str]:
    """Problems of the file: an entry that does not resolve, a method neither published nor listed
    as unpublished, an unknown method. Empty when the file is sound."""
    from drltune.methods import METHODS
    from drltune.resolve import resolve

    problems = []
    listed = unpublished(path)
    for source in SOURCES:
        for method, entry in published(source, path).items():
            if method not in METHODS:
                problems.append(f"{source}: {method}: not a registered method")
                continue
            try:
                resolve(entry.config("cremad"))
            except DrltuneError as exc:
                problems.append(f"{source}: {method}: {exc}")
    entries = set(published("papers", path))
    for method in METHODS.names():
        if method not in entries and method not in listed:
            problems.append(
                f"{method}: registered, but neither under `methods:` nor under `unpublished:`"
            )
    return problems
