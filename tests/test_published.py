"""The published CREMA-D configs as data, and `search --seed-with` enqueueing them once per study."""
from __future__ import annotations

import threading
import uuid

import optuna
import pytest
import yaml

from drltune import record
from drltune.config import TrialConfig
from drltune.methods import METHODS
from drltune.published import PUBLISHED_FILE, check_published, published, unpublished
from drltune.search.runner import DEFAULT_SPACE
from drltune.search.seed_trials import SEEDED_WITH, enqueue_published, seed_params
from drltune.search.space_file import load_space, parse_space
from drltune.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


def test_every_entry_resolves_and_every_registered_method_is_published_or_listed_as_not():
    assert check_published() == []
    entries, listed = published("papers"), unpublished()
    assert set(METHODS.names()) <= set(entries) | set(listed)
    assert published("papers")["dr"].values["params"] == {"reinit_epoch": 20, "reinit_num": 3, "alpha": 3.0,
                                                         "diag_split": "val", "kmeans_n_init": 10}
    bb = published("balancebenchmark")
    assert {k: bb["baseline"].values[k] for k in ("optimizer", "lr", "weight_decay", "lr_schedule", "lr_step",
                                                 "lr_gamma", "epochs", "batch_size")} == {
        "optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.01, "lr_schedule": "step", "lr_step": 10,
        "lr_gamma": 0.1, "epochs": 30, "batch_size": 32}


def test_check_names_a_method_without_an_entry_and_an_entry_that_does_not_resolve(tmp_path):
    data = yaml.safe_load(PUBLISHED_FILE.read_text())
    del data["methods"]["pmr"]
    data["methods"]["dr"]["config"]["params"]["reinit_epoch"] = 0  # below the declared [1, 1000]
    data["methods"]["ogm_ge"]["config"]["lr_schedule"] = "cyclic"
    path = tmp_path / "published.yaml"
    path.write_text(yaml.safe_dump(data))
    problems = check_published(path)
    assert any(p.startswith("pmr: registered, but neither") for p in problems)
    assert any(p.startswith("papers: dr:") and "reinit_epoch" in p for p in problems)
    assert any(p.startswith("papers: ogm_ge:") and "cyclic" in p for p in problems)
    data["unpublished"] = {"pmr": "no CREMA-D script"}
    path.write_text(yaml.safe_dump(data))
    assert not any(p.startswith("pmr:") for p in check_published(path))


def test_seed_params_keep_what_the_space_searches_scale_epochs_and_say_what_they_drop():
    space = load_space(DEFAULT_SPACE, max_epochs=9)
    params, notes = seed_params(space, published("papers")["dr"], max_epochs=9)
    # lr 2e-3 is inside [1e-3, 1e-1]; batch 64 and sgd are choices; reinit_epoch 20 of 90 epochs -> 2 of 9
    assert params["method"] == "dr" and params["lr"] == pytest.approx(2e-3)
    assert params["batch_size"] == 64 and params["optimizer"] == "sgd" and params["fusion"] == "concat"
    assert params["dr.reinit_epoch"] == 2 and params["dr.reinit_num"] == 3 and params["dr.alpha"] == 3.0
    assert "epochs: published 90 -> the search's 9; epoch-valued settings scaled x0.1" in notes
    assert any(n.startswith("weight_decay: published 0.0001 not applied") for n in notes)
    assert any(n.startswith("dr.diag_split: published 'val' not applied") for n in notes)
    # adamw is not among the default space's optimizers: left to the sampler, and said
    params, notes = seed_params(space, published("papers")["agm"], max_epochs=9)
    assert "optimizer" not in params and any("'adamw' is not among the space's choices" in n for n in notes)
    clipped = parse_space({"space": {"lr": {"low": 0.01, "high": 0.1, "log": True}}, "methods": {"baseline": {}}}, 9)
    params, notes = seed_params(clipped, published("papers")["baseline"], max_epochs=9)
    assert params["lr"] == 0.01 and any(n.startswith("lr: published 0.002 -> 0.01") for n in notes)


def _study(url: str, name: str) -> optuna.Study:
    return optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize", load_if_exists=True)


def test_the_first_trials_are_the_published_configs_and_a_resume_does_not_enqueue_them_again(tmp_path):
    url, name = f"sqlite:///{tmp_path}/s.db", "seeded"
    space = load_space(DEFAULT_SPACE, max_epochs=9)
    study = _study(url, name)
    lines: list[str] = []
    assert enqueue_published(study, space, "papers", 9, 20, lines.append) == len(space.methods)
    assert enqueue_published(_study(url, name), space, "papers", 9, 20, lines.append) == 0  # a resume
    assert "the study was seeded with papers configurations before" in lines[-1]
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert [t.user_attrs[record.SEEDED_FROM] for t in waiting] == [f"papers:{m}" for m in published("papers")
                                                                    if m in space.methods]
    # what the search's bridge does with the first trial it asks for: the published DR config
    base = TrialConfig(dataset="synthetic", epochs=9)
    cfgs = [space.config_for(study.ask(), base) for _ in waiting]
    dr = next(c for c in cfgs if c.method == "dr")
    assert (dr.lr, dr.batch_size, dr.optimizer, dr.params["reinit_epoch"]) == (pytest.approx(2e-3), 64, "sgd", 2)


def test_two_drivers_resuming_together_enqueue_once(tmp_path):
    url, name = f"sqlite:///{tmp_path}/race.db", f"race-{uuid.uuid4().hex[:6]}"
    _study(url, name)
    space = load_space(DEFAULT_SPACE, max_epochs=9)
    studies = [_study(url, name) for _ in range(2)]  # two drivers: their own storage objects
    barrier, counts = threading.Barrier(2, timeout=20), []
    import drltune.search.seed_trials as seeding

    original = seeding.claim_seeding

    def claim_together(study, value):  # both have decided to seed before either writes
        barrier.wait()
        return original(study, value)

    seeding.claim_seeding = claim_together
    try:
        threads = [threading.Thread(target=lambda s=s: counts.append(
            enqueue_published(s, space, "papers", 9, 20, lambda line: None))) for s in studies]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        seeding.claim_seeding = original
    assert sorted(counts) == [0, len(space.methods)]
    assert len(studies[0].get_trials(states=(optuna.trial.TrialState.WAITING,))) == len(space.methods)
    assert studies[0]._storage.get_study_system_attrs(studies[0]._study_id)[SEEDED_WITH]["source"] == "papers"


def test_the_limit_caps_the_enqueued_configs_to_the_trials_left():
    study = optuna.create_study(direction="maximize")
    space = load_space(DEFAULT_SPACE, max_epochs=9)
    lines: list[str] = []
    assert enqueue_published(study, space, "balancebenchmark", 9, 2, lines.append) == 2
    assert f"2 trials left to run: {len(space.methods) - 2} more not enqueued" in lines[0]
    assert [t.user_attrs[record.SEEDED_FROM] for t in study.trials] == ["balancebenchmark:baseline",
                                                                        "balancebenchmark:dr"]


def test_the_flags_reach_the_search_and_the_compare(monkeypatch, tmp_path):
    import drltune.compare.run as compare_run
    import drltune.search.runner as runner
    from drltune.cli import main

    seen = {}
    monkeypatch.setattr(runner, "run_search", lambda spec, echo, after_trials=None: seen.setdefault("search", spec))
    monkeypatch.setattr(compare_run, "run_compare", lambda spec, echo: seen.setdefault("compare", spec) and [])
    main(["search", "--seed-with", "papers", "--trials", "3"])
    assert seen["search"].seed_with == "papers"
    main(["compare", "--methods", "dr, baseline,dr", "--trials-per-method", "4", "--seeds", "2",
          "--published", "none", "--name", "cmp", "--csv", str(tmp_path / "b.csv")])
    spec = seen["compare"]
    assert (spec.methods, spec.trials_per_method, spec.seeds, spec.published, spec.name) == (
        ["dr", "baseline"], 4, 2, None, "cmp")
    assert (tmp_path / "b.csv").read_text().startswith("method,study,trials,")
