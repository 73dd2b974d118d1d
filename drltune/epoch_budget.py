"""Epoch-valued settings that cannot act within a run's epochs: said out loud, never a silent no-op.

With `dr: defaults` and `--max-epochs 4`, DR's re-init interval stays 10, DR never re-initialises
and trains exactly like the baseline. Epochs are 0-based (a run of E epochs trains 0..E-1):

* a method's modulation window (`windows`, inclusive) does nothing when it starts at epoch >= E;
* DR re-initialises after epochs r, 2r, ...; one after the last epoch changes nothing, so it
  acts only when r <= E - 2;
* ARL scales gradients only after its warm-up (`start`): it acts only when start <= E - 2.

Each method declares its own limits (`Method.epoch_limits`, and its `windows`).
"""

from __future__ import annotations

from typing import Any, Iterable


def _limits(method: str) -> list[tuple[str, Any, str]]:
    from drltune.methods import METHODS

    cls = METHODS.get(method)
    rules = list(getattr(cls, "epoch_limits", ()))
    for starts, _ in getattr(cls, "windows", ()):
        rules.append((starts, lambda e: e - 1, "window start"))
    return rules


def inert_values(
    method: str, values: dict[str, Iterable[float]], epochs: int
) -> list[tuple[str, str, int, list]]:
    """(parameter, what, largest acting value, the given values that cannot act) for each rule
    broken."""
    out = []
    for param, limit, what in _limits(method):
        given = sorted(values.get(param, ()))
        bad = [v for v in given if v > limit(epochs)]
        if bad:
            out.append((param, what, limit(epochs), bad))
    return out


def config_warnings(method: str, params: dict[str, Any], epochs: int) -> list[str]:
    """One line per epoch-valued parameter of a resolved config that cannot act within `epochs`."""
    lines = []
    for param, what, limit, _ in inert_values(method, {k: [v] for k, v in params.items()}, epochs):
        lines.append(
            f"{method}: params.{param}={params[param]} ({what}) cannot act within {epochs} epochs "
            f"(0-based; it must be <= {limit}), so {method} trains like the baseline; "
            f"lower it or raise epochs"
        )
    return lines


def space_warnings(
    method: str, ranges: dict[str, tuple[float, float, bool]], epochs: int
) -> list[str]:
    """For a search: `ranges` maps a parameter to (lowest, highest, searched)."""
    lines = []
    for param, what, limit, bad in inert_values(
        method, {k: (lo, hi) for k, (lo, hi, _) in ranges.items()}, epochs
    ):
        low, high, searched = ranges[param]
        name = f"{method}.{param}"
        if len(bad) == 2 or not searched:
            source = "searched in" if searched else "fixed at"
            span = f"[{low:g}, {high:g}]" if searched else f"{high:g}"
            lines.append(
                f"warning: {name} ({what}) is {source} {span} but must be <= {limit} to act within "
                f"{epochs} epochs: every {method} trial trains like the baseline; search or set "
                f"methods.{method}.{param} (or raise --max-epochs)"
            )
        else:
            lines.append(
                f"warning: {name} ({what}) in [{low:g}, {high:g}]: values above {limit} cannot act "
                f"within {epochs} epochs (those trials train like the baseline)"
            )
    return lines
