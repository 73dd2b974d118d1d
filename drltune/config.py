"""TrialConfig: every knob of one training run; what `export` writes and `train` reads.

A leaf: it describes a config and checks each value's type. Filling the defaults and checking
values against the registries (methods, datasets, fusions) is `drltune.resolve`'s job.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from drltune import safe_yaml
from drltune.errors import DrltuneError
from drltune.params import yaml_number

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "step", "cosine")
SELECTIONS = ("val", "test")
MODALITIES = ("both", "audio", "visual")


@dataclass
class TrialConfig:
    """Unset (None) fields take the dataset's defaults, then the global ones in `GLOBAL_DEFAULTS`."""

    dataset: str = "synthetic"
    data_root: str | None = None
    method: str = "baseline"
    fusion: str = "concat"
    epochs: int | None = None
    seed: int = 0
    optimizer: str | None = None
    lr: float | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    lr_schedule: str | None = None
    lr_step: int | None = None
    lr_gamma: float | None = None
    batch_size: int | None = None
    encoder_width: int | None = None
    augment: bool | None = None
    grad_clip: float | None = None
    selection: str = "val"
    modality: str = "both"
    device: str = "auto"
    # CPU threads for torch (None: torch's default). Part of the result on CPU: the same config on
    # another thread count sums floats in another order, so an exact reproduction needs the same.
    threads: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    dataset_params: dict[str, Any] = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> "TrialConfig":
        if not isinstance(data, dict):
            raise DrltuneError(f"{where}: expected a mapping of keys to values, got {type(data).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise DrltuneError(f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}")
        cfg = cls(**{k: v for k, v in data.items() if v is not None})
        cfg.check_types()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def check_types(self) -> None:
        """Cheap type checks that name the key; value ranges are checked by `drltune.resolve`."""
        spec = {
            "dataset": str, "method": str, "fusion": str, "epochs": int, "seed": int,
            "optimizer": str, "lr": float, "momentum": float, "weight_decay": float,
            "lr_schedule": str, "lr_step": int, "lr_gamma": float, "batch_size": int,
            "encoder_width": int, "augment": bool, "grad_clip": float, "selection": str,
            "modality": str, "device": str, "params": dict, "dataset_params": dict,
            "data_root": str, "threads": int,
        }
        for key, typ in spec.items():
            value = getattr(self, key)
            if value is None:
                continue
            if typ in (int, float) and isinstance(value, str):
                value = yaml_number(value)
                setattr(self, key, value)
            ok = isinstance(value, typ) and not (typ in (int, float) and isinstance(value, bool))
            if typ is float and isinstance(value, int) and not isinstance(value, bool):
                setattr(self, key, float(value))
                ok = True
            if typ is int and isinstance(value, float) and value.is_integer():
                setattr(self, key, int(value))
                ok = True
            if not ok:
                hint = (" (one run takes one value; a search space tries several with "
                        f"{key}: {{choices: [...]}})" if isinstance(value, list) else "")
                raise DrltuneError(f"{key}: expected {typ.__name__}, got {value!r}{hint}")
            if typ is float and not math.isfinite(getattr(self, key)):
                raise DrltuneError(f"{key}: must be finite, got {value!r}")

    # ---- YAML ---------------------------------------------------------------------
    @classmethod
    def load_yaml(cls, path: str | Path) -> list["TrialConfig"]:
        """All configs of a (possibly multi-document) YAML file; the `meta` key is kept aside."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            docs = [d for d in safe_yaml.load_all(text) if d is not None]
        except FileNotFoundError:
            raise DrltuneError(f"config file not found: {path}") from None
        except UnicodeDecodeError as exc:
            raise DrltuneError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from None
        except (yaml.YAMLError, RecursionError) as exc:
            raise DrltuneError(f"{path}: not valid YAML: {safe_yaml.describe(exc)}") from None
        except OSError as exc:
            raise DrltuneError(f"cannot read {path}: {exc.strerror}") from None
        if not docs:
            raise DrltuneError(f"{path}: empty config file")
        configs = []
        for i, doc in enumerate(docs):
            if isinstance(doc, dict):
                doc = {k: v for k, v in doc.items() if k != "meta"}
            configs.append(cls.from_dict(doc, where=f"{path}" + (f" (document {i + 1})" if len(docs) > 1 else "")))
        return configs

    def to_yaml(self, meta: dict[str, Any] | None = None) -> str:
        data = self.to_dict()
        if meta:
            data = {"meta": meta, **data}
        return yaml.safe_dump(data, sort_keys=False)

    # ---- overrides ----------------------------------------------------------------
    def with_overrides(self, assignments: list[str]) -> "TrialConfig":
        """Apply `key=value` strings (`params.alpha=2`, `dataset_params.audio_snr=1`); values are YAML."""
        data = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise DrltuneError(f"--set {item!r}: expected key=value")
            key, raw = item.split("=", 1)
            try:
                value = safe_yaml.load(raw) if raw.strip() else None
            except (yaml.YAMLError, RecursionError):
                value = raw
            parts = key.strip().split(".")
            if len(parts) == 2 and parts[0] in ("params", "dataset_params"):
                data[parts[0]] = {**(data[parts[0]] or {}), parts[1]: value}
            elif len(parts) == 1:
                data[parts[0]] = value
            else:
                raise DrltuneError(f"--set {key!r}: only params.NAME and dataset_params.NAME may be nested")
        return TrialConfig.from_dict(data, where="--set")


GLOBAL_DEFAULTS: dict[str, Any] = {
    "epochs": 30,
    "optimizer": "sgd",
    "lr": 1e-3,
    "momentum": 0.9,
    "weight_decay": 1e-4,
    "lr_schedule": "none",
    "lr_step": 70,
    "lr_gamma": 0.1,
    "batch_size": 64,
    "encoder_width": 64,
    "augment": False,
    "grad_clip": 0.0,
}
