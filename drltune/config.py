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
from drltune.params import Param, yaml_number

OPTIMIZERS = ("sgd", "adam", "adamw")
LR_SCHEDULES = ("none", "step", "cosine")
SELECTIONS = ("val", "test")
MODALITIES = ("both", "audio", "visual")

# The training knobs, declared like method parameters. Unset (None) in a TrialConfig, a knob takes
# the dataset's default, then `default` here. This one declaration drives the type checks below,
# the defaults and range checks of `drltune.resolve`, the value types and epoch scaling of search
# spaces, and the listing of `drltune config` and `drltune train --help`.
KNOBS: tuple[Param, ...] = (
    Param("epochs", "int", 30, "epochs to train", 1, 100_000),
    Param("optimizer", "choice", "sgd", "optimiser", choices=OPTIMIZERS),
    Param("lr", "float", 1e-3, "learning rate (above 0)", 0.0, 10.0, log=True),
    Param("momentum", "float", 0.9, "SGD momentum", 0.0, 1.0),
    Param("weight_decay", "float", 1e-4, "weight decay", 0.0, 1.0),
    Param("lr_schedule", "choice", "none", "learning-rate schedule", choices=LR_SCHEDULES),
    Param("lr_step", "int", 70, "step schedule: epochs between decays", 1, 100_000, is_epoch=True),
    Param("lr_gamma", "float", 0.1, "step schedule: decay factor", 0.0, 1.0),
    Param("batch_size", "int", 64, "training batch size", 1, 65_536),
    Param("encoder_width", "int", 64, "ResNet-18 base width (64 = the papers')", 1, 4096),
    Param("augment", "bool", False, "random resized crop and flip of training frames"),
    Param("grad_clip", "float", 0.0, "clip the gradient norm to this (0: no clipping)", 0.0, 1e6),
)
EPOCH_KEYS = frozenset(
    p.name for p in KNOBS if p.is_epoch
)  # TrialConfig keys counted in epochs (e.g. lr_step)
# The other checked settings; their defaults are the dataclass's (threads None: torch's default).
SETTINGS: tuple[Param, ...] = (
    Param(
        "seed",
        "int",
        0,
        "seed of the trial's initialisation, shuffling and augmentation",
        0,
        2**32 - 1,
    ),
    Param(
        "selection",
        "choice",
        "val",
        "split the best epoch is selected on (test: the papers' optimistic way)",
        choices=SELECTIONS,
    ),
    Param(
        "modality",
        "choice",
        "both",
        "both, or one modality alone (a unimodal reference)",
        choices=MODALITIES,
    ),
    Param("threads", "int", None, "CPU threads for torch (a CPU result depends on them)", 1, 1024),
    # GPU settings, off when unset: neither speed-up is measured better on our models yet.
    Param(
        "cudnn_benchmark",
        "bool",
        None,
        "GPU: cuDNN times kernels per input shape (not reproducible)",
    ),
    Param("channels_last", "bool", None, "GPU: convolutions in channels-last memory format"),
    Param(
        "deterministic",
        "bool",
        None,
        "GPU: deterministic kernels only (torch, cuDNN, cuBLAS); slower",
    ),
)
GLOBAL_DEFAULTS: dict[str, Any] = {p.name: p.default for p in KNOBS}
_KIND_TYPES = {"int": int, "float": float, "bool": bool, "choice": str}
# Every TrialConfig key's type: the declared ones' from their kind, then the names and mappings.
FIELD_TYPES: dict[str, type] = {
    **{p.name: _KIND_TYPES[p.kind] for p in (*KNOBS, *SETTINGS)},
    "dataset": str,
    "method": str,
    "fusion": str,
    "device": str,
    "data_root": str,
    "params": dict,
    "dataset_params": dict,
}


@dataclass
class TrialConfig:
    """Unset (None) knobs take the dataset's defaults, then the ones declared in `KNOBS`."""

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
    cudnn_benchmark: bool | None = None
    channels_last: bool | None = None
    deterministic: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    dataset_params: dict[str, Any] = field(default_factory=dict)

    # ---- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any, where: str = "config") -> "TrialConfig":
        if not isinstance(data, dict):
            raise DrltuneError(
                f"{where}: expected a mapping of keys to values, got {type(data).__name__}"
            )
        names = {f.name for f in fields(cls)}
        unknown = sorted(str(k) for k in data if k not in names)
        if unknown:
            raise DrltuneError(
                f"{where}: unknown key(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}"
            )
        cfg = cls(**{k: v for k, v in data.items() if v is not None})
        cfg.check_types()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "TrialConfig":
        return TrialConfig.from_dict({**self.to_dict(), **changes})

    def check_types(self) -> None:
        """Cheap type checks that name the key; value ranges are checked by `drltune.resolve`."""
        for key, typ in FIELD_TYPES.items():
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
                hint = (
                    " (one run takes one value; a search space tries several with "
                    f"{key}: {{choices: [...]}})"
                    if isinstance(value, list)
                    else ""
                )
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
            raise DrltuneError(
                f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})"
            ) from None
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
            configs.append(
                cls.from_dict(
                    doc, where=f"{path}" + (f" (document {i + 1})" if len(docs) > 1 else "")
                )
            )
        return configs

    def to_yaml(self, meta: dict[str, Any] | None = None) -> str:
        data = self.to_dict()
        if meta:
            data = {"meta": meta, **data}
        return yaml.safe_dump(data, sort_keys=False)

    # ---- overrides ----------------------------------------------------------------
    def with_overrides(self, assignments: list[str]) -> "TrialConfig":
        """Apply `key=value` strings (`params.alpha=2`, `dataset_params.audio_snr=1`); values are
        YAML."""
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
                raise DrltuneError(
                    f"--set {key!r}: only params.NAME and dataset_params.NAME may be nested"
                )
        return TrialConfig.from_dict(data, where="--set")
