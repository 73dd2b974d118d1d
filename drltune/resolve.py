"""Resolution: a TrialConfig with its defaults filled in and every value checked against the
registries.

It sits above the registries (datasets, methods, fusions), which `config.py` (a leaf) must not
import: a method's own checks may read a config, and the config stays free of what it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drltune import record
from drltune.config import GLOBAL_DEFAULTS, KNOBS, SETTINGS, TrialConfig
from drltune.data import DATASETS
from drltune.errors import DrltuneError
from drltune.methods import METHODS
from drltune.models.fusion import FUSIONS
from drltune.params import Param, resolve_params

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial


@dataclass(frozen=True)
class ResolvedConfig:
    """A TrialConfig with every default filled in and every value checked."""

    config: TrialConfig
    params: dict[str, Any]
    dataset_params: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.config, name)


def check_range(knob: Param, value: Any) -> None:
    """A declared TrialConfig value within its choices or [low, high] (lr: above 0); None is
    unset."""
    key = knob.name
    if value is None or knob.kind == "bool":
        return
    if knob.kind == "choice":
        if value not in knob.choices:
            raise DrltuneError(f"{key}: {value!r} is not one of {', '.join(knob.choices)}")
    elif knob.kind == "int":
        if not knob.low <= value <= knob.high:
            raise DrltuneError(f"{key}: {value} is outside [{knob.low}, {knob.high}]")
    elif not knob.low <= value <= knob.high or (key == "lr" and value <= 0):
        raise DrltuneError(f"{key}: {value} is outside the valid range ({knob.low}, {knob.high}]")


def resolve(cfg: TrialConfig) -> ResolvedConfig:
    """Fill defaults (dataset, then global) and validate every value, naming the bad key."""
    cfg.check_types()
    dataset = DATASETS.get(cfg.dataset)
    method = METHODS.get(cfg.method)
    FUSIONS.get(cfg.fusion)
    filled = cfg.to_dict()
    for key, default in {**GLOBAL_DEFAULTS, **dataset.defaults}.items():
        if filled.get(key) is None:
            filled[key] = default
    out = TrialConfig(**filled)
    out.check_types()
    for knob in (*KNOBS, *SETTINGS):
        check_range(knob, getattr(out, knob.name))
    if out.device not in ("auto", "cpu") and not out.device.startswith("cuda"):
        raise DrltuneError(f"device: {out.device!r} must be auto, cpu or cuda[:N]")
    if out.deterministic and out.cudnn_benchmark:
        raise DrltuneError(
            "cudnn_benchmark: cannot be on with deterministic (cuDNN's timed choice of kernels "
            "may pick a non-deterministic one); turn one off"
        )
    params = resolve_params(
        method.params, {**dataset.method_defaults.get(out.method, {}), **out.params}, where="params"
    )
    method.check(params, out)
    dataset_params = resolve_params(dataset.params, out.dataset_params, where="dataset_params")
    return ResolvedConfig(config=out, params=params, dataset_params=dataset_params)


def trial_config(study: optuna.Study, trial: FrozenTrial) -> TrialConfig:
    """A stored trial's config, resolved and written out whole (what `export` writes, `verify`
    re-trains)."""
    data = trial.user_attrs.get(record.CONFIG)
    if data is None:
        raise DrltuneError(
            f"trial {trial.number} of study {study.study_name!r} ({trial.state.name}) "
            "has no stored config"
        )
    cfg = resolve(TrialConfig.from_dict(data, where=f"trial {trial.number}'s stored config"))
    # Every default written out, so a later change of a default cannot change what this file trains.
    return cfg.config.replace(params=cfg.params, dataset_params=cfg.dataset_params)
