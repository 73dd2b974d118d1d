"""Running a compare: the searches (one per method, `run_search`), then the verification runs
(`verify.execute`), in one Ray instance; everything lands in the one storage as it finishes."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna

from drltune import record, safe_yaml
from drltune.compare.leaderboard import leaderboard
from drltune.compare.plan import (
    common_seeds,
    method_space_text,
    study_name,
    verification_runs,
)
from drltune.declarations import check_names
from drltune.errors import DrltuneError
from drltune.search.runner import DEFAULT_SPACE, SearchSpec
from drltune.search.space_file import parse_space
from drltune.search.storage_url import DEFAULT_URL


@dataclass
class CompareSpec:
    """Everything `drltune compare` was asked for; the search settings are every method's."""

    methods: list[str]
    trials_per_method: int
    seeds: int = 3
    dataset: str = "synthetic"
    data_root: str | None = None
    space_file: Path = DEFAULT_SPACE
    prefix: str | None = None
    storage: str = DEFAULT_URL  # resolved by the command (storage_url.py)
    sampler: str = "tpe"
    pruner: str = "median"
    max_epochs: int | None = None
    concurrent: int = 2
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None
    address: str | None = None
    seed: int = 0
    published: str | None = "papers"  # papers | balancebenchmark | None (no reference rows)
    overrides: list[str] = field(default_factory=list)
    command: str = ""

    @property
    def name(self) -> str:
        return self.prefix or f"compare-{self.dataset}"

    def search_spec(self, method: str, space_file: Path) -> SearchSpec:
        return SearchSpec(
            dataset=self.dataset,
            data_root=self.data_root,
            space_file=space_file,
            trials=self.trials_per_method,
            study_name=study_name(self.name, method),
            storage=self.storage,
            sampler=self.sampler,
            pruner=self.pruner,
            max_epochs=self.max_epochs,
            concurrent=self.concurrent,
            cpus_per_trial=self.cpus_per_trial,
            gpus_per_trial=self.gpus_per_trial,
            address=self.address,
            seed=self.seed,
            overrides=list(self.overrides),
            command=self.command,
        )


def run_compare(spec: CompareSpec, echo: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Search each method, verify each best trial and its published config on common fresh
    seeds (only what is not stored yet), and return the leaderboard rows."""
    from drltune.published import published
    from drltune.search.ray_start import init_ray, quiet_ray_env
    from drltune.search.runner import check_budget

    check_names("method", spec.methods, "--methods")
    entries = published(spec.published) if spec.published else {}
    max_epochs = check_budget(spec.search_spec(spec.methods[0], spec.space_file))
    spaces = {m: method_space_text(spec.space_file, m) for m in spec.methods}
    for text in spaces.values():  # a bad space or method block fails now, before Ray starts
        parse_space(safe_yaml.load(text), max_epochs, path=Path(spec.space_file), text=text)
    quiet_ray_env()
    import ray

    started = not ray.is_initialized()
    if started:
        init_ray(ray, spec.address, spec.concurrent, spec.cpus_per_trial or 1)
    try:
        studies = _searches(spec, spaces, max_epochs, echo)
        return _verify(spec, studies, entries, max_epochs, echo)
    finally:
        if started:
            ray.shutdown()


def _searches(
    spec: CompareSpec, spaces: dict[str, str], max_epochs: int, echo: Callable[[str], None]
) -> dict[str, optuna.Study]:
    from drltune.search.optuna_private import backend_of
    from drltune.search.runner import run_search

    studies: dict[str, optuna.Study] = {}
    with tempfile.TemporaryDirectory(prefix="drltune-compare-") as folder:
        for i, method in enumerate(spec.methods, 1):
            path = Path(folder) / f"{method}.yaml"  # the space's text is stored in the study itself
            path.write_text(spaces[method], encoding="utf-8")
            echo(
                f"\n== {spec.name}: search {i}/{len(spec.methods)}, {method}: "
                f"{spec.trials_per_method} trials x {max_epochs} epochs"
            )
            opened = (
                backend_of(next(iter(studies.values()))) if studies else None
            )  # the storage opens once
            study = run_search(spec.search_spec(method, path), echo=echo, storage=opened)
            if study.user_attrs.get(record.COMPARE) != spec.name:
                study.set_user_attr(record.COMPARE, spec.name)
            studies[method] = study
    return studies


def _verify(
    spec: CompareSpec,
    studies: dict[str, optuna.Study],
    entries: dict[str, Any],
    max_epochs: int,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    from drltune.explore.export import select_trials
    from drltune.verify import execute, stored_runs

    seeds = common_seeds(list(studies.values()), spec.seeds)
    best, failed = {}, 0
    for method, study in studies.items():
        try:
            (top,) = select_trials(study, 1, by_race=False)
        except DrltuneError as exc:
            echo(f"note: {method}: not verified: {exc}")
            continue
        best[method] = top.number
        runs = verification_runs(study, top, seeds, entries.get(method), max_epochs, spec.overrides)
        known = set(study.user_attrs.get(record.VERIFY_SEEDS, []))
        study.set_user_attr(record.VERIFY_SEEDS, sorted(known | set(seeds)))
        if study.user_attrs.get(record.COMPARE_SEEDS) != seeds:
            study.set_user_attr(record.COMPARE_SEEDS, seeds)
        done = stored_runs(study)
        todo = [r for r in runs if r.key not in done]
        echo(
            f"\n== {spec.name}: verify {method}, trial {top.number} (val_acc {top.value:.4f}), "
            f"seeds {seeds}" + ("" if method in entries else " (no published config)")
        )
        echo(f"   {len(runs)} runs: {len(runs) - len(todo)} already stored, {len(todo)} to train")
        if todo:
            failed += execute(
                study,
                todo,
                spec.concurrent,
                spec.cpus_per_trial,
                spec.gpus_per_trial,
                spec.address,
                echo,
            )
    if failed:
        raise DrltuneError(
            f"{failed} verification run(s) failed (see above); run the same command again to retry "
            "them"
        )
    return leaderboard({m: studies[m] for m in best}, best, seeds)
