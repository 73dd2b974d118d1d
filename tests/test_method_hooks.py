"""What a method knows about itself lives on its class: epoch limits and its dashboard Note rows.

A method added in one file gets the epoch-budget warning and its own Note table without an
edit anywhere else; and `first_line`, the one way an exception becomes one line of an error.
"""
from __future__ import annotations

from typing import Any

import pytest

from drltune.epoch_budget import inert_values
from drltune.errors import first_line, typed_line
from drltune.methods import METHODS
from drltune.methods.base import Method
from drltune.params import Param


@pytest.fixture
def toy_method():
    class Toy(Method):
        name = "toy_hooks"
        description = "a method that exists only in this test"
        params = (Param("kick", "int", 3, "kicks in after this epoch", 0, 100, is_epoch=True),)
        epoch_limits = (("kick", lambda e: e - 3, "kick-in"),)

        @classmethod
        def note_rows(cls, history: list[dict[str, Any]]) -> list[str]:
            return [f"kicked {sum(bool(r.get('kicked')) for r in history)} times"]

    METHODS.register(Toy)
    yield Toy
    METHODS.unregister(Toy.name)


def test_epoch_limits_come_from_the_method(toy_method):
    assert inert_values("toy_hooks", {"kick": [1, 2, 5]}, 4) == [("kick", "kick-in", 1, [2, 5])]
    assert inert_values("toy_hooks", {"kick": [1]}, 4) == []


def test_dr_and_arl_declare_their_limits():
    assert inert_values("dr", {"reinit_epoch": [2, 3]}, 4) == [("reinit_epoch", "re-init interval", 2, [3])]
    assert inert_values("arl", {"start": [3]}, 4) == [("start", "warm-up end", 2, [3])]
    assert inert_values("baseline", {"reinit_epoch": [99]}, 4) == []  # not its parameter: no rule


def test_a_trials_note_carries_its_methods_rows(toy_method):
    from optuna.trial import TrialState, create_trial

    from drltune import record
    from drltune.search.dashboard_view import trial_note

    trial = create_trial(state=TrialState.COMPLETE, value=0.5, params={}, distributions={},
                         user_attrs={record.HISTORY: [{"epoch": 0, "kicked": True}, {"epoch": 1}],
                                     record.CONFIG: {"method": "toy_hooks"}})
    assert "kicked 1 times" in trial_note(trial)
    assert Method.note_rows([{"epoch": 0, "reinit": True}]) == []  # the default adds nothing


def test_first_line():
    assert first_line(ValueError("bad thing\n  context\n  more")) == "bad thing"
    assert first_line(ValueError("  \n")) == "ValueError"


def test_typed_line():
    assert typed_line(OSError("moov atom not found\n  at byte 12")) == "OSError: moov atom not found"
    assert typed_line(EOFError()) == "EOFError"
