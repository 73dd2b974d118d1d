"""`drltune verify`: is a search's winner really better once the lucky seed is gone?

The top trials (or named ones) are trained again on fresh seeds (never a seed any trial of the
study trained with), together with reference runs: each reference method at its declared
defaults under the winner's training knobs (every TrialConfig key but `method` and `params`, so
lr, batch size, optimiser, fusion, epochs...). Each run is stored in the study as it finishes,
as the study user attribute `verify:trial<N>:<label>:seed<S>` (label `config` for the trial's
own config, `ref-<method>` for a reference), so a killed verify resumes where it stopped and
`drltune explore` reads the figures. Runs go through Ray like a search (one Ray task per run).

Comparison with a reference is seed-paired: for every seed both ran, d = acc(config) - acc(ref);
the 95 % interval is mean(d) ± t(0.975, n-1) · sd(d) / sqrt(n) (Student t over the n paired
differences; it needs n >= 2).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.record import VERIFY_PREFIX as PREFIX
from drltune.record import VERIFY_SEEDS as SEEDS_ATTR
from drltune.record import stored_config
from drltune.resolve import resolve, trial_config
from drltune.search.objective import primary

OWN = "config"
RESULT_KEYS = (
    "test_acc",
    "test_f1",
    "test_acc_audio",
    "test_acc_visual",
    "best_val_acc",
    "best_epoch",
)
# Student t quantile t(0.975, df) for df = 1..30; above 30 the normal quantile is within 2 %.
T975 = (
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
)


@dataclass(frozen=True)
class Run:
    """One training run of the plan: trial `trial`'s config (or a reference built on it) at
    `seed`."""

    trial: int
    label: str
    seed: int
    config: TrialConfig

    @property
    def key(self) -> str:
        return f"{PREFIX}trial{self.trial}:{self.label}:seed{self.seed}"


def run_key(trial: int, label: str, seed: int) -> str:
    return f"{PREFIX}trial{trial}:{label}:seed{seed}"


def fresh_seeds(study: optuna.Study, n: int) -> list[int]:
    """`n` seeds no trial of the study trained with; the ones an earlier verify used come first."""
    used = {
        int(stored_config(t)["seed"])
        for t in study.get_trials(deepcopy=False)
        if "seed" in stored_config(t)
    }
    chosen = [s for s in study.user_attrs.get(SEEDS_ATTR, []) if s not in used]
    candidate = max(used, default=0) + 1
    while len(chosen) < n:
        if candidate not in used and candidate not in chosen:
            chosen.append(candidate)
        candidate += 1
    return chosen[:n]


def reference_config(cfg: TrialConfig, method: str) -> TrialConfig:
    """`method` at its declared defaults under `cfg`'s training knobs (checked: it must resolve)."""
    ref = cfg.replace(method=method, params={})
    resolve(ref)
    return ref


def plan(
    study: optuna.Study,
    trials: list[FrozenTrial],
    seeds: list[int],
    references: list[str],
    notes: list[str],
) -> list[Run]:
    """Every run the verification needs, in order: per trial, its own config then each reference."""
    runs = []
    for trial in trials:
        cfg = trial_config(study, trial)
        for seed in seeds:
            runs.append(Run(trial.number, OWN, seed, cfg.replace(seed=seed)))
        for method in references:
            try:
                ref = reference_config(cfg, method)
            except DrltuneError as exc:
                notes.append(
                    f"trial {trial.number}: reference {method} cannot run with its knobs ({exc})"
                )
                continue
            runs.extend(
                Run(trial.number, f"ref-{method}", seed, ref.replace(seed=seed)) for seed in seeds
            )
    return runs


def train_run(config: dict[str, Any]) -> dict[str, Any]:
    """What a Ray worker runs: one TrialConfig trained and tested (the test on the selected
    epoch)."""
    from drltune.train import Trainer

    result = Trainer(resolve(TrialConfig.from_dict(config))).fit()
    return {key: getattr(result, key) for key in RESULT_KEYS}


def record(run: Run, result: dict[str, Any]) -> dict[str, Any]:
    """What is stored for a finished run."""
    return {
        "trial": run.trial,
        "label": run.label,
        "seed": run.seed,
        "method": run.config.method,
        **{k: (int(v) if k == "best_epoch" else float(v)) for k, v in result.items()},
    }


def stored_runs(study: optuna.Study) -> dict[str, dict[str, Any]]:
    return {
        k: v for k, v in study.user_attrs.items() if k.startswith(PREFIX) and isinstance(v, dict)
    }


# ---- statistics -----------------------------------------------------------------------
def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def paired_interval(diffs: list[float]) -> tuple[float, float, float] | None:
    """(mean, low, high) of the 95 % Student-t interval of the paired differences; None below 2."""
    n = len(diffs)
    if n < 2:
        return None
    mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
    t = T975[n - 2] if n - 1 <= len(T975) else 1.96
    half = t * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass
class Verified:
    """One trial's verification: its runs' test accuracies and the paired comparisons."""

    trial: int
    method: str
    seeds: list[int]
    test_acc: list[float]
    audio: list[float]
    visual: list[float]
    references: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # label -> acc list + interval


def summarize_runs(runs: dict[str, dict[str, Any]]) -> list[Verified]:
    """Group stored runs by trial; compare each trial's own runs with each reference, seed by
    seed."""
    by_trial: dict[int, dict[str, dict[int, dict[str, Any]]]] = {}
    for rec in runs.values():
        by_trial.setdefault(rec["trial"], {}).setdefault(rec["label"], {})[rec["seed"]] = rec
    out = []
    for number in sorted(by_trial):
        labels = by_trial[number]
        own = labels.get(OWN, {})
        if not own:
            continue
        seeds = sorted(own)
        v = Verified(
            number,
            own[seeds[0]]["method"],
            seeds,
            [own[s]["test_acc"] for s in seeds],
            [own[s]["test_acc_audio"] for s in seeds],
            [own[s]["test_acc_visual"] for s in seeds],
        )
        for label in sorted(k for k in labels if k != OWN):
            ref = labels[label]
            paired = [s for s in seeds if s in ref]
            diffs = [own[s]["test_acc"] - ref[s]["test_acc"] for s in paired]
            v.references[label[len("ref-") :]] = {
                "test_acc": [ref[s]["test_acc"] for s in sorted(ref)],
                "paired_seeds": paired,
                "interval": paired_interval(diffs),
            }
        out.append(v)
    return out


def verdict(
    method: str, reference: str, interval: tuple[float, float, float] | None, n: int
) -> str:
    """The comparison in words."""
    if interval is None:
        return f"needs at least 2 paired seeds to compare with {reference} (has {n})"
    mean, low, high = interval
    if low <= 0 <= high:
        return f"the interval includes zero: not shown to differ from {reference} at {n} seeds"
    better = "better" if mean > 0 else "worse"
    return f"{better} than {reference} (the interval excludes zero, {n} seeds)"


# ---- running ----------------------------------------------------------------------------
def execute(
    study: optuna.Study,
    runs: list[Run],
    concurrent: int,
    cpus: float | None,
    gpus: float | None,
    address: str | None,
    echo: Callable[[str], None],
) -> int:
    """Train the runs not stored yet on Ray, storing each as it finishes; returns how many failed.
    `cpus` None: the search's default (gpu_plan.default_cpus_per_trial)."""
    from drltune.search.gpu_plan import default_cpus_per_trial, ray_nodes
    from drltune.search.ray_start import auto_gpus, init_ray, quiet_ray_env

    quiet_ray_env()
    import ray

    started = not ray.is_initialized()
    if started:
        init_ray(ray, address, concurrent, cpus or 1)
    failed = 0
    try:
        gpus = gpus if gpus is not None else auto_gpus(ray, concurrent)
        cpus = (
            cpus if cpus is not None else default_cpus_per_trial(ray_nodes(ray), gpus, concurrent)
        )
        remote = ray.remote(train_run).options(num_cpus=cpus, num_gpus=gpus, max_retries=1)
        queue = list(runs)
        pending: dict[ray.ObjectRef, Run] = {}
        while queue or pending:
            while queue and len(pending) < concurrent:
                run = queue.pop(0)
                threads = run.config.threads or max(1, math.floor(cpus))
                pending[remote.remote(run.config.replace(threads=threads).to_dict())] = run
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except (
                    Exception
                ) as exc:  # a run that crashed is reported, not stored: a re-run retries it
                    failed += 1
                    echo(
                        f"  trial {run.trial} {run.label} seed {run.seed}: failed: "
                        f"{str(exc).strip().splitlines()[-1][:300]}"
                    )
                    continue
                study.set_user_attr(run.key, record(run, result))
                echo(
                    f"  trial {run.trial} {run.label} seed {run.seed}: test_acc "
                    f"{result['test_acc']:.4f}"
                )
    finally:
        if started:
            ray.shutdown()
    return failed


def verified_rows(study: optuna.Study, keys: set[str] | None = None) -> list[dict[str, Any]]:
    """The stored verification of a study (only the runs `keys` names, if given) as plain rows:
    what `drltune verify` prints and `drltune explore` shows and plots."""
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)}
    runs = {k: v for k, v in stored_runs(study).items() if keys is None or k in keys}
    rows = []
    for v in summarize_runs(runs):
        trial = by_number.get(v.trial)
        acc, sd = mean_std(v.test_acc)
        refs = {}
        for ref, data in v.references.items():
            r_acc, r_sd = mean_std(data["test_acc"])
            interval = data["interval"]
            refs[ref] = {
                "test_acc_mean": r_acc,
                "test_acc_std": r_sd,
                "paired_seeds": len(data["paired_seeds"]),
                "diff": interval[0] if interval else None,
                "ci_low": interval[1] if interval else None,
                "ci_high": interval[2] if interval else None,
                "verdict": verdict(v.method, ref, interval, len(data["paired_seeds"])),
            }
        rows.append(
            {
                "trial": v.trial,
                "method": v.method,
                "seeds": v.seeds,
                "search_val_acc": primary(trial) if trial is not None else None,
                "search_test_acc": trial.user_attrs.get("test_acc") if trial is not None else None,
                "test_acc_mean": acc,
                "test_acc_std": sd,
                "audio": mean_std(v.audio),
                "visual": mean_std(v.visual),
                "references": refs,
            }
        )
    return rows


def verified_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per verified trial: the search's figures beside the verified ones (mean ± std, per modality),
    then each reference with the paired difference, its interval and the verdict in words."""
    lines = []
    for r in rows:
        search = (
            f"search val_acc {r['search_val_acc']:.4f}"
            if r["search_val_acc"] is not None
            else "search: -"
        )
        if r["search_test_acc"] is not None:
            search += f" test_acc {r['search_test_acc']:.4f}"
        (a, a_sd), (v, v_sd) = r["audio"], r["visual"]
        lines.append(
            f"  trial {r['trial']} ({r['method']}): {search}; verified test_acc "
            f"{r['test_acc_mean']:.4f} ± {r['test_acc_std']:.4f} over {len(r['seeds'])} seeds "
            f"{r['seeds']} (audio {a:.3f} ± {a_sd:.3f}, visual {v:.3f} ± {v_sd:.3f})"
        )
        for ref, d in r["references"].items():
            diff = (
                f"{d['diff']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]"
                if d["diff"] is not None
                else "-"
            )
            lines.append(
                f"    vs {ref}: {d['test_acc_mean']:.4f} ± {d['test_acc_std']:.4f}, paired "
                f"difference {diff}: {d['verdict']}"
            )
    return lines
