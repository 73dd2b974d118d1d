"""The study's record: the name of every attribute a search stores, and how a trial is summarised.

These names are a contract with stored studies (`drltune explore`, `export`, `verify`, the
dashboard and notebooks read them): `search` writes through this module and `explore` reads
through it, so a name is spelled once. Changing a value here breaks every existing study.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

# ---- study user attributes (written once, when the study is created) ----------------------------
DATASET = "dataset"
SPACE = "space"  # the search space's YAML text
SPACE_FILE = "space_file"
VERSION = "drltune_version"
COMMAND = "command"
MAX_EPOCHS = "max_epochs"
PRUNER = "pruner"
SAMPLER = "sampler"
PRUNER_ARGS = "pruner_args"
SAMPLER_ARGS = "sampler_args"
OBJECTIVE = (
    "objective"  # the metric names it optimises, in order (absent: ["val_acc"]; objective.py)
)
RESUME_CHECKED = (DATASET, MAX_EPOCHS, SPACE)  # a resumed study must match these
VERIFY_PREFIX = "verify:"  # + trial<N>:<label>:seed<S>: one `drltune verify` run
VERIFY_SEEDS = "verify_seeds"  # the fresh seeds, fixed at the first verify so a re-run reuses them
COMPARE = (
    "compare"  # `drltune compare`: the compare (study name prefix) this study is one method of
)
COMPARE_SEEDS = (
    "compare_seeds"  # the fresh seeds that compare verified every method's best trial on
)
# the search's race (racing.py): {"top", "seeds", "ranking": [{"trial", "mean_val_acc", ...}]}
RACE = "race"

# ---- trial user attributes ----------------------------------------------------------------------
CONFIG = "config"  # the TrialConfig the trial trained, as a dict (what `export` writes back)
HISTORY = "history"  # one record per epoch (the trainer's epoch records)
ERROR = "error"  # why it failed (one line)
INTERRUPTED = "interrupted"  # cut off by a stop or a dead driver, queued again (not a real failure)
# asked past --trials (another driver was first) and closed at once: never run, never retried
NOT_RUN = "not_run"
NOT_RUN_ERROR = (
    "not run:"  # how its error begins (studies from before NOT_RUN marked it INTERRUPTED)
)
RETRY_OF = "retry_of"  # the number of the cut-off trial this one retries
# `search --seed-with`: SOURCE:METHOD of the published config it was enqueued from
SEEDED_FROM = "seeded_from"
REINIT_EPOCHS = "reinit_epochs"  # epochs after which DR re-initialised (the pruner's grace)
DRIVER = "driver"  # host:pid:token of the search process that runs the trial
DRIVER_NS = "driver_ns"  # that process's PID namespace
RAY_TRIAL_ID = "ray_trial_id"
RAY_NODE = "ray_node"
RAY_NODE_IP = "ray_node_ip"
FINISHED_AT = "finished_at"
RESUMED_FROM_EPOCH = "resumed_from_epoch"
BEST_EPOCH = "best_epoch"
EPOCHS_RUN = "epochs_run"
# What a trial's last result carries (the trainable reports them; the value is best_val_acc).
FINAL_KEYS = (
    "best_val_acc",
    "best_epoch",
    "test_acc",
    "test_f1",
    "test_acc_audio",
    "test_acc_visual",
)
# Per-trial numbers stored as user attributes (the summary's best-epoch accuracies and FINAL_KEYS').
RESULT_ATTRS = (
    "val_acc_audio",
    "val_acc_visual",
    "test_acc",
    "test_f1",
    "test_acc_audio",
    "test_acc_visual",
)
# How a trial's state is said in counts and tables (other states: their lower-case name).
STATE_LABELS = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed", "RUNNING": "running"}
# The keys of an epoch record that every method has (methods add their own `metric_keys`).
HISTORY_KEYS = (
    "train_loss",
    "val_acc",
    "val_f1",
    "val_acc_audio",
    "val_acc_visual",
    "val_acc_best",
    "reinit",
)


def trial_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The attributes a finished trial gets from its epochs: best_epoch (the first maximum of
    val_acc, as the trainer selects), epochs_run, per-modality accuracy at the best epoch, the
    history."""
    if not history:
        return {EPOCHS_RUN: 0, HISTORY: []}
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return {
        BEST_EPOCH: history[best]["epoch"],
        EPOCHS_RUN: len(history),
        "val_acc_audio": history[best].get("val_acc_audio"),
        "val_acc_visual": history[best].get("val_acc_visual"),
        HISTORY: history,
    }


# ---- reading a stored trial ---------------------------------------------------------------------
def stored_config(trial: FrozenTrial) -> dict[str, Any]:
    """The trial's stored config dict ({} for a trial that never got one)."""
    config = trial.user_attrs.get(CONFIG)
    return config if isinstance(config, dict) else {}


def trial_method(trial: FrozenTrial) -> str:
    return trial.params.get("method") or stored_config(trial).get("method") or "unknown"


def trial_fusion(trial: FrozenTrial) -> str:
    return trial.params.get("fusion") or stored_config(trial).get("fusion") or "unknown"


def epochs(trial: FrozenTrial) -> list[dict[str, Any]]:
    """The stored per-epoch records, else the intermediate val_acc alone (studies without
    `history`)."""
    return trial.user_attrs.get(HISTORY) or [
        {"epoch": s, "val_acc": v} for s, v in sorted(trial.intermediate_values.items())
    ]


def reinits_fired(trial: FrozenTrial) -> int:
    """How many DR re-inits happened: from the per-epoch records, else the search's `reinit_epochs`
    list."""
    history = trial.user_attrs.get(HISTORY)
    if history:
        return sum(1 for record in history if record.get("reinit"))
    return len(trial.user_attrs.get(REINIT_EPOCHS) or ())


def is_not_run(trial: FrozenTrial) -> bool:
    """Closed unrun past --trials; read from the error too, for studies that marked it
    interrupted."""
    return bool(trial.user_attrs.get(NOT_RUN)) or str(trial.user_attrs.get(ERROR, "")).startswith(
        NOT_RUN_ERROR
    )


def is_interrupted(trial: FrozenTrial) -> bool:
    """Cut off and queued again (a trial never run is not: it has nothing to resume)."""
    return bool(trial.user_attrs.get(INTERRUPTED)) and not is_not_run(trial)


# ---- counting trials by state -------------------------------------------------------------------
# The one way every command counts a study's trials (studies, explore, export, the search's
# progress): Optuna's FAIL is split by why (a real failure; cut off and queued again; closed unrun
# past --trials) and WAITING (a queued retry) is "queued". The keys, in this order, are also
# explore's JSON `counts`.
STATE_COUNT_KEYS = ("complete", "pruned", "failed", "interrupted", "not_run", "running", "queued")


def state_key(trial: FrozenTrial) -> str:
    """The trial's key in STATE_COUNT_KEYS."""
    name = trial.state.name
    if name == "FAIL":
        return (
            "not_run" if is_not_run(trial) else "interrupted" if is_interrupted(trial) else "failed"
        )
    return "queued" if name == "WAITING" else STATE_LABELS.get(name, name.lower())


def state_counts(trials: Iterable[FrozenTrial]) -> dict[str, int]:
    """How many trials are in each state, every key of STATE_COUNT_KEYS present (0 included)."""
    counts = dict.fromkeys(STATE_COUNT_KEYS, 0)
    for trial in trials:
        key = state_key(trial)
        counts[key] = counts.get(key, 0) + 1
    return counts


def counts_text(counts: dict[str, int]) -> str:
    """`1 complete, 2 interrupted, 2 queued`: the states that have trials, in STATE_COUNT_KEYS
    order."""
    return (
        ", ".join(f"{n} {key.replace('_', ' ')}" for key, n in counts.items() if n) or "no trials"
    )


def raced_ranking(study: Any) -> list[dict[str, Any]]:
    """The study's stored race, best mean first ([] when it was not raced)."""
    race = study.user_attrs.get(RACE)
    return list(race["ranking"]) if isinstance(race, dict) else []
