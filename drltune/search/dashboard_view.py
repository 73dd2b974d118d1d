"""What optuna-dashboard shows of a drltune study, written while the search runs.

optuna-dashboard cuts user attributes at 1,024 characters and labels an unnamed objective
"Objective 0", so the stored attributes alone read badly there. This module adds (never
replaces) what the dashboard renders well:

* the metric name `val_acc` on the study, and a study Note: the settings, the search space as
  YAML, and what a pruned trial's Value means;
* per finished trial, one Note (config, per-modality accuracy, each DR re-init's purities and
  weights) and two artifacts: `history.csv` (every epoch, shown as a table) and
  `learning_curve.svg` (shown inline, re-inits marked);
* study-level plotly figures (best per method, learning curves by method with re-init marks),
  refreshed at most every `refresh_s` seconds and at the end, so their cost stays bounded.

Artifacts live in a folder beside the SQLite file (`studies/artifacts`), which `drltune
dashboard` serves. Writing here must never stop a search: failures become one warning.
"""

from __future__ import annotations

import csv
import io
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.search.curve_svg import curve_svg
from drltune.search.optuna_private import dashboard_note_keys, storage_of, study_id_of
from drltune.search.storage import database_file

METRIC = "val_acc"
ARTIFACTS = "artifacts"
CURVES_PER_METHOD = 3  # the study figure stays small at thousands of trials
PRUNED_VALUE = (
    "A pruned trial's **Value** in this dashboard is its *last* epoch's val_acc (Optuna's rule); "
    "`drltune search` and `drltune explore` rank it by its *best so far*, which its Note states."
)


def artifact_dir(storage_url: str) -> Path:
    """`<folder of the SQLite or journal file>/artifacts`, else `./studies/artifacts` (servers: pass
    --artifact-dir)."""
    db = database_file(storage_url)
    return ((db.parent if db is not None else Path.cwd() / "studies") / ARTIFACTS).resolve()


def _fmt(value: Any, digits: int = 4) -> str:
    return (
        f"{value:.{digits}f}"
        if isinstance(value, (int, float)) and not isinstance(value, bool)
        else "–"
    )


# ---- notes -------------------------------------------------------------------------------------
def study_note(attrs: dict[str, Any]) -> str:
    """Markdown: how the study was made, its space as YAML, and how to read the values."""
    lines = [
        f"## drltune study · dataset `{attrs.get(record.DATASET)}`",
        "",
        _objective_line(attrs.get(record.OBJECTIVE) or [METRIC]),
        "",
        PRUNED_VALUE,
        "",
        "Each trial's Note has its config, per-modality accuracy and DR re-inits; its artifacts "
        "hold the whole per-epoch history (`history.csv`) and its learning curve "
        "(`learning_curve.svg`).",
        "",
        "| setting | value |",
        "|---|---|",
    ]
    for key in (
        record.COMMAND,
        record.MAX_EPOCHS,
        record.SAMPLER,
        record.PRUNER,
        record.SPACE_FILE,
        record.VERSION,
    ):
        if attrs.get(key) is not None:
            lines.append(f"| {key} | `{attrs[key]}` |")
    lines += [
        "",
        "### Search space",
        "",
        "```yaml",
        str(attrs.get(record.SPACE, "")).strip("\n"),
        "```",
    ]
    return "\n".join(lines) + "\n"


def _objective_line(names: list[str]) -> str:
    if names == [METRIC]:
        return (
            f"Objective **{METRIC}**: the best validation accuracy of a trial (its selected epoch)."
        )
    if len(names) == 1:
        return f"Objective **{names[0]}**, at each trial's selected epoch (its best val_acc)."
    return (
        f"Objectives **{' and '.join(names)}** ("
        + ", ".join(f"{n} {'minimised' if n == 'modality_gap' else 'maximised'}" for n in names)
        + "), at each trial's selected epoch: the Pareto front (History and Pareto-front plots) "
        "holds the trials that no other beats on both. A two-objective study is never pruned."
    )


def _config_yaml(config: dict[str, Any]) -> str:
    import yaml

    shown = {k: v for k, v in config.items() if v not in (None, {}, [])}
    return yaml.safe_dump(shown, sort_keys=False, default_flow_style=None).rstrip()


def trial_note(
    trial: FrozenTrial, study_name: str = "NAME", metric_names: list[str] | None = None
) -> str:
    """Markdown for one finished trial: outcome, accuracy table, the method's own rows, config."""
    from drltune.methods import METHODS  # torch: only where a Note is written

    attrs, steps = trial.user_attrs, trial.intermediate_values
    config = record.stored_config(trial)
    history = attrs.get(record.HISTORY) or []
    method = trial.params.get("method") or config.get("method", "?")
    fusion = trial.params.get("fusion") or config.get("fusion", "?")
    best_epoch = attrs.get(record.BEST_EPOCH)
    epochs_run = attrs.get(record.EPOCHS_RUN, len(steps))
    head = f"## Trial {trial.number}: {trial.state.name} · `{method}` / `{fusion}`"
    lines = [head, ""]
    at = "" if best_epoch is None else f" at epoch {best_epoch}"
    if trial.state == TrialState.COMPLETE:
        budget = f" of {config['epochs']}" if at and config.get("epochs") else ""
        names = metric_names or [METRIC]
        if names == [METRIC]:
            lines.append(f"Best {METRIC} **{_fmt(trial.values[0])}**{at}{budget}.")
        else:
            shown = ", ".join(f"{n} **{_fmt(v)}**" for n, v in zip(names, trial.values))
            lines.append(f"{shown}{at}{budget} (the selected epoch).")
    elif trial.state == TrialState.PRUNED and steps:
        last_step = max(steps)
        lines.append(
            f"Pruned after {epochs_run} epoch(s). The dashboard's Value "
            f"**{_fmt(steps[last_step])}** is the last epoch's (epoch {last_step}); the best so "
            f"far, which drltune ranks by, is **{_fmt(max(steps.values()))}**{at}."
        )
    elif trial.state == TrialState.FAIL:
        lines.append(
            f"Failed after {epochs_run} epoch(s): `{attrs.get(record.ERROR, 'no error stored')}`"
        )
    if history and best_epoch is not None:
        best = next((r for r in history if r.get("epoch") == best_epoch), history[-1])
        lines += [
            "",
            f"| accuracy at epoch {best_epoch} | fused | audio only | visual only |",
            "|---|---|---|---|",
            f"| validation | {_fmt(best.get('val_acc'))} | {_fmt(best.get('val_acc_audio'))} "
            f"| {_fmt(best.get('val_acc_visual'))} |",
        ]
        if attrs.get("test_acc") is not None:
            lines.append(
                f"| test | {_fmt(attrs.get('test_acc'))} | {_fmt(attrs.get('test_acc_audio'))} "
                f"| {_fmt(attrs.get('test_acc_visual'))} |"
            )
    if method in METHODS:
        lines += METHODS.get(method).note_rows(history)
    if config:
        lines += [
            "",
            f"**Config** (`drltune export --study {study_name} --trial {trial.number} -o t.yaml` "
            "writes it whole)",
            "",
            "```yaml",
            _config_yaml(config),
            "```",
        ]
    return "\n".join(lines) + "\n"


def history_csv(history: list[dict[str, Any]]) -> str:
    """Every epoch's record, one row each; columns in first-seen order."""
    columns: dict[str, None] = {}
    for epoch_record in history:
        columns.update(dict.fromkeys(epoch_record))
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    writer.writerows(history)
    return buffer.getvalue()


# ---- writing -----------------------------------------------------------------------------------
def describe_study(study: optuna.Study) -> None:
    """Name the objective and write the study Note once (a Note a user edited is kept)."""
    from optuna_dashboard import get_note, save_note

    if study.metric_names is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([METRIC])
    if not get_note(study):
        save_note(study, study_note(study.user_attrs))


def write_trial_note(study: optuna.Study, trial_id: int, body: str) -> None:
    """A finished trial's first Note, in the keys optuna-dashboard's `save_note` writes (version 1).

    `save_note` reads every study system attribute twice to number the version, and every Note
    lives there: 1.4 s per trial at 2,000 notes on this machine. A trial's first Note needs no
    lookup, so this writes its two or three keys directly (O(1)); tests read it back through the
    dashboard's HTTP API."""
    storage, study_id = storage_of(study), study_id_of(study)
    version_key, chunks = dashboard_note_keys(trial_id, body)
    storage.set_study_system_attr(study_id, version_key, 1)
    for key, chunk in chunks.items():
        storage.set_study_system_attr(study_id, key, chunk)


class DashboardPublisher:
    """Called with each finished trial's number: one Note and two artifacts, never per epoch."""

    def __init__(
        self,
        study: optuna.Study,
        storage_url: str,
        refresh_s: float = 60.0,
        warn: Callable[[str], None] = print,
    ) -> None:
        self.study, self.refresh_s, self.warn = study, refresh_s, warn
        self.folder = artifact_dir(storage_url)
        self.last_refresh, self.refresh_cost = time.monotonic(), 0.0
        self.warned = False

    def __call__(self, number: int) -> None:
        """After the trial was told: its Note, and the study figures when they are due."""
        try:
            self.write_note(number)
            wait = max(
                self.refresh_s, 20 * self.refresh_cost
            )  # figures cost <= 5 % of the driver's time
            if time.monotonic() - self.last_refresh >= wait:
                self.refresh_figures()
        except Exception as exc:  # the dashboard view must never stop a search
            self._warn(f"dashboard note of trial {number} not written: {type(exc).__name__}: {exc}")

    def _warn(self, message: str) -> None:
        if not self.warned:
            self.warn(f"warning: {message} (further such warnings are not shown)")
            self.warned = True

    def attach_artifacts(
        self, trial: optuna.Trial, state: TrialState, attrs: dict[str, Any]
    ) -> None:
        """Before the trial is told (a finished trial takes no more artifacts): `history.csv` and
        `learning_curve.svg` from its per-epoch records."""
        history = attrs.get(record.HISTORY) or []
        if not history:
            return
        try:
            from optuna.artifacts import FileSystemArtifactStore, upload_artifact

            self.folder.mkdir(parents=True, exist_ok=True)
            store = FileSystemArtifactStore(self.folder)
            title = (
                f"trial {trial.number} ({state.name.lower()}, {trial.params.get('method', '?')})"
            )
            with tempfile.TemporaryDirectory(prefix="drltune-artifacts-") as tmp:
                for name, text in (
                    ("history.csv", history_csv(history)),
                    ("learning_curve.svg", curve_svg(history, title)),
                ):
                    path = Path(tmp) / name
                    path.write_text(text, encoding="utf-8")
                    upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=trial)
        except Exception as exc:
            self._warn(
                f"dashboard artifacts of trial {trial.number} not written: {type(exc).__name__}: "
                f"{exc}"
            )

    def write_note(self, number: int) -> None:
        storage, study_id = storage_of(self.study), study_id_of(self.study)
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, number)
        frozen = storage.get_trial(trial_id)
        if frozen.state.is_finished() and not record.is_interrupted(frozen):
            write_trial_note(
                self.study,
                trial_id,
                trial_note(frozen, self.study.study_name, self.study.metric_names),
            )

    def refresh_figures(self) -> None:
        """Study figures: best per method, and the learning curves of each method's best trials."""
        from optuna_dashboard import save_plotly_graph_object

        from drltune.explore.figures import best_per_method_figure, method_curves_figure

        started = time.monotonic()
        trials = self.study.get_trials(deepcopy=False)
        for graph_id, figure in (
            ("best-per-method", best_per_method_figure(trials)),
            ("curves-by-method", method_curves_figure(trials, CURVES_PER_METHOD)),
        ):
            if figure is not None:
                save_plotly_graph_object(self.study, figure, graph_object_id=graph_id)
        self.last_refresh = time.monotonic()
        self.refresh_cost = self.last_refresh - started

    def finish(self) -> None:
        """At the end of a run: the study figures once more, with every trial."""
        try:
            self.refresh_figures()
        except Exception as exc:
            self._warn(f"dashboard figures not written: {type(exc).__name__}: {exc}")
