"""The contract every registered method keeps, checked over `METHODS.names()`: a new method file is
tested as soon as it is registered, without being added to any list here.

`check_declarations` and `check_training` are plain functions so that a test can hold a toy method
to the same contract (tests/test_toy_method.py).
"""
from __future__ import annotations

import pytest
import torch

from drltune.config import TrialConfig
from drltune.methods import METHODS, Method
from drltune.params import Param
from drltune.resolve import resolve
from drltune.train import Trainer

NUMERIC = ("int", "float")


class Interrupted(Exception):
    pass


def check_declarations(method: type[Method]) -> None:
    """Name, description and parameters are well formed; every default is a valid value."""
    assert issubclass(method, Method)
    assert METHODS.get(method.name) is method
    assert isinstance(method.description, str) and method.description.strip()
    names = [p.name for p in method.params]
    assert len(names) == len(set(names)), f"{method.name}: a parameter is declared twice"
    for p in method.params:
        assert isinstance(p, Param) and p.help.strip(), p
        assert p.validate(p.default, "params") == p.default, p
        if p.kind in NUMERIC:
            low, high = p.search_range
            assert p.low <= low <= high <= p.high, f"{method.name}.{p.name}: search range outside [low, high]"
    kinds = {p.name: p.kind for p in method.params}
    for starts, ends in method.windows:
        assert kinds.get(starts) in NUMERIC and kinds.get(ends) in NUMERIC, (starts, ends)
    for param in method.report_axes:
        assert kinds.get(param) in NUMERIC, f"{method.name}: report axis {param!r} is no numeric parameter"
    assert isinstance(method.title(), str) and method.title()


def final_weights(trainer: Trainer) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def assert_resumes_exactly(config: TrialConfig, checkpoint_dir, whole: Trainer, expected) -> None:
    """A run of `config` stopped after epoch 0 and resumed from its checkpoint ends where the
    uninterrupted run `whole` (its result `expected`) ended: same history, same weights."""

    def stop_after_0(epoch, record):
        if epoch == 0:
            raise Interrupted

    with pytest.raises(Interrupted):
        Trainer(config).fit(report=stop_after_0, checkpoint_dir=checkpoint_dir)
    resumed = Trainer(config)
    result = resumed.fit(checkpoint_dir=checkpoint_dir)
    strip = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert strip(result.history) == strip(expected.history)
    assert torch.equal(final_weights(resumed), final_weights(whole))


def check_training(method: type[Method], config: TrialConfig, checkpoint_dir) -> None:
    """At its defaults it resolves and trains; every epoch record carries the method's metric keys
    (the same keys every epoch); its epoch text is a string; an interrupted run resumes exactly."""
    resolved = resolve(config)
    assert set(resolved.params) == {p.name for p in method.params}
    whole = Trainer(config)
    expected = whole.fit()
    keys = set(expected.history[0])
    assert set(method.metric_keys) <= keys
    for record in expected.history:
        assert set(record) == keys, "epoch records differ in their keys"
        assert isinstance(method.epoch_text(record), str)
    assert_resumes_exactly(config, checkpoint_dir, whole, expected)


@pytest.mark.parametrize("name", METHODS.names())
def test_declarations(name):
    check_declarations(METHODS.get(name))


@pytest.mark.parametrize("name", METHODS.names())
def test_trains_at_its_defaults_and_resumes(tiny_config, tmp_path, name):
    check_training(METHODS.get(name), tiny_config(method=name), tmp_path)
