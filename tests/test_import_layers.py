"""The package's imports go one way: no import circle, and no module imports from a higher layer.

Every import counts, the ones inside functions and under TYPE_CHECKING too: a lazy import still
ties the two modules together. The layers are docs/architecture.md's.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import drltune

ROOT = Path(drltune.__file__).resolve().parent
# Lowest first; a module belongs to the layer that names it, else to the one that names its package.
LAYERS = (
    ("leaves", ("drltune.errors", "drltune.safe_yaml", "drltune.faults", "drltune.params", "drltune.registry",
                "drltune.config", "drltune.record", "drltune.shipped_spaces",
                "drltune.tracking")),
    ("parts", ("drltune.data", "drltune.models", "drltune.methods")),
    ("resolution", ("drltune.resolve", "drltune.epoch_budget", "drltune.published", "drltune.declarations")),
    ("training", ("drltune.train",)),
    # The drivers, each above the ones it uses: the storage, Ray start-up, objective and GPU plan every
    # driver shares;
    # verify re-trains stored trials; explore reads studies and verify's runs (search.choice is
    # the reading of a finished study that explore and a search's end both print); search
    # orchestrates all (its race runs verify, its dashboard draws explore's figures).
    ("shared", ("drltune.search.storage", "drltune.search.storage_url", "drltune.search.optuna_private",
                "drltune.search.ray_start", "drltune.search.objective", "drltune.search.gpu_plan",
                "drltune.search.study")),
    ("verify", ("drltune.verify",)),
    ("explore", ("drltune.explore", "drltune.search.choice", "drltune.compare.leaderboard",
                 "drltune.compare.plan")),
    ("search", ("drltune.search",)),
    ("compare", ("drltune.compare",)),
    ("entry", ("drltune.cli", "drltune.commands")),
)


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The drltune modules `name` imports (a `from pkg import sub` names the submodule)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]

    def closest(dotted: str) -> str | None:
        while dotted and dotted not in known:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [closest(alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else closest(base) for a in node.names]
        else:
            continue
        out.update(t for t in targets if t and t != name)
    return out


def layer(name: str) -> int:
    if name == "drltune":  # the package itself holds only __version__
        return 0
    module = name
    while module != "drltune":
        for rank, (_, names) in enumerate(LAYERS):
            if module in names:
                return rank
        module = module.rpartition(".")[0]
    raise AssertionError(f"{name} is in no layer: add it to LAYERS (and docs/architecture.md)")


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_no_import_circle(graph):
    assert cycles(graph) == []


def test_no_import_from_a_higher_layer(graph):
    upward = [f"{a} ({LAYERS[layer(a)][0]}) imports {b} ({LAYERS[layer(b)][0]})"
              for a, targets in graph.items() for b in sorted(targets) if layer(b) > layer(a)]
    assert upward == []


def test_the_order_rejects_an_upward_import():
    """The checker itself: verify reading explore, or the storage importing the runner, is upward."""
    assert layer("drltune.explore.export") > layer("drltune.verify")
    assert layer("drltune.search.runner") > layer("drltune.explore.load") > layer("drltune.search.storage")
    assert layer("drltune.search.choice") == layer("drltune.explore")


def test_the_recipe_calls_the_tune_run_never_the_reverse(graph):
    """search.runner (the recipe) imports search.tune_run (Ray Tune's run); tune_run reads the spec
    and plan through Protocols instead of importing them."""
    assert "drltune.search.tune_run" in graph["drltune.search.runner"]
    assert "drltune.search.runner" not in graph["drltune.search.tune_run"]


def test_the_walk_sees_a_circle():
    """The checker itself: a two-module circle is found, a chain is not."""
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
