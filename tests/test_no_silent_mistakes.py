"""Mistakes that used to pass silently: settings that cannot act within the epochs, YAML errors
without a place, a bare list where a search spec belongs, a data-root hint naming a missing option."""
from __future__ import annotations

import pytest

from drltune.cli import main
from drltune.config import TrialConfig
from drltune.epoch_budget import config_warnings
from drltune.errors import DrltuneError
from drltune.search.space_file import load_space
from tests.conftest import TINY_DATA


def space_notes(tmp_path, text: str, max_epochs: int) -> list[str]:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    space = load_space(path, max_epochs)
    space.check_values(TrialConfig(epochs=max_epochs))
    return [n for n in space.notes if n.startswith("warning:")]


def test_dr_defaults_in_a_short_search_are_said_to_never_reinit(tmp_path):
    notes = space_notes(tmp_path, "methods: {baseline: {}, dr: defaults}\n", 4)
    assert notes == ["warning: dr.reinit_epoch (re-init interval) is fixed at 10 but must be <= 2 to act within 4 "
                     "epochs: every dr trial trains like the baseline; search or set methods.dr.reinit_epoch "
                     "(or raise --max-epochs)"]
    assert space_notes(tmp_path, "methods: {baseline: {}, dr: defaults}\n", 12) == []  # 10 <= 12 - 2: it fires


def test_windows_and_warmups_outside_the_budget(tmp_path):
    text = ("methods:\n  ogm_ge: {modulation_starts: {low: 2, high: 6}}\n  pmr: {modulation_starts: 5}\n"
            "  arl: {start: {choices: [0, 2, 3]}}\n  agm: {modulation_starts: 1}\n")
    notes = space_notes(tmp_path, text, 4)
    assert len(notes) == 3
    assert notes[0].startswith("warning: ogm_ge.modulation_starts (window start) in [2, 4]: values above 3 cannot act")
    assert notes[1].startswith("warning: pmr.modulation_starts (window start) is fixed at 4 but must be <= 3")
    assert notes[2].startswith("warning: arl.start (warm-up end) in [0, 3]: values above 2 cannot act")
    assert not any("agm" in n for n in notes)  # starts at epoch 1 of 4: it acts


def test_train_warns_when_dr_cannot_reinit(tmp_path, capsys):
    assert config_warnings("dr", {"reinit_epoch": 2}, 4) == []  # re-init after epoch 2, then epoch 3 trains
    assert config_warnings("dr", {"reinit_epoch": 3}, 4)[0].startswith(  # after the last epoch: nothing follows
        "dr: params.reinit_epoch=3 (re-init interval) cannot act within 4 epochs (0-based; it must be <= 2)")
    cfg = TrialConfig(method="dr", epochs=2, batch_size=16, encoder_width=4, dataset_params=dict(TINY_DATA),
                      params={"reinit_epoch": 5})
    (tmp_path / "c.yaml").write_text(cfg.to_yaml())
    main(["train", "--config", str(tmp_path / "c.yaml"), "--quiet"])
    err = capsys.readouterr().err
    assert err.startswith("warning: dr: params.reinit_epoch=5 (re-init interval) cannot act within 2 epochs")


def test_yaml_errors_give_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: dr\nlr: 0.1\nparams: {alpha: 2\nepochs: 3\n")
    with pytest.raises(DrltuneError) as exc:
        TrialConfig.load_yaml(bad)
    assert str(exc.value).startswith(f"{bad}: not valid YAML: line 4, column 7: ")
    bad.write_text("methods:\n  dr:\n    alpha: {low: 1 high: 2}\n")
    with pytest.raises(DrltuneError, match=r"bad\.yaml: not valid YAML: line 3, column \d+: "):
        load_space(bad, 4)


def test_a_bare_list_suggests_choices(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("space: {batch_size: [16, 32]}\nmethods: {baseline: {}}\n")
    with pytest.raises(DrltuneError, match=r"space\.batch_size: a bare list is not a search spec; to search these "
                                           r"values write \{choices: \[16, 32\]\}"):
        load_space(path, 4)
    path.write_text("fixed: {batch_size: [16, 32]}\nmethods: {baseline: {}}\n")
    with pytest.raises(DrltuneError, match=r"move it under space: as batch_size: \{choices: \[16, 32\]\}"):
        load_space(path, 4)
    path.write_text("methods: {dr: {alpha: [1, 2]}}\n")
    with pytest.raises(DrltuneError, match=r"methods\.dr\.alpha: a bare list .* \{choices: \[1, 2\]\}"):
        load_space(path, 4)
    with pytest.raises(DrltuneError, match=r"batch_size: expected int, got \[16, 32\] \(one run takes one value"):
        TrialConfig.from_dict({"batch_size": [16, 32]})


def test_train_without_a_data_root_names_options_that_exist(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--set", "dataset=cremad"])
    err = capsys.readouterr().err
    assert "`--set data_root=DIR` for train, `--data-root DIR` for search" in err and err.count("\n") == 1
