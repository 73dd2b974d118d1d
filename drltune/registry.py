"""Name -> class registries, so that adding a dataset, fusion or method is one file.

Each registry lives beside its base class (`METHODS` in methods/base.py, `DATASETS` in
data/base.py, `FUSIONS` in models/fusion.py). A class registers under its own `name`, written
once: `@METHODS.register` above `class MyMethod(Method): name = "mine"`.
"""

from __future__ import annotations

from typing import Generic, Iterable, Iterator, TypeVar

from drltune.errors import DrltuneError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, obj: T) -> T:
        """Decorator: add a class under its `name` attribute (a name taken twice is a bug)."""
        name = getattr(obj, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(
                f"register the {self.kind} class itself (`@register`, no argument); "
                f"it needs a non-empty `name` class attribute, got {name!r}"
            )
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self._items[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Remove a registered name (for tests that register a toy class for a while)."""
        del self._items[name]

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise unknown_name(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def unknown_name(
    kind: str, name: object, valid: Iterable[str], option: str | None = None
) -> DrltuneError:
    """The one message for a name nothing registers (the registries and drltune.declarations give
    it), led by the option that named it where there is one."""
    what = f"{option} {name!r}: unknown {kind}" if option else f"unknown {kind} {name!r}"
    return DrltuneError(f"{what}; valid: {', '.join(sorted(valid))}")
