"""`search --objective`: what each objective stores, that a study keeps its own, and that a
two-objective study's Pareto front is what explore, export and the search's summary show."""
from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.search.bridge import OptunaBridge
from drltune.search.liveness import SharedBudget
from drltune.search.objective import pareto_front, parse_objective, study_objective
from drltune.search.pruning import ReinitAwarePruner
from drltune.search.space_file import parse_space
from drltune.search.storage import open_storage
from drltune.search.study import create_or_resume
from drltune.search.trainable import epoch_result

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "space: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}\nmethods: {baseline: {}}"
ATTRS = {"dataset": "synthetic", "space": SPACE, "max_epochs": 3}


def study_for(tmp_path, text: str, pruner: optuna.pruners.BasePruner | None = None, name: str = "s") -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True)
    pruner = pruner or optuna.pruners.NopPruner()
    return create_or_resume(name, storage, optuna.samplers.RandomSampler(seed=0), pruner, ATTRS,
                            parse_objective(text))[0]


def bridge_for(study: optuna.Study, text: str) -> OptunaBridge:
    space = parse_space(yaml.safe_load(SPACE), max_epochs=3)
    return OptunaBridge(study, space, TrialConfig(epochs=3, encoder_width=4), SharedBudget(study, 10, 2),
                        objective=parse_objective(text))


def epoch(n: int, acc: float, f1: float, audio: float, visual: float) -> dict:
    return {"epoch": n, "val_acc": acc, "val_f1": f1, "val_acc_audio": audio, "val_acc_visual": visual}


def final(rec: dict, best: float, best_epoch: int) -> dict:
    return {**epoch_result(rec), "best_val_acc": best, "best_epoch": best_epoch, "test_acc": 0.5, "test_f1": 0.4,
            "test_acc_audio": 0.3, "test_acc_visual": 0.2}


EPOCHS = [epoch(0, 0.4, 0.30, 0.40, 0.10), epoch(1, 0.7, 0.65, 0.60, 0.45), epoch(2, 0.6, 0.70, 0.50, 0.50)]


def run_trial(bridge: OptunaBridge, ray_id: str = "r") -> optuna.trial.FrozenTrial:
    number = bridge.suggest(ray_id)["optuna_trial"]
    for rec in EPOCHS[:2]:
        assert bridge.on_epoch(ray_id, epoch_result(rec)) is False
    bridge.on_epoch(ray_id, final(EPOCHS[2], best=0.7, best_epoch=1))
    bridge.on_trial_complete(ray_id, final(EPOCHS[2], best=0.7, best_epoch=1))
    return bridge.study.trials[number]


@pytest.mark.parametrize("text, message", [
    ("val_loss", "--objective val_loss: unknown metric 'val_loss'; choose from val_acc, val_f1, modality_gap"),
    ("val_acc,val_acc", "one metric, or two different ones"),
    ("val_acc,val_f1,modality_gap", "one metric, or two different ones"),
    ("modality_gap", "the first metric must be val_acc or val_f1"),
])
def test_bad_objectives_are_refused(text, message):
    with pytest.raises(DrltuneError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_objective(text)


def test_val_acc_stays_as_it_was(tmp_path):
    study = study_for(tmp_path, "val_acc")
    t = run_trial(bridge_for(study, "val_acc"))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE] and study.metric_names == ["val_acc"]
    assert study.user_attrs["objective"] == ["val_acc"]
    assert t.value == 0.7 and t.intermediate_values == {0: 0.4, 1: 0.7, 2: 0.6}


def test_val_f1_is_reported_pruned_on_and_read_at_the_selected_epoch(tmp_path):
    study = study_for(tmp_path, "val_f1")
    t = run_trial(bridge_for(study, "val_f1"))
    assert study.metric_names == ["val_f1"]
    assert t.value == 0.65  # epoch 1, the trainer's selected (best val_acc) epoch, not the max val_f1 of 0.70
    assert t.intermediate_values == {0: 0.30, 1: 0.65, 2: 0.70}
    pruning = study_for(tmp_path, "val_f1", ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.35), 2), "p")
    bridge = bridge_for(pruning, "val_f1")
    bridge.suggest("p")
    assert bridge.on_epoch("p", epoch_result(EPOCHS[0])) is True  # val_f1 0.30 < 0.35 (its val_acc is 0.4)


def test_two_objectives_store_both_values_unpruned(tmp_path):
    threshold = ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.99), 2)  # would cut every epoch
    study = study_for(tmp_path, "val_acc,modality_gap", threshold)
    t = run_trial(bridge_for(study, "val_acc,modality_gap"))
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE, optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["val_acc", "modality_gap"]
    assert study.user_attrs["objective"] == ["val_acc", "modality_gap"]
    assert t.state == TrialState.COMPLETE and t.values == pytest.approx([0.7, 0.15])  # |0.60 - 0.45| at epoch 1
    assert t.intermediate_values == {} and len(t.user_attrs["history"]) == 3


def test_a_study_keeps_its_objective(tmp_path):
    first = study_for(tmp_path, "val_acc,modality_gap")
    before = (first.user_attrs, first._storage.get_study_system_attrs(first._study_id))
    with pytest.raises(DrltuneError) as refused:
        study_for(tmp_path, "val_acc")
    assert (first.user_attrs, first._storage.get_study_system_attrs(first._study_id)) == before  # nothing written
    assert str(refused.value) == ("study 's' was searched with --objective val_acc,modality_gap, not val_acc; resume "
                                  "it with --objective val_acc,modality_gap or use another --study")
    study = study_for(tmp_path, "val_acc,modality_gap")  # the same objective resumes
    assert study_objective(study).names == ["val_acc", "modality_gap"]


def test_a_study_from_before_objectives_is_a_val_acc_study(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    old = optuna.create_study(study_name="s", storage=storage, direction="maximize")
    old.set_user_attr("dataset", "synthetic")
    old.add_trial(create_trial(value=0.5, params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 0.1)}))
    with pytest.raises(DrltuneError, match="was searched with --objective val_acc, not val_f1"):
        study_for(tmp_path, "val_f1")
    assert study_objective(optuna.load_study(study_name="s", storage=storage)).names == ["val_acc"]


def front_study(tmp_path) -> optuna.Study:
    """Five complete trials: #1, #2 and #4 are the front (#0 and #3 are beaten on both values)."""
    study = study_for(tmp_path, "val_acc,modality_gap")
    config = TrialConfig(epochs=3, encoder_width=4).to_dict()
    for acc, gap in ((0.5, 0.3), (0.8, 0.2), (0.6, 0.05), (0.55, 0.25), (0.7, 0.1)):
        study.add_trial(create_trial(values=[acc, gap], params={"lr": 0.01},
                                     distributions={"lr": FloatDistribution(1e-3, 0.1)},
                                     user_attrs={"config": config, "best_epoch": 1, "test_acc": acc - 0.1}))
    return study


def test_explore_export_and_the_summary_show_the_pareto_front(tmp_path):
    from drltune.explore.export import export_yaml, select_trials
    from drltune.explore.summary import render_json, render_table, summarize
    from drltune.search.progress import summary_lines

    study = front_study(tmp_path)
    assert [t.number for t in pareto_front(study)] == [1, 4, 2]  # best val_acc first
    summary = summarize(study)
    assert list(summary.pareto["number"]) == [1, 4, 2]
    table = render_table(summary)
    assert "Pareto front: 3 complete trial(s) that no other beats on both val_acc and modality_gap" in table
    front_rows = table.split("Pareto front")[1].split("\n\n")[0].splitlines()[2:]
    assert [row.split()[:3] for row in front_rows] == [["1", "0.8000", "0.2000"], ["4", "0.7000", "0.1000"],
                                                        ["2", "0.6000", "0.0500"]]
    payload = json.loads(render_json(summary))
    assert payload["objective"] == ["val_acc", "modality_gap"]
    assert [row["number"] for row in payload["pareto_front"]] == [1, 4, 2]
    assert [t.number for t in select_trials(study)] == [1] and [t.number for t in select_trials(study, 2)] == [1, 4]
    text = export_yaml(study, select_trials(study, numbers=(2,)))
    assert text.startswith("# study s, trial 2: val_acc 0.6000, modality_gap 0.0500 at epoch 1 of 3")
    meta = yaml.safe_load(text.split("\n", 2)[2])["meta"]
    assert meta["values"] == {"val_acc": 0.6, "modality_gap": 0.05} and meta["pareto_front"] is True
    from drltune.explore.load import history_frame, trials_frame
    from drltune.explore.report import render_html

    page = render_html(summary, trials_frame(study), history_frame(study))
    assert "<h2>Pareto front (val_acc and modality_gap)</h2>" in page
    assert "Pareto front: val_acc (up is better) against modality_gap (left is better)" in page
    lines = summary_lines(study)
    assert lines[0].startswith("Pareto front of study 's': 3 trial(s)")
    assert [line.split()[0] for line in lines[1:]] == ["#1", "#4", "#2"]


def test_progress_lines_and_dashboard_notes_name_both_objectives(tmp_path):
    from drltune.search.dashboard_view import study_note, trial_note
    from drltune.search.progress import Outcome, Progress

    study = front_study(tmp_path)
    lines: list[str] = []
    Progress(study, 8, lines.append, running=lambda: 1)(Outcome(2, "complete", 3, 0.6, values=(0.6, 0.05)))
    assert lines == ["#2 complete after 3 epochs, val_acc 0.6000, modality_gap 0.0500\n    [5/8] complete 5, pruned 0, "
                     "failed 0, running 1 | new Pareto front (val_acc vs modality_gap): #1, #4, #2"]
    note = trial_note(study.trials[2], "s", study.metric_names)
    assert "val_acc **0.6000**, modality_gap **0.0500** at epoch 1 of 3 (the selected epoch)." in note
    assert "Objectives **val_acc and modality_gap** (val_acc maximised, modality_gap minimised)" in study_note(
        study.user_attrs)


@pytest.mark.parametrize("args, message", [
    (["--objective", "val_acc,val_loss"], "error: --objective val_acc,val_loss: unknown metric 'val_loss'"),
    (["--objective", "val_f1", "--race", "2"], "error: --race ranks trials by their mean val_acc, not by "
                                               "--objective val_f1: pass --race 0"),
])
def test_objective_mistakes_are_one_line_and_store_nothing(args, message, tmp_path, monkeypatch, capsys):
    from drltune.cli import main

    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["search", "--trials", "2", "--max-epochs", "2", *args])
    err = capsys.readouterr().err
    assert exit_.value.code != 0 and err.startswith(message) and err.count("\n") == 1, err
    assert not (tmp_path / "studies").exists()
