"""Every private Optuna/optuna-dashboard name drltune uses still exists in the installed versions.

The names live in drltune/search/optuna_private.py only; this reads them off the installed
packages, so an upgrade that renames one fails here rather than in the middle of a search.
"""
from __future__ import annotations

import ast
import inspect
from pathlib import Path

import optuna
import pytest

from drltune.search import optuna_private

MODULE = Path(optuna_private.__file__)

# (object the private name is read from, name, parameters drltune passes, in order)
CALLED = (
    (optuna.storages.RDBStorage, "_get_prepared_new_trial", ("study_id", "template_trial", "session")),
    (optuna.storages.RDBStorage, "_set_trial_attr_without_commit",
     ("session", "model_cls", "trial_id", "key", "value")),
    (optuna.storages.RDBStorage, "_set_trial_value_without_commit", ("session", "trial", "objective", "value")),
    (optuna.storages.RDBStorage, "_get_stale_trial_ids", ("study_id",)),
    (optuna.storages.RDBStorage, "_create_new_trial", ("study_id", "template_trial")),
    (optuna.Study, "_get_trials", ("deepcopy", "states", "use_cache")),
    (optuna.pruners.HyperbandPruner, "_create_bracket_study", ("study", "bracket_id")),
)


def parameters(func) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(func).parameters if p != "self")


@pytest.mark.parametrize("owner, name, params", CALLED, ids=[c[1] for c in CALLED])
def test_private_methods_exist_with_the_parameters_drltune_passes(owner, name, params):
    assert hasattr(owner, name), f"{owner.__qualname__}.{name} is gone from the installed Optuna"
    assert parameters(getattr(owner, name))[:len(params)] == params


def test_every_private_name_the_module_reads_is_checked():
    """A private attribute the module reads (`x._name`) must be in CALLED or an attribute check below."""
    read = {node.attr for node in ast.walk(ast.parse(MODULE.read_text())) if isinstance(node, ast.Attribute)
            and node.attr.startswith("_") and not node.attr.startswith("__")}
    checked = {name for _, name, _ in CALLED} | {"_storage", "_study_id", "_trial_id", "_backend"}
    assert read <= checked, f"unchecked private names: {sorted(read - checked)}"


def test_overridden_and_wrapped_methods_exist():
    for owner, name in optuna_private.OVERRIDDEN:
        assert callable(getattr(owner, name, None)), f"{owner.__qualname__}.{name}"
    for name in optuna_private.RDB_PRIVATE_ROUND_TRIPS:
        assert callable(getattr(optuna.storages.RDBStorage, name, None)), f"RDBStorage.{name}"


def test_private_imports_resolve():
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session
    from optuna.study._frozen import FrozenStudy
    from optuna_dashboard._note import note_ver_key, split_body

    for table in ("StudyModel", "TrialModel", "TrialSystemAttributeModel", "TrialUserAttributeModel",
                  "StudySystemAttributeModel", "TrialHeartbeatModel"):
        assert hasattr(models, table), table
    assert parameters(_create_scoped_session)[:2] == ("scoped_session", "ignore_integrity_error")
    assert parameters(note_ver_key) == ("trial_id",) and parameters(split_body) == ("note_str", "trial_id")
    assert "study_name" in parameters(FrozenStudy)


def test_accessors_on_a_real_study():
    """The attributes read off a study and a trial are there, and mean what the names say."""
    storage = optuna.storages.RDBStorage("sqlite:///:memory:", heartbeat_interval=60)
    study = optuna.create_study(storage=storage, study_name="s")
    trial = study.ask()
    frozen = study.get_trials()[0]
    assert optuna_private.storage_of(study) is not None
    assert optuna_private.backend_of(study) is storage
    assert optuna_private.study_id_of(study) == storage.get_study_id_from_name("s")
    assert optuna_private.study_id_of(storage.get_all_studies()[0]) == optuna_private.study_id_of(study)
    assert optuna_private.trial_id_of(trial) == optuna_private.trial_id_of(frozen)
    assert storage.get_trial(optuna_private.trial_id_of(frozen)).number == 0
    assert optuna_private.stale_trial_ids(study) == []  # never beat: not stale by the clock
    version_key, chunks = optuna_private.dashboard_note_keys(0, "hello")
    assert isinstance(version_key, str) and "hello" in "".join(chunks.values())
