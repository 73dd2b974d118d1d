"""Adding a method is one class in one file plus one import line: a toy method (tests/toy_method.py)
is held to the method contract and shows up in `drltune methods`, in a search space's `declared`
block, on `drltune train`'s epoch lines and in the study report, with no list edited anywhere."""
from __future__ import annotations

import sys
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution
from test_method_contract import check_declarations, check_training

from drltune.cli import main
from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.methods import METHODS, Method
from drltune.params import Param
from drltune.resolve import resolve
from drltune.search.space_file import parse_space

TINY = ["--set", "encoder_width=4", "--set", "batch_size=16", "--set", "dataset_params.n_train=60",
        "--set", "dataset_params.n_val=24", "--set", "dataset_params.n_test=24",
        "--set", "dataset_params.audio_freq=16", "--set", "dataset_params.audio_time=16",
        "--set", "dataset_params.image_size=16"]


@pytest.fixture
def toy():
    import toy_method  # the one import line

    yield toy_method.ToyScaledLoss
    METHODS.unregister("toy")
    sys.modules.pop("toy_method", None)


@pytest.fixture
def registered():
    """Register a class for one test (the contract's negative cases)."""
    names = []

    def add(cls):
        METHODS.register(cls)
        names.append(cls.name)
        return cls

    yield add
    for name in names:
        METHODS.unregister(name)


def test_toy_keeps_the_contract(toy, tiny_config, tmp_path):
    check_declarations(toy)
    check_training(toy, tiny_config(method="toy", params={"scale": 2.0}), tmp_path)


def test_a_method_whose_epoch_records_vary_breaks_the_contract(registered, tiny_config, tmp_path):
    @registered
    class Flaky(Method):
        name = "flaky"
        description = "reports an undeclared metric after epoch 0"
        metric_keys = ("flaky_metric",)

        def on_epoch_end(self, epoch: int) -> dict[str, Any]:
            return {"flaky_metric": 1.0, **({"late_metric": 2.0} if epoch > 0 else {})}

    check_declarations(Flaky)
    with pytest.raises(AssertionError, match="epoch records differ"):
        check_training(Flaky, tiny_config(method="flaky"), tmp_path)


def test_a_method_with_an_invalid_default_breaks_the_contract(registered):
    @registered
    class BadDefault(Method):
        name = "bad_default"
        description = "its default lies outside its own range"
        params = (Param("alpha", "float", 20.0, "strength", 0.0, 10.0),)

    with pytest.raises(DrltuneError, match="above the maximum"):
        check_declarations(BadDefault)


def test_registration_reads_the_class_name():
    with pytest.raises(TypeError, match="register the method class itself"):
        METHODS.register("twice_named")
    with pytest.raises(ValueError, match="registered twice"):
        METHODS.register(METHODS.get("dr"))


def test_toy_is_listed(toy, capsys):
    main(["methods"])
    out = capsys.readouterr().out
    assert f"toy: {toy.description}" in out and "scale=1.0 [0.1, 10.0] search [0.5, 2.0]" in out


def test_toy_declared_block_searches_its_declared_range(toy):
    space = parse_space({"methods": {"toy": "declared"}}, 8)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        trial = study.ask()
        cfg = space.config_for(trial, TrialConfig(epochs=8, encoder_width=4))
        resolve(cfg)
        assert cfg.method == "toy" and 0.5 <= trial.params["toy.scale"] <= 2.0


def test_toy_epoch_line(toy, capsys):
    main(["train", "--set", "method=toy", "--set", "params.scale=2", "--epochs", "2", *TINY])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2 and all("toy scale 2.00" in line for line in lines)


def test_toy_parameters_have_their_report_figure(toy):
    from drltune.explore.load import history_frame, trials_frame
    from drltune.explore.report import render_html
    from drltune.explore.summary import summarize

    study = optuna.create_study(study_name="toys", direction="maximize")
    dists = {"method": CategoricalDistribution(["toy"]), "toy.scale": FloatDistribution(0.5, 2.0)}
    for scale, value in ((0.5, 0.4), (1.0, 0.5), (2.0, 0.45)):
        study.add_trial(optuna.trial.create_trial(
            params={"method": "toy", "toy.scale": scale}, distributions=dists, value=value,
            intermediate_values={0: value}, user_attrs={"config": {"method": "toy", "fusion": "concat"}}))
    page = render_html(summarize(study), trials_frame(study), history_frame(study))
    assert "<h2>Toy parameters</h2>" in page and "Toy parameters against accuracy (3 complete Toy trials)" in page
    assert "loss scale" in page
