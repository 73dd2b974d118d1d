"""What a compare runs: one space per method, the study names, the common fresh seeds, the
verification runs (the best trial's config and the published config on each seed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import yaml

from drltune import record, safe_yaml
from drltune.config import EPOCH_KEYS, TrialConfig
from drltune.errors import DrltuneError
from drltune.published import Published, scale_epochs
from drltune.verify import OWN, Run

PUBLISHED_LABEL = (
    "ref-published"  # verify's reference label: summarize_runs pairs it with the trial's own runs
)


def study_name(prefix: str, method: str) -> str:
    return f"{prefix}-{method}"


def method_space_text(space_file: Path, method: str) -> str:
    """The space file with `methods:` narrowed to `method` (its block there, else its declared
    ranges): the shared knobs stay exactly the file's, so every method searches them alike."""
    try:
        data = safe_yaml.load(Path(space_file).read_text(encoding="utf-8"))
    except OSError as exc:
        raise DrltuneError(f"cannot read the search space {space_file}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise DrltuneError(f"{space_file}: not valid YAML: {safe_yaml.describe(exc)}") from None
    if not isinstance(data, dict):
        raise DrltuneError(f"{space_file}: expected a mapping")
    blocks = data.get("methods") or {}
    data = {**data, "methods": {method: blocks.get(method, "declared")}}
    return yaml.safe_dump(data, sort_keys=False)


def common_seeds(studies: list[optuna.Study], n: int) -> list[int]:
    """`n` seeds that no trial of any of the studies trained with, the same for every method (the
    comparisons pair runs by seed); seeds an earlier run chose come first."""
    used: set[int] = set()
    for study in studies:
        used |= {
            int(t.user_attrs[record.CONFIG]["seed"])
            for t in study.get_trials(deepcopy=False)
            if "seed" in t.user_attrs.get(record.CONFIG, {})
        }
    earlier = studies[0].user_attrs.get(record.VERIFY_SEEDS, []) if studies else []
    chosen = [s for s in earlier if s not in used][:n]
    candidate = max(used, default=0) + 1
    while len(chosen) < n:
        if candidate not in used and candidate not in chosen:
            chosen.append(candidate)
        candidate += 1
    return chosen


def published_config(
    entry: Published, tuned: TrialConfig, max_epochs: int, overrides: list[str]
) -> TrialConfig:
    """The published configuration on the compare's data and model: the tuned config's dataset,
    data and fixed settings, the published keys over them, --set over those; `max_epochs` epochs,
    the published epoch-valued settings scaled by max_epochs / published epochs."""
    values = dict(entry.values)
    epochs = values.pop("epochs", None)
    factor = max_epochs / epochs if epochs else 1.0
    for key in EPOCH_KEYS & set(values):
        values[key] = scale_epochs(values[key], factor, max_epochs)
    from drltune.methods import METHODS

    declared = {p.name: p for p in METHODS.get(entry.method).params}
    params = {
        k: scale_epochs(v, factor, max_epochs) if declared[k].is_epoch else v
        for k, v in (values.pop("params", None) or {}).items()
    }
    base = TrialConfig(
        dataset=tuned.dataset,
        data_root=tuned.data_root,
        encoder_width=tuned.encoder_width,
        threads=tuned.threads,
        device=tuned.device,
        dataset_params=dict(tuned.dataset_params),
    )
    cfg = base.replace(**values, method=entry.method, params=params, epochs=max_epochs)
    return cfg.with_overrides(overrides)


def verification_runs(
    study: optuna.Study,
    best: Any,
    seeds: list[int],
    entry: Published | None,
    max_epochs: int,
    overrides: list[str],
) -> list[Run]:
    """The best trial's own config on every seed, then (when published) the published config."""
    from drltune.explore.export import trial_config

    cfg = trial_config(study, best)
    runs = [Run(best.number, OWN, seed, cfg.replace(seed=seed)) for seed in seeds]
    if entry is not None:
        pub = published_config(entry, cfg, max_epochs, overrides)
        runs += [Run(best.number, PUBLISHED_LABEL, seed, pub.replace(seed=seed)) for seed in seeds]
    return runs
