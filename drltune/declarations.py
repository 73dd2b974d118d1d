"""The registered methods, datasets and fusions as their source declares them, read without
importing it.

Importing a method or dataset module loads torch (seconds), yet `drltune methods` and the checks
that refuse a misspelt `--dataset` or `--methods` need only what each registered class declares
in literals: its `name`, `description`, `params` and docstring. Reading those with `ast` keeps
adding a method (or dataset, or fusion) one file, with no second list to keep in step, and leaves
the method files free to import torch at the top.

Once a registry's package is imported it is the authority: it also holds classes registered
outside the package (a plug-in, a test's toy method). A declaration that is not a literal (such
as cremad's `choices=tuple(CLASS_ORDERS)`) is read by importing the registry instead: still right,
only slow (tests keep the names, and the methods' declarations, literal).
"""

from __future__ import annotations

import ast
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

from drltune.params import Param
from drltune.registry import unknown_name

# kind -> (the package whose modules register that kind, where its Registry lives, the Registry's
# name)
SOURCES: dict[str, tuple[str, str, str]] = {
    "method": ("drltune.methods", "drltune.methods", "METHODS"),
    "dataset": ("drltune.data", "drltune.data", "DATASETS"),
    "fusion": ("drltune.models", "drltune.models.fusion", "FUSIONS"),
}
T = TypeVar("T")


@dataclass(frozen=True)
class Declaration:
    """What the listings print and the early checks need of one registered class."""

    name: str
    description: str
    params: tuple[Param, ...]
    summary: str  # the first line of the class's docstring ("" without one)


class NotLiteral(Exception):
    """A declaration computed at import time: only importing its module can read it."""


def declarations(kind: str) -> list[Declaration]:
    """Every registered `kind` ("method", "dataset" or "fusion"), sorted by name."""
    return _read(kind, _from_class_node, _from_class)


def names(kind: str) -> list[str]:
    """The registered names: only the `name` literals are read, so other declarations may be
    computed."""
    return _read(kind, _name, lambda cls: cls.name)


def check_names(kind: str, given: Iterable[str], option: str | None = None) -> None:
    """Refuse the first name nothing registers, with the message `Registry.get` gives (led by
    `option`)."""
    valid = names(kind)
    for name in given:
        if name not in valid:
            raise unknown_name(kind, name, valid, option)


def _read(
    kind: str, read_node: Callable[[ast.ClassDef], T], read_class: Callable[[Any], T]
) -> list[T]:
    """From the source while the registry is not imported and what is read is literal; else from the
    registry."""
    package, home, registry_name = SOURCES[kind]
    if home not in sys.modules:
        try:
            nodes = sorted(
                ((_name(node), node) for node in _class_nodes(package, registry_name)),
                key=lambda p: p[0],
            )
            return [read_node(node) for _, node in nodes]
        except NotLiteral:
            pass
    registry = getattr(importlib.import_module(home), registry_name)
    return [read_class(registry.get(name)) for name in registry.names()]


def _class_nodes(package: str, registry_name: str) -> list[ast.ClassDef]:
    """The classes decorated `@<registry_name>.register` in the package's own modules (not its
    subpackages)."""
    folder = Path(__file__).resolve().parent.joinpath(*package.split(".")[1:])
    marker = f"@{registry_name}.register"
    found = []
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if marker in text:
            found += [
                node
                for node in ast.parse(text, str(path)).body
                if isinstance(node, ast.ClassDef)
                and any(_is_register(d, registry_name) for d in node.decorator_list)
            ]
    return found


def _is_register(decorator: ast.expr, registry_name: str) -> bool:
    return (
        isinstance(decorator, ast.Attribute)
        and decorator.attr == "register"
        and isinstance(decorator.value, ast.Name)
        and decorator.value.id == registry_name
    )


def _attrs(node: ast.ClassDef) -> dict[str, ast.expr]:
    """The class body's plain `NAME = value` assignments."""
    return {
        stmt.targets[0].id: stmt.value
        for stmt in node.body
        if isinstance(stmt, ast.Assign)
        and len(stmt.targets) == 1
        and isinstance(stmt.targets[0], ast.Name)
    }


def _name(node: ast.ClassDef) -> str:
    name = _attrs(node).get("name")
    if name is None:  # inherited: only the class knows it
        raise NotLiteral(node.name)
    return _literal(name)


def _from_class(cls: Any) -> Declaration:
    return Declaration(
        cls.name,
        getattr(cls, "description", ""),
        tuple(getattr(cls, "params", ())),
        _first_line(cls.__doc__),
    )


def _from_class_node(node: ast.ClassDef) -> Declaration:
    attrs = _attrs(node)
    description = _literal(attrs["description"]) if "description" in attrs else ""
    params = _literal(attrs["params"]) if "params" in attrs else ()
    return Declaration(
        _name(node), description, tuple(params), _first_line(ast.get_docstring(node))
    )


def _literal(node: ast.expr) -> Any:
    """A literal, where `Param(...)` with literal arguments counts as one."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Param":
        if any(k.arg is None for k in node.keywords):
            raise NotLiteral(ast.unparse(node))
        return Param(
            *map(_literal, node.args), **{k.arg: _literal(k.value) for k in node.keywords if k.arg}
        )
    if isinstance(node, ast.Tuple):
        return tuple(map(_literal, node.elts))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise NotLiteral(ast.unparse(node)) from None


def _first_line(doc: str | None) -> str:
    return doc.strip().splitlines()[0] if doc and doc.strip() else ""
