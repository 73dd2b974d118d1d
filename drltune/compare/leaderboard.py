"""The compare leaderboard, from the stored verification runs alone: the terminal table, the CSV
and the rows explore's report plots.

Per method: test accuracy over the fresh seeds (mean ± std and the 95 % Student-t interval of the
mean), per-modality test accuracy, the imbalance measure (audio minus visual test accuracy of the
unimodal heads: positive = audio dominant), the published configuration's accuracy, and the
seed-paired differences tuned - published, method - baseline and method - DR with their 95 %
intervals (verify.paired_interval); "not shown to differ" where an interval includes zero.
"""

from __future__ import annotations

import csv
import io
import statistics
from typing import Any

import optuna

from drltune.compare.plan import PUBLISHED_LABEL
from drltune.search.optuna_private import storage_of, study_id_of
from drltune.verify import OWN, paired_interval, stored_runs

ANCHORS = ("baseline", "dr")  # every method is compared with these, seed by seed
CSV_COLUMNS = (
    "method",
    "study",
    "trials",
    "best_trial",
    "search_val_acc",
    "seeds",
    "test_acc_mean",
    "test_acc_std",
    "test_acc_ci_low",
    "test_acc_ci_high",
    "audio_acc_mean",
    "visual_acc_mean",
    "imbalance_mean",
    "published_acc_mean",
    "published_acc_std",
    *(
        f"{what}_{part}"
        for what in ("vs_published", *(f"vs_{a}" for a in ANCHORS))
        for part in ("diff", "ci_low", "ci_high", "verdict")
    ),
)


def _by_seed(runs: dict[str, dict[str, Any]], trial: int, label: str) -> dict[int, dict[str, Any]]:
    return {r["seed"]: r for r in runs.values() if r["trial"] == trial and r["label"] == label}


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def verdict(interval: tuple[float, float, float] | None, n: int) -> str:
    if interval is None:
        return f"needs 2 paired seeds (has {n})"
    _, low, high = interval
    if low <= 0 <= high:
        return "not shown to differ"
    return "better" if low > 0 else "worse"


def _compare(own: dict[int, dict[str, Any]], other: dict[int, dict[str, Any]]) -> dict[str, Any]:
    seeds = sorted(set(own) & set(other))
    interval = paired_interval([own[s]["test_acc"] - other[s]["test_acc"] for s in seeds])
    return {
        "diff": interval[0] if interval else None,
        "ci_low": interval[1] if interval else None,
        "ci_high": interval[2] if interval else None,
        "seeds": len(seeds),
        "verdict": verdict(interval, len(seeds)),
    }


def leaderboard(
    studies: dict[str, optuna.Study], best: dict[str, int], seeds: list[int]
) -> list[dict[str, Any]]:
    """One row per method (in the given order): the runs of its best trial on `seeds`."""
    from drltune.search.study import counted

    own_runs: dict[str, dict[int, dict[str, Any]]] = {}
    rows: list[dict[str, Any]] = []
    for method, study in studies.items():
        runs = stored_runs(study)
        own_runs[method] = {
            s: r for s, r in _by_seed(runs, best[method], OWN).items() if s in seeds
        }
        pub = {s: r for s, r in _by_seed(runs, best[method], PUBLISHED_LABEL).items() if s in seeds}
        own = own_runs[method]
        acc = [own[s]["test_acc"] for s in sorted(own)]
        mean, std = _mean_std(acc)
        ci = paired_interval(
            acc
        )  # the Student-t interval of a mean: the same formula over the values
        audio, _ = _mean_std([own[s]["test_acc_audio"] for s in sorted(own)])
        visual, _ = _mean_std([own[s]["test_acc_visual"] for s in sorted(own)])
        p_mean, p_std = _mean_std([pub[s]["test_acc"] for s in sorted(pub)])
        storage = storage_of(study)
        trial = storage.get_trial(
            storage.get_trial_id_from_study_id_trial_number(study_id_of(study), best[method])
        )
        rows.append(
            {
                "method": method,
                "study": study.study_name,
                "trials": counted(study),
                "best_trial": best[method],
                "search_val_acc": trial.value,
                "seeds": sorted(own),
                "test_acc_mean": mean,
                "test_acc_std": std,
                "test_acc_ci_low": ci[1] if ci else None,
                "test_acc_ci_high": ci[2] if ci else None,
                "audio_acc_mean": audio,
                "visual_acc_mean": visual,
                "imbalance_mean": (audio - visual)
                if audio is not None and visual is not None
                else None,
                "published_acc_mean": p_mean,
                "published_acc_std": p_std,
                "vs_published": _compare(own, pub) if pub else None,
            }
        )
    for row in rows:
        for anchor in ANCHORS:
            row[f"vs_{anchor}"] = (
                _compare(own_runs[str(row["method"])], own_runs[anchor])
                if anchor in own_runs and anchor != row["method"]
                else None
            )
    return rows


def stored_leaderboard(study: optuna.Study) -> list[dict[str, Any]]:
    """The leaderboard of the compare `study` belongs to, read from its storage (every study with
    the same `compare` attribute; methods in name order); empty for a study of no compare."""
    from drltune import record
    from drltune.errors import DrltuneError
    from drltune.explore.export import select_trials

    prefix = study.user_attrs.get(record.COMPARE)
    if not prefix:
        return []
    members = sorted(
        (
            s
            for s in storage_of(study).get_all_studies()
            if s.user_attrs.get(record.COMPARE) == prefix
        ),
        key=lambda s: s.study_name,
    )
    studies, best, seeds = {}, {}, list(study.user_attrs.get(record.COMPARE_SEEDS, []))
    for member in members:
        loaded = optuna.load_study(study_name=member.study_name, storage=storage_of(study))
        try:
            (top,) = select_trials(loaded, 1, by_race=False)
        except DrltuneError:
            continue
        method = member.study_name[len(prefix) + 1 :]
        studies[method], best[method] = loaded, top.number
    return leaderboard(studies, best, seeds) if studies and seeds else []


def _f(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def leaderboard_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The table (within 100 columns), then one line per paired comparison."""
    header = (
        f"{'method':<10}{'trials':>6}  {'test acc mean ± std':<19} {'95 % interval':<17} "
        f"{'audio':>6} {'visual':>6} {'a - v':>7}  {'published':<15}"
    )
    lines = [header.rstrip()]
    for r in rows:
        ci = (
            f"[{r['test_acc_ci_low']:.3f}, {r['test_acc_ci_high']:.3f}]"
            if r["test_acc_ci_low"] is not None
            else "-"
        )
        acc = f"{_f(r['test_acc_mean'])} ± {_f(r['test_acc_std'])}"
        pub = (
            f"{_f(r['published_acc_mean'])} ± {_f(r['published_acc_std'])}"
            if r["published_acc_mean"] is not None
            else "none"
        )
        lines.append(
            f"{r['method'][:10]:<10}{r['trials']:>6}  {acc:<19} {ci:<17} "
            f"{_f(r['audio_acc_mean'], '.3f'):>6} {_f(r['visual_acc_mean'], '.3f'):>6} "
            f"{_f(r['imbalance_mean'], '+.3f'):>7}  {pub:<15}"
        )
    lines.append("")
    lines.append("paired differences in test accuracy (same fresh seeds), mean [95 % interval]:")
    for r in rows:
        for key, name in (
            ("vs_published", "tuned - published"),
            *((f"vs_{a}", f"{r['method']} - {a}") for a in ANCHORS),
        ):
            d = r.get(key)
            if d is None:
                continue
            diff = (
                f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
                if d["diff"] is not None
                else "-"
            )
            label = f"{r['method']}: {name}" if key == "vs_published" else name
            lines.append(f"  {label[:40]:<40} {diff:<28} {d['verdict']}")
    return lines


def leaderboard_csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        flat = {**r, "seeds": " ".join(map(str, r["seeds"]))}
        for what in ("vs_published", *(f"vs_{a}" for a in ANCHORS)):
            for part in ("diff", "ci_low", "ci_high", "verdict"):
                flat[f"{what}_{part}"] = (r[what] or {}).get(part)
        writer.writerow(["" if flat[c] is None else flat[c] for c in CSV_COLUMNS])
    return out.getvalue()
