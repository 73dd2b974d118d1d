"""YAML for user files: `yaml.SafeLoader` (no Python objects), and no aliases (`*name`), so a
self-referencing or exponentially expanding document ("billion laughs") cannot hang or crash us."""

from __future__ import annotations

from typing import Any, Iterator

import yaml

from drltune.errors import first_line


class SafeNoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) are not supported (line {mark.line + 1})", None
            )
        return super().compose_node(parent, index)


def load(text: str) -> Any:
    """One document. Raises yaml.YAMLError, or RecursionError for absurdly deep nesting."""
    return yaml.load(text, Loader=SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def describe(exc: BaseException) -> str:
    """A YAML error as one line with its place:
    `line 3, column 9: mapping values are not allowed here`."""
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    if mark is None or problem is None:
        return first_line(exc)
    where = f"line {mark.line + 1}, column {mark.column + 1}"
    context = getattr(exc, "context", None)
    context_mark = getattr(exc, "context_mark", None)
    if context and context != problem and context_mark is not None:
        problem += f" ({context} at line {context_mark.line + 1})"
    return f"{where}: {problem}"
