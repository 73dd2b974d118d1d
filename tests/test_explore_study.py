"""explore / export on a small study stored as `drltune search` stores one, from real tiny trainings.

The study holds complete DR and baseline trials on two fusions, a pruned, a failed and a
running trial, so every table, plot and note has something to show; the tables are checked
against the storage itself, and export -> `drltune train` must give the stored accuracy back.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import optuna
import pytest
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from drltune.cli import main
from drltune.config import TrialConfig
from drltune.train import Trainer

TINY = {"n_train": 60, "n_val": 24, "n_test": 24, "audio_freq": 16, "audio_time": 16, "image_size": 16}
DISTRIBUTIONS = {
    "method": CategoricalDistribution(["baseline", "dr"]), "fusion": CategoricalDistribution(["concat", "sum"]),
    "lr": FloatDistribution(1e-3, 0.1, log=True), "dr.reinit_epoch": IntDistribution(1, 3),
    "dr.alpha": FloatDistribution(0.1, 10.0, log=True), "dr.reinit_num": IntDistribution(1, 3),
}
STUDY_ATTRS = {"dataset": "synthetic", "space": "method: [baseline, dr]\n", "space_file": "test.yaml",
               "drltune_version": "0.1.0", "command": "drltune search --dataset synthetic", "max_epochs": 3,
               "pruner": "median", "sampler": "tpe"}


def record_trial(study: optuna.Study, params: dict, prune_after: int | None = None) -> None:
    """Train the sampled config for real and store it the way the search's bridge does."""
    method_params = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith(params["method"] + ".")}
    cfg = TrialConfig.from_dict({"method": params["method"], "fusion": params["fusion"], "lr": params["lr"],
                                 "epochs": 3, "seed": 0, "threads": 1, "batch_size": 16, "encoder_width": 4,
                                 "params": method_params, "dataset_params": dict(TINY)})
    result = Trainer(cfg).fit(report=lambda epoch, rec: prune_after is not None and epoch >= prune_after)
    best = result.history[result.best_epoch]
    attrs = {"config": cfg.to_dict(), "best_epoch": result.best_epoch, "epochs_run": len(result.history),
             "history": result.history, "ray_trial_id": f"ray_{len(study.trials)}",
             "val_acc_audio": best["val_acc_audio"], "val_acc_visual": best["val_acc_visual"],
             **{k: getattr(result, k) for k in ("test_acc", "test_f1", "test_acc_audio", "test_acc_visual")}}
    pruned = prune_after is not None
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.PRUNED if pruned else TrialState.COMPLETE, value=None if pruned else result.best_val_acc,
        params=params, distributions={k: DISTRIBUTIONS[k] for k in params}, user_attrs=attrs,
        intermediate_values={r["epoch"]: r["val_acc"] for r in result.history}))


def new_study(url: str, name: str) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for key, value in STUDY_ATTRS.items():
        study.set_user_attr(key, value)
    return study


def failed_trial(study: optuna.Study, lr: float) -> None:
    study.add_trial(optuna.trial.create_trial(
        state=TrialState.FAIL, params={"method": "baseline", "fusion": "concat", "lr": lr},
        distributions={k: DISTRIBUTIONS[k] for k in ("method", "fusion", "lr")},
        user_attrs={"error": f"NonFiniteLoss: loss became nan at epoch 0, step 1; lower the lr ({lr})"}))


def running_trial(study: optuna.Study) -> None:
    trial = study.ask({k: DISTRIBUTIONS[k] for k in ("method", "fusion", "lr")})
    trial.report(0.125, 0)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(url, study name, workdir): the mixed study `mixed`, plus `all_failed` and `only_running`."""
    root = tmp_path_factory.mktemp("explore")
    url = f"sqlite:///{root / 'studies' / 'drltune.db'}"
    (root / "studies").mkdir()
    study = new_study(url, "mixed")
    record_trial(study, {"method": "baseline", "fusion": "concat", "lr": 0.05})
    record_trial(study, {"method": "dr", "fusion": "concat", "lr": 0.05,
                         "dr.reinit_epoch": 1, "dr.alpha": 2.0, "dr.reinit_num": 1})
    record_trial(study, {"method": "dr", "fusion": "sum", "lr": 0.02,
                         "dr.reinit_epoch": 2, "dr.alpha": 0.5, "dr.reinit_num": 2})
    record_trial(study, {"method": "baseline", "fusion": "sum", "lr": 0.01})
    record_trial(study, {"method": "dr", "fusion": "sum", "lr": 0.003,
                         "dr.reinit_epoch": 1, "dr.alpha": 5.0, "dr.reinit_num": 1}, prune_after=1)
    failed_trial(study, 0.09)
    running_trial(study)
    failing = new_study(url, "all_failed")
    failed_trial(failing, 0.08)
    failed_trial(failing, 0.09)
    running_trial(new_study(url, "only_running"))
    new_study(url, "empty")
    return url, root


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def storage_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    return optuna.load_study(study_name=name, storage=url).trials


# ---- tables -------------------------------------------------------------------------------------
def test_json_tables_match_the_storage(stored, capsys):
    url, root = stored
    code, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--top", "3",
                           "--format", "json", "--no-html")
    assert code == 0
    data = json.loads(out)
    trials = storage_trials(url, "mixed")
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    assert data["counts"] == {"complete": 4, "pruned": 1, "failed": 1, "interrupted": 0, "not_run": 0, "running": 1,
                              "queued": 0}
    assert [r["number"] for r in data["top"]] == [t.number for t in complete[:3]]
    for row, trial in zip(data["top"], complete):
        assert row["value"] == trial.value and row["method"] == trial.params["method"]
        assert row["fusion"] == trial.params["fusion"] and row["epochs_run"] == 3
        assert row["best_epoch"] == trial.user_attrs["best_epoch"]
        assert row["test_acc"] == trial.user_attrs["test_acc"] and row["params_lr"] == trial.params["lr"]
    for key, rows in (("method", data["best_by_method"]), ("fusion", data["best_by_fusion"])):
        expected = {}
        for t in complete:
            expected.setdefault(t.params[key], t.number)
        assert {r[key]: r["number"] for r in rows} == expected
    assert set(data["importances"]) >= {"lr", "method", "fusion"}
    assert sum(data["importances"].values()) == pytest.approx(1.0)
    assert any("still running" in n for n in data["notes"])


def test_table_and_csv(stored, capsys):
    url, root = stored
    code, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--no-html")
    assert code == 0
    for heading in ("4 complete, 1 pruned, 1 failed, 1 running", "best trial per method", "best trial per fusion",
                    "parameter importances", "dr.reinit_epoch=1"):
        assert heading in out
    best = max((t for t in storage_trials(url, "mixed") if t.state == TrialState.COMPLETE),
               key=lambda t: (t.value, -t.number))
    first_row = out.split("complete trials first)\n")[1].splitlines()[1].split()
    assert first_row[:3] == [str(best.number), "COMPLETE", f"{best.value:.4f}"]
    code, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--format", "csv", "--no-html")
    lines = out.strip().splitlines()
    assert lines[0].startswith("number,state,value,") and len(lines) == 1 + 6  # 4 complete, pruned, running


def test_terminal_tables_fit_100_columns(stored, capsys):
    """The tables' rows fit 100 columns; parameters that do not fit go, whole, on the lines below."""
    url, _ = stored
    _, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--no-html", "--top", "10")
    tables = out.split("complete trials first)\n")[1].split("parameter importances")[0]
    rows = [line for line in tables.splitlines() if line.startswith("  ")]  # the tables' own lines
    assert len(rows) > 10 and max(len(line) for line in rows) <= 100
    for t in storage_trials(url, "mixed"):
        for key, value in t.params.items():
            if key not in ("method", "fusion") and t.state != TrialState.FAIL:  # failed trials are left out
                shown = f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
                assert shown in tables.split(), shown


def test_every_line_of_the_summary_fits_100_columns(stored, capsys):
    """The prose too (notes, noise, how the best was chosen): wrapped, not a 300-column line."""
    url, _ = stored
    _, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--no-html")
    assert "noise: one validation clip" in out and "how the best was chosen:" in out
    assert max(map(len, out.splitlines())) <= 100


def test_pandas_api(stored):
    import drltune.explore

    url, _ = stored
    frame = drltune.explore.load("mixed", url)
    trials = {t.number: t for t in storage_trials(url, "mixed")}
    assert sorted(frame["number"]) == sorted(trials)
    for row in frame.itertuples():
        assert row.state == trials[row.number].state.name
        assert (row.value == trials[row.number].value) or trials[row.number].value is None
    history = drltune.explore.history_frame(drltune.explore.open_study("mixed", url))
    pruned = history[history["state"] == "PRUNED"]
    assert list(pruned["epoch"]) == [0, 1]  # cut short at the pruning step


def test_edge_studies_say_what_they_are(stored, capsys):
    url, _ = stored
    code, out, _ = run_cli(capsys, "explore", "--study", "all_failed", "--storage", url, "--no-html")
    assert code == 0 and "note: every trial failed (2); first error: NonFiniteLoss" in out
    code, out, _ = run_cli(capsys, "explore", "--study", "only_running", "--storage", url, "--no-html")
    assert code == 0 and "no trial has completed yet" in out and "RUNNING  0.1250" in out
    assert "importances need at least 2 complete trials (have 0)" in out


# ---- HTML -----------------------------------------------------------------------------------------
def test_html_report_holds_every_plot_and_works_offline(stored, capsys):
    url, root = stored
    code, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url)
    path = root / "studies" / "mixed" / "report.html"  # the default: beside the storage's file
    assert code == 0 and f"report: {path}" in out
    page = path.read_text()
    for title in ("Optimisation history", "Learning curves", "Accuracy of the complete trials by method",
                  "DR parameters against accuracy", "Parameter importances", "Per-modality accuracy"):
        assert title in page
    for trace in ('"type":"parcoords"', '"type":"box"', '"type":"bar"', '"dash":"dash"'):
        assert trace in page
    assert "Not shown" not in page
    assert not re.search(r"<(script|link)[^>]*(src|href)=", page)  # nothing to fetch: opens offline
    assert page.count("plotly.js v") == 1  # the library inlined once


def test_html_of_a_failed_study_says_so(stored, capsys, tmp_path):
    url, _ = stored
    target = tmp_path / "failed.html"
    code, _, _ = run_cli(capsys, "explore", "--study", "all_failed", "--storage", url, "--html", str(target))
    page = target.read_text()
    assert code == 0 and "every trial failed (2)" in page and "Failed trials" in page
    assert page.count("Not shown") == 6 and page.count("plotly.js v") == 0


# ---- errors ---------------------------------------------------------------------------------------
def test_missing_or_empty_study_is_one_line(stored, capsys, tmp_path):
    url, _ = stored
    for name in ("nope", "empty"):
        code, out, err = run_cli(capsys, "explore", "--study", name, "--storage", url)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "existing studies: all_failed, empty, mixed, only_running" in err
    missing = tmp_path / "none" / "drltune.db"
    code, _, err = run_cli(capsys, "export", "--study", "x", "--storage", f"sqlite:///{missing}", "-o", "x.yaml")
    assert code == 2 and err.startswith("error: storage:") and "does not exist" in err
    assert not missing.exists() and not missing.parent.exists()  # reading never creates a database
    code, _, err = run_cli(capsys, "explore", "--study", "x", "--storage", str(tmp_path / "journal.log"))
    assert code == 2 and "journal.log does not exist" in err and not (tmp_path / "journal.log").exists()
    code, _, err = run_cli(capsys, "explore", "--study", "x", "--storage", "postgresql://me:s3cret@127.0.0.1:1/db")
    assert code == 1 and err.startswith("error: storage: cannot open postgresql://me:***@127.0.0.1:1/db")  # runtime
    assert "Connection refused" in err and "invalid data in the commit" not in err
    assert "s3cret" not in err and len(err.strip().splitlines()) == 1
    code, _, err = run_cli(capsys, "export", "--study", "all_failed", "--storage", url, "-o", str(tmp_path / "a"))
    assert code == 2 and "has no complete trial (2 failed); pick one with --trial N" in err
    assert not (tmp_path / "a").exists()


# ---- export -> train ------------------------------------------------------------------------------
def test_export_then_train_reproduces_the_stored_accuracy(stored, capsys, tmp_path):
    url, _ = stored
    exported = tmp_path / "best.yaml"
    code, out, _ = run_cli(capsys, "export", "--study", "mixed", "--storage", url, "--top", "2", "-o", str(exported))
    assert code == 0
    docs = list(yaml.safe_load_all(exported.read_text()))
    trials = {t.number: t for t in storage_trials(url, "mixed")}
    assert [d["meta"]["trial"] for d in docs] == sorted(
        (n for n, t in trials.items() if t.state == TrialState.COMPLETE), key=lambda n: (-trials[n].value, n))[:2]
    assert all(d["meta"]["study"] == "mixed" and d["meta"]["value"] == trials[d["meta"]["trial"]].value for d in docs)
    assert all(d["epochs"] == 3 and d["seed"] == 0 and d["threads"] == 1 for d in docs)
    metrics = tmp_path / "metrics.json"
    # A fresh process on torch's default thread count: the exported `threads` must pin it.
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    subprocess.run([sys.executable, "-m", "drltune.cli", "train", "--config", str(exported), "--quiet",
                    "--metrics-out", str(metrics)], check=True, env=env, capture_output=True, text=True)
    runs = json.loads(metrics.read_text())["runs"]
    for doc, run in zip(docs, runs):
        trial = trials[doc["meta"]["trial"]]
        assert run["best_val_acc"] == trial.value
        assert run["best_epoch"] == trial.user_attrs["best_epoch"]
        assert [r["val_acc"] for r in run["history"]] == [trial.intermediate_values[s] for s in range(3)]


def test_export_a_pruned_trial_by_number(stored, capsys):
    url, _ = stored
    code, out, _ = run_cli(capsys, "export", "--study", "mixed", "--storage", url, "--trial", "4", "-o", "-")
    assert code == 0 and "trial 4 was PRUNED after 2 epoch(s); this config trains all 3" in out
    doc = yaml.safe_load(out)
    assert doc["meta"]["state"] == "PRUNED" and doc["method"] == "dr" and doc["params"]["alpha"] == 5.0
    code, _, err = run_cli(capsys, "export", "--study", "mixed", "--storage", url, "--trial", "99", "-o", "-")
    assert code == 2 and "has no trial 99" in err


# ---- what makes a method choice defensible --------------------------------------------------------
def test_noise_reinits_and_importance_sample_size(stored, capsys):
    url, _ = stored
    code, out, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--format", "json", "--no-html")
    data = json.loads(out)
    trials = storage_trials(url, "mixed")
    # 24 validation clips (TINY n_val): one clip is 1/24 of the accuracy
    assert data["noise"].startswith("one validation clip = 4.2 points of val_acc (24 clips); the top 3 complete")
    assert any("importances come from only 4 complete trials (fewer than 20)" in n for n in data["notes"])
    fired = {t.number: sum(1 for r in t.user_attrs.get("history", []) if r.get("reinit")) for t in trials}
    assert {r["number"]: r["reinits"] for r in data["top"]} == {r["number"]: fired[r["number"]] for r in data["top"]}
    assert fired[1] == 1 and fired[0] == 0  # DR with reinit_epoch 1, reinit_num 1 over 3 epochs fires once


def test_html_tables_noise_and_reinit_marks(stored, capsys, tmp_path):
    url, _ = stored
    target = tmp_path / "r.html"
    code, _, _ = run_cli(capsys, "explore", "--study", "mixed", "--storage", url, "--html", str(target))
    page = target.read_text()
    best = page.split("<h2>Best trial per method</h2>")[1].split("</section>")[0]
    assert best.count("<tr>") + best.count('<tr class="incomplete">') == 1 + 2  # header + baseline, dr
    assert "<th>re-inits fired</th>" in best and "<th>epochs run</th>" in best and "<th>state</th>" in best
    top = page.split("<h2>Top trials</h2>")[1].split("</section>")[0]
    assert top.startswith('<table class="trials">') and "<pre>" not in top
    assert '<p class="noise"><b>Noise:</b> one validation clip = 4.2 points' in page
    assert '"name":"DR re-init"' in page and '"symbol":"triangle-down"' in page


def test_a_method_without_a_complete_trial_is_labelled_not_dropped(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'one.db'}"
    study = new_study(url, "only")
    dist = {"method": CategoricalDistribution(["baseline", "ogm_ge"])}
    study.add_trial(optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, params={"method": "baseline"},
                                              distributions=dist, intermediate_values={0: 0.4, 1: 0.5}))
    study.add_trial(optuna.trial.create_trial(state=TrialState.PRUNED, params={"method": "ogm_ge"},
                                              distributions=dist, intermediate_values={0: 0.45}))
    code, out, _ = run_cli(capsys, "explore", "--storage", url, "--html", str(tmp_path / "r.html"))  # no --study
    assert code == 0 and out.startswith("study only")
    assert "note: no complete trial for ogm_ge: the best-per-method rows show the best pruned" in out
    rows = out.split("best trial per method")[1].split("best trial per fusion")[0]
    assert re.search(r"ogm_ge +1 +PRUNED +0\.4500 +unknown +1 ", rows)  # state and epochs run say it
    page = (tmp_path / "r.html").read_text()
    assert "not shown, no complete trial: ogm_ge" in page and '<tr class="incomplete"><td>ogm_ge</td>' in page


def test_study_is_optional_when_the_storage_holds_one_and_studies_lists_them(stored, capsys, tmp_path):
    url, _ = stored
    code, _, err = run_cli(capsys, "explore", "--storage", url, "--no-html")
    assert code == 2 and "holds 4 studies; pick one with --study (all_failed, empty, mixed, only_running" in err
    code, out, _ = run_cli(capsys, "studies", "--storage", url)
    best = max((t for t in storage_trials(url, "mixed") if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    date = r"started \d{4}-\d\d-\d\d \d\d:\d\d"
    assert code == 0 and [re.sub(date, "started D", line) for line in out.splitlines()] == [
        "all_failed  2 trials  dataset synthetic  started D", "  no complete trial; 2 failed",
        "empty  0 trials  dataset synthetic  started -", "  no complete trial; no trials",
        "mixed  7 trials  dataset synthetic  started D",
        f"  best {best.value:.4f} (#{best.number} {best.params['method']}/{best.params['fusion']}); "
        "4 complete, 1 pruned, 1 failed, 1 running",
        "only_running  1 trials  dataset synthetic  started D", "  no complete trial; 1 running"]
    single = f"sqlite:///{tmp_path / 'single.db'}"
    failed_trial(new_study(single, "lonely"), 0.1)
    code, out, _ = run_cli(capsys, "explore", "--storage", single, "--no-html")
    assert code == 0 and out.startswith("study lonely (dataset synthetic): 1 trial: ")


def test_noise_line_states_the_seed_spread_that_verify_measured():
    import pandas as pd

    from drltune.explore.summary import noise_line

    frame = pd.DataFrame({"state": ["COMPLETE"] * 3, "value": [0.5, 0.49, 0.48]})
    accuracies = [k / 240 for k in range(100, 130)]
    line = noise_line(frame, accuracies)
    assert line.startswith("one validation clip = 0.42 points of val_acc (240 clips); the top 3 complete trials "
                           "lie within 5 clip(s)")
    assert line.endswith("the seed spread is not measured yet (`drltune verify` measures it)")
    verified = [{"trial": 7, "seeds": [1, 2, 3], "test_acc_std": 0.012}]
    assert noise_line(frame, accuracies, verified).endswith(
        "seed spread (drltune verify, test_acc std): 1.2 points over 3 seeds (trial 7)")
