"""Declared parameters: one declaration feeds config validation, search spaces and
`drltune methods`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from drltune.errors import DrltuneError


def yaml_number(value: Any) -> Any:
    """YAML 1.1 reads `1e-3` (no dot) as a string; users mean the number. A numeric string becomes
    its number (an int when written as one); any other value is returned as it is. The one place
    that fix lives: configs, method parameters and search spaces all call it."""
    if not isinstance(value, str):
        return value
    try:
        number = float(value)
    except ValueError:
        return value
    return (
        int(number)
        if number.is_integer() and "." not in value and "e" not in value.lower()
        else number
    )


@dataclass(frozen=True)
class Param:
    """A tunable knob with its default and the range a search may explore.

    `kind` is "float", "int", "bool", "choice" or "str" (free text such as a path; never searched
    unless a space fixes it). `low`/`high` bound the values a config may
    hold; `search` is the narrower range worth searching (docs/methods.md §9; defaults to low/high),
    `log` says it is best searched on a log scale; `is_epoch` marks epoch counts, which a
    search rescales to its epoch budget.
    """

    name: str
    kind: str
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: Sequence[Any] = field(default_factory=tuple)
    is_epoch: bool = False
    search: tuple[float, float] | None = None

    @property
    def search_range(self) -> tuple[float | None, float | None]:
        return self.search if self.search is not None else (self.low, self.high)

    def validate(self, value: Any, where: str) -> Any:
        key = f"{where}.{self.name}" if where else self.name
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise DrltuneError(f"{key}: expected true/false, got {value!r}")
            return value
        if self.kind == "str":
            if not isinstance(value, str):
                raise DrltuneError(f"{key}: expected text, got {value!r}")
            return value
        if self.kind == "choice":
            if value not in self.choices:
                raise DrltuneError(
                    f"{key}: {value!r} is not one of {', '.join(map(str, self.choices))}"
                )
            return value
        value = yaml_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise DrltuneError(f"{key}: expected a number, got {value!r}")
        if self.kind == "int":
            if float(value) != int(value):
                raise DrltuneError(f"{key}: expected an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise DrltuneError(f"{key}: must be finite, got {value!r}")
        if self.low is not None and value < self.low:
            raise DrltuneError(f"{key}: {value} is below the minimum {self.low}")
        if self.high is not None and value > self.high:
            raise DrltuneError(f"{key}: {value} is above the maximum {self.high}")
        return value

    def describe(self) -> str:
        if self.kind == "choice":
            rng = "{" + ", ".join(map(str, self.choices)) + "}"
        elif self.kind == "bool":
            rng = "{true, false}"
        elif self.kind == "str":
            rng = "(text)"
        else:
            rng = f"[{self.low}, {self.high}]"
            if self.search is not None:
                rng += f" search [{self.search[0]}, {self.search[1]}]"
            rng += " log" if self.log else ""
        return f"{self.name}={self.default!r} {rng}: {self.help}"


def resolve_params(
    declared: Sequence[Param], given: dict[str, Any] | None, where: str
) -> dict[str, Any]:
    """Defaults overlaid with `given`; unknown keys and bad values raise a one-line error."""
    given = dict(given or {})
    by_name = {p.name: p for p in declared}
    unknown = sorted(set(given) - set(by_name))
    if unknown:
        valid = ", ".join(sorted(by_name)) or "none"
        raise DrltuneError(f"{where}: unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
    return {
        p.name: p.validate(given[p.name], where) if p.name in given else p.default for p in declared
    }
