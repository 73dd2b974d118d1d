"""Resolution: a TrialConfig with its defaults filled in and every value checked against the registries.

It sits above the registries (datasets, methods, fusions), which `config.py` (a leaf) must not
import: a method's own checks may read a config, and the config stays free of what it names.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from drltune.config import GLOBAL_DEFAULTS, LR_SCHEDULES, MODALITIES, OPTIMIZERS, SELECTIONS, TrialConfig
from drltune.data import DATASETS
from drltune.errors import DrltuneError
from drltune.methods import METHODS
from drltune.models.fusion import FUSIONS
from drltune.params import resolve_params


@dataclass(frozen=True)
class ResolvedConfig:
    """A TrialConfig with every default filled in and every value checked."""

    config: TrialConfig
    params: dict[str, Any]
    dataset_params: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.config, name)


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
    for key, allowed in (("optimizer", OPTIMIZERS), ("lr_schedule", LR_SCHEDULES),
                         ("selection", SELECTIONS), ("modality", MODALITIES)):
        if getattr(out, key) not in allowed:
            raise DrltuneError(f"{key}: {getattr(out, key)!r} is not one of {', '.join(allowed)}")
    positive = {"epochs": (1, 100_000), "batch_size": (1, 65_536), "encoder_width": (1, 4096),
                "lr_step": (1, 100_000), "seed": (0, 2**32 - 1)}
    for key, (lo, hi) in positive.items():
        if not lo <= getattr(out, key) <= hi:
            raise DrltuneError(f"{key}: {getattr(out, key)} is outside [{lo}, {hi}]")
    for key, (lo, hi) in {"lr": (0.0, 10.0), "momentum": (0.0, 1.0), "weight_decay": (0.0, 1.0),
                          "lr_gamma": (0.0, 1.0), "grad_clip": (0.0, 1e6)}.items():
        if not lo <= getattr(out, key) <= hi or (key == "lr" and out.lr <= 0):
            raise DrltuneError(f"{key}: {getattr(out, key)} is outside the valid range ({lo}, {hi}]")
    if out.threads is not None and not 1 <= out.threads <= 1024:
        raise DrltuneError(f"threads: {out.threads} is outside [1, 1024]")
    if out.device not in ("auto", "cpu") and not out.device.startswith("cuda"):
        raise DrltuneError(f"device: {out.device!r} must be auto, cpu or cuda[:N]")
    params = resolve_params(method.params, {**dataset.method_defaults.get(out.method, {}), **out.params},
                            where="params")
    method.check(params, out)
    dataset_params = resolve_params(dataset.params, out.dataset_params, where="dataset_params")
    return ResolvedConfig(config=out, params=params, dataset_params=dataset_params)
