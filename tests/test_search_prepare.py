"""A search's preparation (`runner.prepare`): the spec alone decides the study's name, space, base
config, pruner, sampler and stored attributes; no storage is opened and Ray is not started."""
from __future__ import annotations

import pytest

from drltune.errors import DrltuneError
from drltune.search import runner
from drltune.search.runner import SearchSpec, prepare


@pytest.fixture
def no_storage_no_ray(tmp_path, monkeypatch):
    """Opening a storage or starting Ray fails the test; the current directory stays empty."""
    from drltune.search import ray_start, storage, tune_run

    def refused(*args, **kwargs):
        raise AssertionError("preparing a search touched a storage or Ray")

    for module, name in ((storage, "open_writer"), (storage, "open_reader"), (runner, "open_writer"),
                         (ray_start, "init_ray"), (tune_run, "init_ray")):
        monkeypatch.setattr(module, name, refused)
    monkeypatch.chdir(tmp_path)
    yield
    assert list(tmp_path.iterdir()) == []


def test_prepare_decides_the_study_from_the_spec_alone(no_storage_no_ray):
    plan = prepare(SearchSpec(trials=8, max_epochs=3, sampler="random", pruner="sha", seed=5,
                              overrides=["dataset_params.n_train=40"], command="drltune search"))
    assert plan.name == "synthetic-default" and plan.base.epochs == 3 and plan.base.dataset_params["n_train"] == 40
    assert plan.attrs["sampler_args"] == {"name": "random", "seed": 5, "seed_per_trial": True}
    assert plan.attrs["pruner_args"]["reduction_factor"] == 3
    assert plan.attrs["max_epochs"] == 3 and plan.attrs["sampler"] == "random" and plan.attrs["pruner"] == "sha"
    assert plan.attrs["space"] == plan.space.text and plan.attrs["command"] == "drltune search"
    assert plan.space_line == f"search space {runner.DEFAULT_SPACE}:"


def test_prepare_resumes_on_the_space_a_study_began_with(no_storage_no_ray):
    stored = "methods: {baseline: {}}\n"
    plan = prepare(SearchSpec(max_epochs=3), stored_space=stored)
    assert plan.space.text == stored and list(plan.space.methods) == ["baseline"]
    assert plan.space_line.startswith("search space: the one study 'synthetic-default' began with")
    assert plan.attrs["space"] == stored


def test_prepare_refuses_a_mistake_before_anything_exists(no_storage_no_ray):
    with pytest.raises(DrltuneError, match="batch_size: 0 is outside"):
        prepare(SearchSpec(max_epochs=3, overrides=["batch_size=0"]))
