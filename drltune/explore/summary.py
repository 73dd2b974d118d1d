"""What a finished (or running) study says: top trials, best per method and fusion, counts,
importances."""

from __future__ import annotations

import io
import json
import math
import textwrap
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Iterable, Sequence

import optuna
import pandas as pd

from drltune import record
from drltune.explore.load import trials_frame
from drltune.search.objective import complete_primary, primary, study_objective

STATES = record.STATE_LABELS
# The short table of the terminal: what a user compares trials by.
TABLE_COLUMNS = [
    "number",
    "state",
    "score",
    "method",
    "fusion",
    "epochs_run",
    "best_epoch",
    "reinits",
    "test_acc",
    "params",
]
TABLE_WIDTH = (
    100  # the terminal summary fits this many columns (the parameters column and prose wrap)
)
MIN_TRIALS_FOR_IMPORTANCES = 20  # below this, PED-ANOVA's ranking moves with every new trial


@dataclass
class Summary:
    """Everything `drltune explore` prints; `score` is the value of a complete trial, else its best
    so far."""

    study: str
    dataset: str | None
    counts: dict[str, int]
    top: pd.DataFrame
    best_by_method: pd.DataFrame
    best_by_fusion: pd.DataFrame
    importances: dict[str, float]
    notes: list[str] = field(default_factory=list)
    noise: str | None = (
        None  # what one validation clip is worth, and how far apart the top trials are
    )
    incomplete_methods: list[str] = field(
        default_factory=list
    )  # methods with trials but none complete
    verified: list[dict[str, Any]] = field(
        default_factory=list
    )  # drltune verify's figures (verify.py)
    choice: str | None = (
        None  # how the best was chosen (one seed or raced) and the benchmark's figures
    )
    leaderboard: list[dict[str, Any]] = field(
        default_factory=list
    )  # drltune compare's, when the study is in one
    objective: list[str] = field(
        default_factory=lambda: ["val_acc"]
    )  # the study's metric names (objective.py)
    pareto: pd.DataFrame | None = None  # a two-objective study's front, best first objective first


def key_params(row: pd.Series) -> str:
    """`lr=0.01 dr.alpha=2` for a row: the trial's sampled parameters besides method and fusion."""
    items = []
    for col, value in row.items():
        name = str(col).removeprefix("params_")
        if not str(col).startswith("params_") or name in ("method", "fusion") or pd.isna(value):
            continue
        items.append(f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}")
    return " ".join(items)


def ranked(frame: pd.DataFrame) -> pd.DataFrame:
    """Trials that have a score, complete ones first, each group best first; failed trials are left
    out."""
    if frame.empty:
        return frame.assign(score=pd.Series(dtype=float), params=pd.Series(dtype=str))
    frame = frame.assign(
        score=frame["value"].where(frame["state"] == "COMPLETE", frame["best_val_acc"]),
        params=frame.apply(key_params, axis=1),
    )
    frame = frame[frame["score"].notna()]
    order = (frame["state"] != "COMPLETE").astype(int)
    return (
        frame.assign(_order=order)
        .sort_values(["_order", "score", "number"], ascending=[True, False, True])
        .drop(columns="_order")
        .reset_index(drop=True)
    )


def importances(study: optuna.Study) -> tuple[dict[str, float], str | None]:
    """Optuna's default evaluator (PED-ANOVA) on complete trials, or a one-line reason why not."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}, f"parameter importances need at least 2 complete trials (have {len(complete)})"
    if len({primary(t) for t in complete}) < 2:
        return {}, f"parameter importances: all {len(complete)} complete trials have the same value"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # a two-objective study: for its first objective (Optuna asks for one target)
            target = complete_primary if len(study.directions) > 1 else None
            result = optuna.importance.get_param_importances(study, target=target)
    except (RuntimeError, ValueError) as exc:
        return {}, f"parameter importances could not be computed: {exc}"
    return {k: float(v) for k, v in result.items()}, None


def validation_size(values: Iterable[float], limit: int = 1_000_000) -> int | None:
    """The number of validation clips, from stored accuracies (each is k/n): the least common
    denominator of the values; None when there are none."""
    n = 1
    for value in values:
        if value is None or not math.isfinite(value):
            continue
        n = math.lcm(n, Fraction(value).limit_denominator(100_000).denominator)
        if n > limit:
            return None
    return n if n > 1 else None


def noise_line(
    trials: pd.DataFrame, history: Iterable[float], verified: Sequence[dict[str, Any]] = ()
) -> str | None:
    """`one validation clip = 0.42 points (240 clips); the top 3 complete trials lie within 3
    clips`, and the seed spread that `drltune verify` measured, where it did."""
    n = validation_size(history)
    if n is None:
        return None
    clip = 100.0 / n
    line = f"one validation clip = {clip:.2g} points of val_acc ({n} clips)"
    complete = (
        trials.loc[trials["state"] == "COMPLETE", "value"].sort_values(ascending=False).head(3)
    )
    if len(complete) >= 2:
        spread = (complete.iloc[0] - complete.iloc[-1]) * n
        line += (
            f"; the top {len(complete)} complete trials lie within {round(spread)} clip(s) "
            f"({(complete.iloc[0] - complete.iloc[-1]) * 100:.2g} points), each on one seed: "
            "re-train the best on more seeds before calling one better"
        )
    spreads = [
        (r["test_acc_std"], len(r["seeds"]), r["trial"])
        for r in verified
        if r.get("test_acc_std") is not None and len(r.get("seeds") or ()) >= 2
    ]
    if spreads:
        line += "; seed spread (drltune verify, test_acc std): " + ", ".join(
            f"{std * 100:.2g} points over {seeds} seeds (trial {trial})"
            for std, seeds, trial in spreads
        )
    else:
        line += "; the seed spread is not measured yet (`drltune verify` measures it)"
    return line


def summarize(study: optuna.Study, top: int = 10) -> Summary:
    frame = trials_frame(study)
    counts = record.state_counts(study.get_trials(deepcopy=False))
    scored = ranked(frame)
    by_method = scored.drop_duplicates("method").reset_index(drop=True)
    incomplete = sorted(by_method.loc[by_method["state"] != "COMPLETE", "method"])
    by_fusion = scored.drop_duplicates("fusion").reset_index(drop=True)
    imp, imp_note = importances(study)
    notes = []
    if counts["failed"] == len(frame):
        errors = frame["error"].dropna()
        notes.append(
            f"every trial failed ({len(frame)})"
            + (f"; first error: {errors.iloc[0]}" if len(errors) else "")
        )
    elif counts["complete"] == 0:
        notes.append("no trial has completed yet: rows show the best val_acc so far")
    if counts["running"]:
        notes.append(f"{counts['running']} trial(s) still running: this is a snapshot")
    if imp_note and counts["failed"] < len(frame):
        notes.append(imp_note)
    elif imp and counts["complete"] < MIN_TRIALS_FOR_IMPORTANCES:
        notes.append(
            f"parameter importances come from only {counts['complete']} complete trials "
            f"(fewer than {MIN_TRIALS_FOR_IMPORTANCES}): a rough hint, not a ranking"
        )
    if incomplete:
        notes.append(
            f"no complete trial for {', '.join(incomplete)}: the best-per-method rows show the "
            "best pruned or running trial so far (fewer epochs), and the box plots leave them out"
        )
    accuracies = [
        rec.get("val_acc")
        for t in study.get_trials(deepcopy=False)
        for rec in (t.user_attrs.get(record.HISTORY) or [])
    ] or [v for t in study.get_trials(deepcopy=False) for v in t.intermediate_values.values()]
    from drltune.compare.leaderboard import stored_leaderboard
    from drltune.search.choice import choice_line
    from drltune.verify import verified_rows

    verified = verified_rows(study)
    objective = study_objective(study)
    pareto = None
    if objective.multi:
        front = frame[frame["pareto"].astype(bool)].assign(
            params=lambda f: f.apply(key_params, axis=1)
        )
        pareto = front.sort_values(["value", "number"], ascending=[False, True]).reset_index(
            drop=True
        )
    return Summary(
        objective=objective.names,
        pareto=pareto,
        leaderboard=stored_leaderboard(study),
        study=study.study_name,
        dataset=study.user_attrs.get(record.DATASET),
        counts=counts,
        top=scored.head(top),
        best_by_method=by_method,
        best_by_fusion=by_fusion,
        importances=imp,
        notes=notes,
        noise=noise_line(frame, accuracies, verified),
        incomplete_methods=incomplete,
        verified=verified,
        choice=choice_line(study),
    )


# ---- rendering ------------------------------------------------------------------------
def _aligned(frame: pd.DataFrame, width: int = TABLE_WIDTH) -> str:
    """Left-aligned plain-text columns (pandas right-aligns strings, which reads badly for names).
    Rows fit `width` columns: a last column (the parameters) that does not fit goes on the lines
    below its row, indented and wrapped."""
    cells = [
        [str(c) for c in frame.columns],
        *[[str(v) for v in row] for row in frame.itertuples(index=False)],
    ]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    indent = 2 + sum(w + 2 for w in widths[:-1])
    lines = []
    for r in cells:
        head = "  " + "  ".join(v.ljust(w) for v, w in zip(r[:-1], widths[:-1]))
        if indent + len(r[-1]) <= width:
            lines.append(f"{head}  {r[-1]}".rstrip())
            continue
        lines.append(head.rstrip())
        lines += textwrap.wrap(
            r[-1],
            width,
            initial_indent="    ",
            subsequent_indent="    ",
            break_long_words=False,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def trials_table(frame: pd.DataFrame, first: str | None = None, score: str = "val_acc") -> str:
    if frame.empty:
        return "  (none)"
    cols = ([first] if first else []) + [c for c in TABLE_COLUMNS if c != first]
    shown = frame[cols].rename(columns={"number": "trial", "score": score, "epochs_run": "epochs"})
    for col, fmt in (
        (score, "{:.4f}"),
        ("test_acc", "{:.4f}"),
        ("epochs", "{}"),
        ("best_epoch", "{}"),
        ("reinits", "{}"),
    ):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else fmt.format(v))
    return _aligned(shown)


def pareto_table(front: pd.DataFrame, names: list[str]) -> str:
    """trial, each objective, method, fusion, test_acc, params."""
    if front.empty:
        return "  (none)"
    columns = {
        "number": "trial",
        **{f"objective_{n}": n for n in names},
        "method": "method",
        "fusion": "fusion",
        "best_epoch": "best_epoch",
        "test_acc": "test_acc",
        "params": "params",
    }
    shown = front[list(columns)].rename(columns=columns)
    for col in (*names, "test_acc"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.4f}")
    shown["best_epoch"] = shown["best_epoch"].map(lambda v: "" if pd.isna(v) else str(v))
    return _aligned(shown)


BEST_PER_METHOD_NOTE = (
    "each method's best complete trial; a method without one shows its best pruned or "
    "running trial so far, and its state and epochs run say so"
)
BEST_PER_METHOD = f"best trial per method ({BEST_PER_METHOD_NOTE})"


def counts_line(s: Summary) -> str:
    total = sum(s.counts.values())
    return f"{total} trial{'' if total == 1 else 's'}: " + record.counts_text(s.counts)


def prose(text: str) -> list[str]:
    """A sentence of the terminal summary, wrapped to the tables' width; its continuation lines are
    indented, and words (paths, commands) are never split."""
    return textwrap.wrap(
        text, TABLE_WIDTH, subsequent_indent="  ", break_long_words=False, break_on_hyphens=False
    )


def render_table(s: Summary) -> str:
    lines = [
        f"study {s.study}"
        + (f" (dataset {s.dataset})" if s.dataset else "")
        + f": {counts_line(s)}"
    ]
    for note in s.notes:
        lines += prose(f"note: {note}")
    if s.noise:
        lines += prose(f"noise: {s.noise}")
    if s.choice:
        lines += prose(s.choice)
    score = s.objective[0]
    what = "best validation accuracy" if score == "val_acc" else f"{score} at the selected epoch"
    if s.pareto is not None:
        lines += [
            "",
            f"Pareto front: {len(s.pareto)} complete trial(s) that no other beats on both "
            f"{' and '.join(s.objective)} (export one with --trial N)",
            pareto_table(s.pareto, s.objective),
        ]
    lines += [
        "",
        f"top {len(s.top)} trials ({score}: {what}; complete trials first)",
        trials_table(s.top, score=score),
        "",
        *prose(BEST_PER_METHOD),
        trials_table(s.best_by_method, "method", score),
        "",
        "best trial per fusion",
        trials_table(s.best_by_fusion, "fusion", score),
    ]
    if s.importances:
        lines += [
            "",
            f"parameter importances (Optuna PED-ANOVA over {s.counts['complete']} complete trials)",
        ]
        width = max(len(k) for k in s.importances)
        lines += [
            f"  {k:<{width}}  {v:6.3f}  {'#' * round(v * 40)}" for k, v in s.importances.items()
        ]
    if s.verified:
        from drltune.verify import verified_lines

        lines += [
            "",
            *prose(
                "verified on fresh seeds (drltune verify; test accuracy mean ± std, paired "
                "difference with a 95 % interval)"
            ),
            *verified_lines(s.verified),
        ]
    if s.leaderboard:
        from drltune.compare.leaderboard import leaderboard_lines

        lines += [
            "",
            "leaderboard of the compare this study is part of (drltune compare)",
            *leaderboard_lines(s.leaderboard),
        ]
    return "\n".join(lines)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as plain dicts with missing values as None (pandas' to_json rounds floats to 15
    digits)."""
    rows = frame.drop(columns=["params"], errors="ignore").astype(object)
    return rows.where(rows.notna(), None).to_dict(orient="records")


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else str(value)  # numpy scalars


def render_json(s: Summary) -> str:
    payload = {
        "study": s.study,
        "dataset": s.dataset,
        "counts": s.counts,
        "notes": s.notes,
        "noise": s.noise,
        "choice": s.choice,
        "top": _records(s.top),
        "best_by_method": _records(s.best_by_method),
        "best_by_fusion": _records(s.best_by_fusion),
        "importances": s.importances,
        "verified": s.verified,
        "leaderboard": s.leaderboard,
        "objective": s.objective,
        **({"pareto_front": _records(s.pareto)} if s.pareto is not None else {}),
    }
    return json.dumps(payload, indent=1, default=_plain)


def render_csv(s: Summary) -> str:
    """The top-trials table with every column (one parameter per `params_<name>` column)."""
    buffer = io.StringIO()
    s.top.drop(columns=["params"], errors="ignore").to_csv(buffer, index=False)
    return buffer.getvalue()
