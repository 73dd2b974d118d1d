"""The search's checkpoint store: a local folder written in place, or a URI (here file://) that the
trainer's files are uploaded to and downloaded from; folders go away when their trial ends."""
from __future__ import annotations

from drltune.search.checkpoints import CheckpointStore, lineage_key, study_folder_name


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
