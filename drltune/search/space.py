"""The search-space model: a categorical `method` whose own parameters exist only when it is chosen.

A `SearchSpace` (read from a file by drltune.search.space_file) samples one trial's TrialConfig
define-by-run; a method's parameters are named `<method>.<param>` in the Optuna study so that
equal names of two methods never collide.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from drltune.config import TrialConfig
from drltune.errors import DrltuneError

if (
    TYPE_CHECKING
):  # `drltune search` reads a space file before it loads Optuna (space_file.read_space)
    import optuna


@dataclass(frozen=True)
class Dimension:
    """One searched or fixed value: `name` is its Optuna parameter name (`lr`, `dr.alpha`)."""

    name: str
    kind: str  # "fixed", "categorical", "int" or "float"
    value: Any = None
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @property
    def searched(self) -> bool:
        return self.kind != "fixed"

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.kind == "fixed":
            return self.value
        if self.kind == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        assert self.low is not None and self.high is not None  # an int or float dimension has both
        if self.kind == "int":
            return trial.suggest_int(
                self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def describe(self) -> str:
        if self.kind == "fixed":
            return f"{self.name}={self.value!r}"
        if self.kind == "categorical":
            return f"{self.name} in {{{', '.join(map(str, self.choices))}}}"
        extra = " log" if self.log else (f" step {self.step:g}" if self.step else "")
        return f"{self.name} in [{self.low:g}, {self.high:g}]{extra}"


@dataclass
class SearchSpace:
    """A loaded space, already fitted to the search's epoch budget."""

    path: Path
    text: str
    epochs: int | None
    fixed: dict[str, Any]
    top: list[Dimension]
    methods: dict[str, list[Dimension]]
    notes: list[str] = field(default_factory=list)  # what the epoch scaling did, for the output

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run: the TrialConfig keys of one trial, method parameters under `params`."""
        values = {d.name: d.suggest(trial) for d in self.top}
        method = trial.suggest_categorical("method", list(self.methods))
        prefix = f"{method}."
        values["params"] = {d.name[len(prefix) :]: d.suggest(trial) for d in self.methods[method]}
        return {**values, "method": method}

    def config_for(self, trial: optuna.Trial, base: TrialConfig) -> TrialConfig:
        """`base` (dataset, epochs, seed, fixed keys) with this trial's sampled values applied."""
        return TrialConfig.from_dict(
            {**base.to_dict(), **self.sample(trial)}, where=f"trial {trial.number}"
        )

    def check_values(self, base: TrialConfig) -> None:
        """Every choice and range end of a TrialConfig key must be a value a trial can run with
        (e.g. batch_size 0 or optimizer lbfgs is an error now, not a study full of failed
        trials)."""
        from drltune.resolve import resolve

        for d in self.top:
            values = (
                d.choices
                if d.kind == "categorical"
                else (d.low, d.high)
                if d.searched
                else (d.value,)
            )
            for value in values:
                if d.kind == "int":
                    value = int(value)
                try:
                    resolve(base.replace(**{d.name: value}))
                except DrltuneError as exc:
                    raise DrltuneError(
                        f"{self.path}: space.{d.name}: {value!r} cannot be used ({exc})"
                    ) from None
        self.notes.extend(self.inert_warnings(base))

    def inert_warnings(self, base: TrialConfig) -> list[str]:
        """Epoch-valued method settings (searched, fixed or left at the method's default) that
        cannot act within the trials' epochs, e.g. DR's default re-init interval in a 4-epoch
        search."""
        from drltune.epoch_budget import space_warnings
        from drltune.resolve import resolve

        lines = []
        for method, dims in self.methods.items():
            prefix = f"{method}."
            fixed = {d.name[len(prefix) :]: d.value for d in dims if d.kind == "fixed"}
            try:
                defaults = resolve(base.replace(method=method, params=fixed)).params
            except DrltuneError:
                # e.g. a fusion this method cannot run with: check_values / the trials say so
                continue
            ranges = {
                k: (v, v, False)
                for k, v in defaults.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            for d in dims:
                if d.kind in ("int", "float"):
                    assert d.low is not None and d.high is not None
                    ranges[d.name[len(prefix) :]] = (d.low, d.high, True)
                elif d.kind == "categorical" and all(
                    isinstance(c, (int, float)) for c in d.choices
                ):
                    ranges[d.name[len(prefix) :]] = (min(d.choices), max(d.choices), True)
            lines.extend(space_warnings(method, ranges, base.epochs or 1))
        return lines

    def fixed_by(self, overrides: Sequence[str], base: TrialConfig) -> list[str]:
        """Make `--set KEY=VALUE` fix KEY where the space searches it (else a sampled value would
        silently replace it in every trial): a top key, `method`, or `params.NAME` of any method
        that searches NAME. `base` holds the parsed values. Returns one note per fixed key."""
        keys = list(dict.fromkeys(item.split("=", 1)[0].strip() for item in overrides))
        keys.sort(
            key=lambda key: key != "method"
        )  # methods narrowed first: params notes name only those left
        notes = []
        for key in keys:
            if key == "method":
                if base.method not in self.methods:
                    raise DrltuneError(
                        f"--set method={base.method}: not among {self.path}'s methods "
                        f"({', '.join(self.methods)})"
                    )
                self.methods = {base.method: self.methods[base.method]}
                notes.append(f"--set method={base.method}: the only method searched")
            elif key.startswith("params."):
                name = key[len("params.") :]
                searched = [
                    m
                    for m, dims in self.methods.items()
                    if any(d.searched and d.name == f"{m}.{name}" for d in dims)
                ]
                for m in searched:
                    self.methods[m] = [
                        Dimension(d.name, "fixed", value=base.params[name])
                        if d.name == f"{m}.{name}"
                        else d
                        for d in self.methods[m]
                    ]
                if searched:
                    notes.append(
                        f"--set {key}={base.params[name]!r}: fixed for {', '.join(searched)}"
                    )
            elif any(d.searched and d.name == key for d in self.top):
                value = getattr(base, key)
                self.top = [
                    Dimension(key, "fixed", value=value) if d.name == key else d for d in self.top
                ]
                notes.append(f"--set {key}={value!r}: fixed, not searched")
        return notes

    def describe(self) -> list[str]:
        lines = [d.describe() for d in self.top]
        lines.append(f"method in {{{', '.join(self.methods)}}}")
        for name, dims in self.methods.items():
            lines.extend(f"  {d.describe()}" for d in dims)
        return lines
