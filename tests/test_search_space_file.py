"""The space file parser's errors (drltune.search.space_file): one line that names the file and the key.

tests/test_search_space.py holds the common mistakes (unknown keys, bad ranges); these are the rest,
each checked word for word as `drltune search --space FILE` prints it after `error: `.
"""
from __future__ import annotations

import pytest

from drltune.errors import DrltuneError
from drltune.search.space_file import load_space

BASELINE = "methods: {baseline: {}}\n"


@pytest.mark.parametrize("text, message", [
    (BASELINE + "fixed: {lr: [0.1, 0.01]}",
     "fixed.lr: a list fixes no single value; to search these values move it under space: as "
     "lr: {choices: [0.1, 0.01]}"),
    (BASELINE + "space: [lr]", "space: expected a mapping, got list"),
    ("methods: [dr]", "methods: expected a mapping, got list"),
    ("methods: {dr: [alpha]}", "methods.dr: expected a mapping, got list"),
    (BASELINE + "space: {lr: [0.1, 0.01]}",
     "space.lr: a bare list is not a search spec; to search these values write {choices: [0.1, 0.01]}"),
    (BASELINE + "space: {lr: {choices: [0.1], low: 0}}", "space.lr: `choices` cannot be combined with low"),
    (BASELINE + "space: {batch_size: {choices: [16, 16]}}", "space.batch_size.choices: repeated values"),
    (BASELINE + "space: {lr: {low: 0.1}}",
     "space.lr: a range needs low and high (optional log, step); got low/high missing"),
    (BASELINE + "space: {lr: {low: 0.1, high: 1, scale: log}}",
     "space.lr: a range needs low and high (optional log, step); got scale"),
    (BASELINE + "space: {lr: {low: 0.1, high: 1, log: 1}}", "space.lr.log: expected true or false, got 1"),
    (BASELINE + "space: {lr: {low: 0.1, high: 1, step: 0}}", "space.lr.step: must be positive, got 0.0"),
    (BASELINE + "space: {lr: {low: .inf, high: 1}}", "space.lr.low: expected a finite number, got inf"),
    (BASELINE + "space: {augment: {choices: [true, 2]}}", "space.augment.choices: expected true or false, got 2"),
    (BASELINE + "space: {fusion: 3}", "space.fusion: expected a string, got 3"),
    ("methods: {dr: {diag_split: {choices: [[val]]}}}",
     "methods.dr.diag_split.choices: expected a single value, got list"),
])
def test_a_mistake_is_one_line_naming_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(DrltuneError) as err:
        load_space(path, max_epochs=8)
    assert str(err.value) == f"{path}: {message}"


def test_a_key_a_space_may_not_fix_is_named_with_the_ones_it_may(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(BASELINE + "fixed: {seed: 3}")
    with pytest.raises(DrltuneError) as err:
        load_space(path, max_epochs=8)
    message = str(err.value)
    assert message.startswith(f"{path}: fixed.seed: not a TrialConfig key that a space may fix (valid: augment, ")
    assert "\n" not in message and " seed" not in message.split("(valid:")[1]


@pytest.mark.parametrize("make, reason", [
    (lambda p: p.mkdir(), "Is a directory"),
    (lambda p: p.write_bytes(b"\xffmethods: {}"), "'utf-8' codec can't decode byte 0xff in position 0"),
])
def test_an_unreadable_file_is_one_line_naming_it(tmp_path, make, reason):
    path = tmp_path / "space.yaml"
    make(path)
    with pytest.raises(DrltuneError) as err:
        load_space(path, max_epochs=8)
    assert str(err.value).startswith(f"cannot read search space {path}: {reason}")
    assert "\n" not in str(err.value)
