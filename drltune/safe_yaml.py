"""YAML for user files: `yaml.SafeLoader` (no Python objects), and no aliases (`*name`), so a
self-referencing or exponentially expanding document ("billion laughs") cannot hang or crash us."""
from __future__ import annotations

from typing import Any, Iterator

import yaml


class SafeNoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*name) are not supported (line {mark.line + 1})", None)
        return super().compose_node(parent, index)


def load(text: str) -> Any:
    """One document. Raises yaml.YAMLError, or RecursionError for absurdly deep nesting."""
    return yaml.load(text, Loader=SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def load_all(text: str) -> Iterator[Any]:
    return yaml.load_all(text, Loader=SafeNoAliasLoader)  # noqa: S506 - a SafeLoader subclass
