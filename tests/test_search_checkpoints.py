"""The search's checkpoint store: a local folder written in place, or a URI (here file://) that the
trainer's files are uploaded to and downloaded from; folders go away when their trial ends."""
from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from drltune.errors import DrltuneError
from drltune.search.checkpoints import (
    CheckpointStore,
    lineage_key,
    study_folder_name,
    sweep_checkpoints,
)


def test_uri_store_uploads_downloads_prunes_and_deletes(tmp_path):
    store = CheckpointStore(f"file://{tmp_path}/remote")
    assert not store.direct and store.keys() == []
    local = tmp_path / "local"
    local.mkdir()
    (local / "trainer_state.pt").write_bytes(b"state-1")
    (local / "best_state-0.pt").write_bytes(b"best-0")
    store.upload("trial-3", local, [local / "best_state-0.pt", local / "trainer_state.pt"])
    (local / "best_state-0.pt").unlink()  # the trainer moved on to a new selected epoch
    (local / "best_state-2.pt").write_bytes(b"best-2")
    (local / "trainer_state.pt").write_bytes(b"state-3")
    store.upload("trial-3", local, [local / "best_state-2.pt", local / "trainer_state.pt"])
    assert sorted(p.name for p in (tmp_path / "remote" / "trial-3").iterdir()) == ["best_state-2.pt",
                                                                                   "trainer_state.pt"]
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    assert store.download("trial-3", fresh) == 2 and (fresh / "trainer_state.pt").read_bytes() == b"state-3"
    assert store.download("trial-9", fresh) == 0  # nothing to resume from
    assert store.keys() == ["trial-3"]
    store.delete("trial-3")
    store.delete("trial-3")  # already gone: nothing happens
    assert store.keys() == []


def test_local_store_is_written_in_place_and_names_are_safe(tmp_path):
    store = CheckpointStore(str(tmp_path / "ck"))
    assert store.direct and store.path(lineage_key(7)) == tmp_path / "ck" / "trial-7"
    store.path("trial-7").mkdir(parents=True)
    (store.path("trial-7") / "trainer_state.pt").write_bytes(b"x")
    assert store.keys() == ["trial-7"]
    store.delete("trial-7")
    assert store.keys() == [] and study_folder_name("cremad/dr v2") == "cremad_dr_v2"


def _new_study(url: str, name: str) -> optuna.Study:
    from drltune.search.storage import open_storage
    from drltune.search.study import create_or_resume

    study, _ = create_or_resume(name, open_storage(url), optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(),
                                {"dataset": "synthetic", "space": "", "max_epochs": 2})
    return study


def test_studies_of_one_name_never_share_a_checkpoint_folder_nor_sweep_each_other(tmp_path):
    from drltune.search.runner import SearchSpec, checkpoint_store, storage_path

    spec_a, spec_b = (SearchSpec(storage=f"sqlite:///{tmp_path}/studies/{db}.db") for db in "ab")
    a, b = _new_study(spec_a.storage, "s"), _new_study(spec_b.storage, "s")  # one name, two databases
    store_a, store_b = checkpoint_store(storage_path(spec_a), a), checkpoint_store(storage_path(spec_b), b)
    assert store_a.root != store_b.root and Path(store_a.root).parent == Path(store_b.root).parent
    assert Path(store_a.root).name.startswith("s-")  # the readable name first
    running = a.ask()
    store_a.path(lineage_key(running.number)).mkdir(parents=True)
    finished = b.ask()
    b.tell(finished, 0.5)
    store_b.path(lineage_key(finished.number)).mkdir(parents=True)
    assert sweep_checkpoints(b, store_b) == 1 and store_b.keys() == []
    assert store_a.keys() == [lineage_key(running.number)]  # b's sweep left a's running trial alone
    assert checkpoint_store(storage_path(spec_a), a).root == store_a.root  # the id is made once

    other = _new_study(spec_a.storage, "cremad/dr v2")
    cleaned_alike = _new_study(spec_a.storage, "cremad_dr_v2")
    assert checkpoint_store(storage_path(spec_a), other).root != checkpoint_store(storage_path(spec_a), cleaned_alike).root
    optuna.delete_study(study_name="s", storage=spec_a.storage)
    assert checkpoint_store(storage_path(spec_a), _new_study(spec_a.storage, "s")).root != store_a.root  # deleted and made again


def test_a_checkpoint_carries_its_study_and_another_studys_is_refused(tmp_path):
    from drltune.train import checkpoint

    state = {"config": {"lr": 0.1}, "history": [{"epoch": 0}], "best_epoch": -1, "owner": "study-a"}
    checkpoint.save(tmp_path / "mine", state)
    assert checkpoint.load(tmp_path / "mine", {"lr": 0.1}, owner="study-a")["owner"] == "study-a"
    with pytest.raises(DrltuneError, match="belongs to another study"):
        checkpoint.load(tmp_path / "mine", {"lr": 0.1}, owner="study-b")
    checkpoint.save(tmp_path / "old", {k: v for k, v in state.items() if k != "owner"})  # before study ids
    assert checkpoint.load(tmp_path / "old", {"lr": 0.1}, owner="study-b") is not None


def test_a_study_from_before_ids_gets_one_and_resumes_its_old_checkpoints(tmp_path):
    """Its running and queued trials' folders move from the name-only folder to its own; the rest of
    that folder (perhaps another study's of the same name) is left alone."""
    from drltune.search.runner import SearchSpec, run_search
    from drltune.search.study import STUDY_ID

    url = f"sqlite:///{tmp_path}/studies/s.db"
    (tmp_path / "studies").mkdir()
    old = optuna.create_study(study_name="s", storage=url, direction="maximize")  # as drltune made it before ids
    old.add_trial(optuna.trial.create_trial(value=0.5))
    cut = old.ask()  # its driver was killed
    legacy = tmp_path / "studies" / "ray" / "checkpoints" / "s"
    for key in (lineage_key(cut.number), "trial-7"):
        (legacy / key).mkdir(parents=True)
        (legacy / key / "trainer_state.pt").write_bytes(b"x")
    lines: list[str] = []
    run_search(SearchSpec(storage=url, study_name="s", trials=1, max_epochs=2), echo=lines.append)
    resumed = optuna.load_study(study_name="s", storage=url)
    uid = resumed._storage.get_study_system_attrs(resumed._study_id)[STUDY_ID]
    own = tmp_path / "studies" / "ray" / "checkpoints" / f"s-{uid}"
    assert (own / lineage_key(cut.number) / "trainer_state.pt").is_file()
    assert [p.name for p in legacy.iterdir()] == ["trial-7"]
    assert any(line.startswith("checkpoints: 1 interrupted trials resume") for line in lines), lines
