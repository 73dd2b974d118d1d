"""Search space files: read and check the YAML, fit its epoch counts to the budget, build a
SearchSpace.

Every mistake in a file is one DrltuneError line that names the file and the key.

File format (documented for users at the top of search_spaces/default.yaml):

    epochs: 90            # the epoch budget the epoch-valued numbers below were written for
    fixed: {KEY: VALUE}   # TrialConfig keys every trial gets, not searched
    space:                # TrialConfig keys that are searched
                          # (lr, batch_size, optimizer, fusion, ...)
      KEY: SPEC
    methods:              # the categorical `method`; a block holds that method's parameters
      NAME: {PARAM: SPEC} # or `defaults` / {} (declared defaults), or `declared` (declared ranges)

SPEC is a scalar (a fixed value), `{choices: [...]}`, `{low, high, log?, step?}`, or, for a
method parameter, `declared` (the range the method declares).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import yaml

from drltune import safe_yaml
from drltune.config import EPOCH_KEYS, FIELD_TYPES
from drltune.errors import DrltuneError
from drltune.params import Param, yaml_number
from drltune.search.space import Dimension, SearchSpace

FILE_KEYS = ("epochs", "fixed", "space", "methods")
NOT_SEARCHABLE = {"dataset", "data_root", "method", "epochs", "seed", "params", "dataset_params"}
NOT_FIXABLE = {"dataset", "data_root", "method", "epochs", "seed", "params"}


def load_space(path: str | Path, max_epochs: int) -> SearchSpace:
    """Read and check a space file; epoch-valued numbers are scaled to `max_epochs`."""
    path = Path(path)
    text, data = read_space(path)
    try:
        return parse_space(data, max_epochs, path=path, text=text)
    except DrltuneError as exc:
        raise DrltuneError(f"{path}: {exc}") from None


def read_space(path: Path) -> tuple[str, dict[str, Any]]:
    """A space file's text and mapping, checked as far as needs neither the epoch budget nor the
    methods (both load torch): readable, YAML, known top-level keys. `drltune search` calls it
    first."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DrltuneError(f"search space file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DrltuneError(
            f"cannot read search space {path}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    try:
        data = safe_yaml.load(text)
    except (yaml.YAMLError, RecursionError) as exc:
        raise DrltuneError(f"{path}: not valid YAML: {safe_yaml.describe(exc)}") from None
    try:
        _check_file_keys(data)
    except DrltuneError as exc:
        raise DrltuneError(f"{path}: {exc}") from None
    return text, data


def _check_file_keys(data: Any) -> None:
    if not isinstance(data, dict):
        raise DrltuneError("expected a mapping with keys " + ", ".join(FILE_KEYS))
    unknown = sorted(str(k) for k in data if k not in FILE_KEYS)
    if unknown:
        raise DrltuneError(f"unknown key(s) {', '.join(unknown)}; valid: {', '.join(FILE_KEYS)}")


def parse_space(
    data: Any, max_epochs: int, path: Path = Path("<space>"), text: str = ""
) -> SearchSpace:
    """load_space after the reading: `data` is the file's YAML (compare and tests build it in
    memory)."""
    _check_file_keys(data)
    epochs = data.get("epochs")
    if epochs is not None and (
        isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1
    ):
        raise DrltuneError(f"epochs: expected a positive integer, got {epochs!r}")
    scaler = _EpochScaler(epochs, max_epochs)
    fixed = _mapping(data.get("fixed"), "fixed")
    for key in fixed:
        if key in NOT_FIXABLE or key not in _CONFIG_TYPES:
            raise DrltuneError(
                f"fixed.{key}: not a TrialConfig key that a space may fix "
                f"(valid: {', '.join(sorted(set(_CONFIG_TYPES) - NOT_FIXABLE))})"
            )
        if isinstance(fixed[key], list):
            raise DrltuneError(
                f"fixed.{key}: a list fixes no single value; to search these values move it "
                f"under space: as {key}: {{choices: [{', '.join(map(str, fixed[key]))}]}}"
            )
        if key in EPOCH_KEYS:
            fixed[key] = scaler.value(f"fixed.{key}", fixed[key])
    top = []
    for key, spec in _mapping(data.get("space"), "space").items():
        if key in NOT_SEARCHABLE or key not in _CONFIG_TYPES:
            raise DrltuneError(
                f"space.{key}: not a searchable TrialConfig key "
                f"(valid: {', '.join(sorted(set(_CONFIG_TYPES) - NOT_SEARCHABLE))})"
            )
        if key in fixed:
            raise DrltuneError(f"space.{key}: also given under fixed; keep one")
        dim = _dimension(key, spec, _CONFIG_TYPES[key], where=f"space.{key}")
        top.append(scaler.dimension(dim, f"space.{key}") if key in EPOCH_KEYS else dim)
    methods = _methods(data.get("methods"), scaler)
    return SearchSpace(
        path=path,
        text=text,
        epochs=epochs,
        fixed=fixed,
        top=top,
        methods=methods,
        notes=scaler.notes,
    )


# ---- parsing helpers -----------------------------------------------------------------------------
# TrialConfig key -> "int" | "float" | "bool" | "str" | "dict", from the config's own declaration.
_CONFIG_TYPES = {key: typ.__name__ for key, typ in FIELD_TYPES.items()}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DrltuneError(f"{where}: expected a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _number(value: Any, kind: str, where: str) -> float | int:
    """A number (a numeric string too: params.yaml_number), else a one-line error."""
    value = yaml_number(value)
    if isinstance(value, str):
        raise DrltuneError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DrltuneError(f"{where}: expected a finite number, got {value!r}")
    if kind == "int":
        if float(value) != int(value):
            raise DrltuneError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    return float(value)


def _scalar(value: Any, kind: str, where: str) -> Any:
    if kind in ("int", "float"):
        return _number(value, kind, where)
    if kind == "bool":
        if not isinstance(value, bool):
            raise DrltuneError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind == "str":
        if not isinstance(value, str):
            raise DrltuneError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(value, (dict, list)):
        raise DrltuneError(f"{where}: expected a single value, got {type(value).__name__}")
    return value  # a "choice" parameter: its own validation names the allowed values


def _dimension(name: str, spec: Any, kind: str, where: str) -> Dimension:
    """Parse one SPEC; `kind` is the value type ("int", "float", "bool", "str" or "choice")."""
    if isinstance(spec, list):
        shown = ", ".join(map(str, spec))
        raise DrltuneError(
            f"{where}: a bare list is not a search spec; to search these values write "
            f"{{choices: [{shown}]}}"
        )
    if not isinstance(spec, dict):
        return Dimension(name, "fixed", value=_scalar(spec, kind, where))
    keys = set(spec)
    if "choices" in keys:
        if keys != {"choices"}:
            raise DrltuneError(
                f"{where}: `choices` cannot be combined with "
                f"{', '.join(sorted(keys - {'choices'}))}"
            )
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise DrltuneError(f"{where}.choices: expected a non-empty list")
        values = tuple(_scalar(c, kind, f"{where}.choices") for c in choices)
        if len(set(map(repr, values))) != len(values):
            raise DrltuneError(f"{where}.choices: repeated values")
        return Dimension(name, "categorical", choices=values)
    allowed = {"low", "high", "log", "step"}
    if not keys <= allowed or not {"low", "high"} <= keys:
        bad = sorted(keys - allowed) or ["low/high missing"]
        raise DrltuneError(
            f"{where}: a range needs low and high (optional log, step); got {', '.join(bad)}"
        )
    if kind not in ("int", "float"):
        raise DrltuneError(f"{where}: a {kind} value cannot take a low/high range; use choices")
    low = _number(spec["low"], kind, f"{where}.low")
    high = _number(spec["high"], kind, f"{where}.high")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise DrltuneError(f"{where}.log: expected true or false, got {log!r}")
    step = None if spec.get("step") is None else _number(spec["step"], kind, f"{where}.step")
    if low > high:
        raise DrltuneError(f"{where}: low {low} is above high {high}")
    if log and low <= 0:
        raise DrltuneError(f"{where}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise DrltuneError(f"{where}: log and step cannot be combined")
    if step is not None and step <= 0:
        raise DrltuneError(f"{where}.step: must be positive, got {step}")
    return Dimension(name, kind, low=low, high=high, step=step, log=log)


def _methods(value: Any, scaler: "_EpochScaler") -> dict[str, list[Dimension]]:
    from drltune.methods import METHODS

    blocks = _mapping(value, "methods")
    if not blocks:
        raise DrltuneError("methods: name at least one method (e.g. `baseline: {}`)")
    out = {}
    for name, block in blocks.items():
        where = f"methods.{name}"
        if name not in METHODS:
            raise DrltuneError(f"{where}: unknown method; valid: {', '.join(METHODS.names())}")
        declared = {p.name: p for p in METHODS.get(name).params}
        if block in ("defaults", None):
            block = {}
        elif block == "declared":
            block = {p.name: "declared" for p in declared.values() if p.kind in ("int", "float")}
        block = _mapping(block, where)
        unknown = sorted(set(block) - set(declared))
        if unknown:
            raise DrltuneError(
                f"{where}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(declared) or 'none'}"
            )
        dims = []
        for pname, spec in block.items():
            param, pwhere = declared[pname], f"{where}.{pname}"
            dim = _param_dimension(f"{name}.{pname}", param, spec, pwhere)
            if param.is_epoch:
                dim = scaler.dimension(dim, pwhere)
            _check_against(param, dim, pwhere)
            dims.append(dim)
        out[name] = dims
    return out


def _param_dimension(name: str, param: Param, spec: Any, where: str) -> Dimension:
    if spec == "declared":
        if param.kind == "bool":
            return Dimension(name, "categorical", choices=(False, True))
        if param.kind == "choice":
            return Dimension(name, "categorical", choices=tuple(param.choices))
        low, high = param.search_range
        if low is None or high is None:
            raise DrltuneError(f"{where}: declares no range; give low and high")
        if param.log and low <= 0:
            raise DrltuneError(
                f"{where}: the declared range [{low}, {high}] is log-scaled "
                "but starts at 0; give low > 0 and high"
            )
        return Dimension(name, param.kind, low=low, high=high, log=param.log)
    return _dimension(name, spec, param.kind, where)


def _check_against(param: Param, dim: Dimension, where: str) -> None:
    """Every value a trial could get must pass the method's own validation (names the bad key)."""
    values: Sequence[Any] = {"fixed": (dim.value,), "categorical": dim.choices}.get(
        dim.kind, (dim.low, dim.high)
    )
    for v in values:
        try:
            param.validate(v, "")
        except DrltuneError as exc:
            raise DrltuneError(f"{where}: {str(exc).split(': ', 1)[-1]}") from None


class _EpochScaler:
    """Maps epoch counts written for the space's `epochs` onto the search's `max_epochs`."""

    def __init__(self, space_epochs: int | None, max_epochs: int) -> None:
        self.factor = max_epochs / space_epochs if space_epochs else 1.0
        self.max_epochs = max_epochs
        self.notes: list[str] = []
        clip = f"kept within [1, {max_epochs}] (0 stays 0)"
        self.how = (
            f"scaled x{self.factor:.3g} ({space_epochs} -> {max_epochs} epochs), rounded, {clip}"
            if space_epochs
            else f"{clip}; no `epochs` in the space, so not scaled"
        )

    def scale(self, value: float) -> int:
        """At least 1 epoch, except that 0 ("from the first epoch") stays 0."""
        return int(min(self.max_epochs, max(1 if value > 0 else 0, round(value * self.factor))))

    def value(self, where: str, value: Any) -> int:
        out = self.scale(_number(value, "int", where))
        self.notes.append(f"{where}: {value} -> {out} ({self.how})")
        return out

    def dimension(self, dim: Dimension, where: str) -> Dimension:
        if dim.kind == "fixed":
            return Dimension(dim.name, "fixed", value=self.value(where, dim.value))
        if dim.kind == "categorical":
            scaled = tuple(dict.fromkeys(self.scale(_number(c, "int", where)) for c in dim.choices))
            self.notes.append(f"{where}: {list(dim.choices)} -> {list(scaled)} ({self.how})")
            return Dimension(dim.name, "categorical", choices=scaled)
        assert dim.low is not None and dim.high is not None  # an int or float dimension
        low, high = self.scale(dim.low), self.scale(dim.high)
        step = None if dim.step is None else max(1, round(dim.step * self.factor))
        if step is not None:
            high = low + (high - low) // step * step
        self.notes.append(
            f"{where}: [{dim.low:g}, {dim.high:g}] -> [{low}, {high}]"
            + (f" step {step}" if step else "")
            + f" ({self.how})"
        )
        return Dimension(dim.name, "int", low=low, high=high, step=step, log=dim.log and low > 0)
