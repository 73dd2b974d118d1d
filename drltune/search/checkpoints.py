"""Where a search keeps its trials' checkpoints, and when they go away.

One folder per trial lineage (a trial and its retries share it), `<root>/<key>`; `root` is the
study's own folder, named by its readable name and its id (`study_folder_name`), so that two
studies of one name (in two databases, or deleted and made again) never share one. `root` is a local
folder (on a cluster, one that every node mounts) or a URI that pyarrow's file systems take
(`s3://`, `gs://`, `file://`), as for Ray's own storage. On a local folder the trainer writes in
place; for a URI it writes to a temporary folder and the files it wrote are uploaded. The driver
deletes a lineage's folder when its trial ends COMPLETE, PRUNED or FAIL; a cut-off trial keeps it,
so that its retry resumes from there. The disk a search uses is thus bounded by its running trials.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

TRIAL_PREFIX = "trial-"


def study_folder_name(study_name: str, study_id: str | None = None) -> str:
    """A file-system-safe folder name for a study: its name cleaned, then its id (see
    study.study_uid). Without the id, the folder name studies had before they had ids."""
    clean = re.sub(r"[^A-Za-z0-9._-]+", "_", study_name) or "study"
    return clean if study_id is None else f"{clean}-{study_id}"


def lineage_key(trial_number: int) -> str:
    return f"{TRIAL_PREFIX}{trial_number}"


class CheckpointStore:
    """The checkpoint folders of one study under `root` (a path or a URI)."""

    def __init__(self, root: str, owner: str | None = None) -> None:
        self.root = root.rstrip("/") or "/"
        self.direct = "://" not in self.root  # a plain path: the trainer writes in place
        self.owner = owner  # the study's id, stored in each checkpoint: another study's is refused

    def _fs(self):  # imported lazily: pyarrow is large and only URIs need it
        import pyarrow.fs

        return pyarrow.fs.FileSystem.from_uri(self.root)

    def path(self, key: str) -> Path:
        """The folder of `key` on a local root (where the trainer writes directly)."""
        return Path(self.root).expanduser() / key

    def download(self, key: str, dest: Path) -> int:
        """Copy `key`'s files into `dest`; the number of files (0: nothing to resume from)."""
        import pyarrow.fs

        fs, base = self._fs()
        infos = fs.get_file_info(pyarrow.fs.FileSelector(f"{base}/{key}", allow_not_found=True))
        for info in infos:
            if info.type == pyarrow.fs.FileType.File:
                with (
                    fs.open_input_stream(info.path) as src,
                    open(dest / info.base_name, "wb") as out,
                ):
                    shutil.copyfileobj(src, out)
        return len(infos)

    def upload(self, key: str, folder: Path, written: list[Path]) -> None:
        """Upload what the trainer just wrote, then drop remote files it no longer has (old best
        weights)."""
        import pyarrow.fs

        fs, base = self._fs()
        fs.create_dir(f"{base}/{key}", recursive=True)
        for file in written:
            with open(file, "rb") as src, fs.open_output_stream(f"{base}/{key}/{file.name}") as out:
                shutil.copyfileobj(src, out)
        have = {p.name for p in folder.iterdir()}
        for info in fs.get_file_info(
            pyarrow.fs.FileSelector(f"{base}/{key}", allow_not_found=True)
        ):
            if info.base_name not in have:
                fs.delete_file(info.path)

    def delete(self, key: str) -> None:
        """Remove `key`'s folder (nothing when it does not exist)."""
        if self.direct:
            shutil.rmtree(self.path(key), ignore_errors=True)
            return
        fs, base = self._fs()
        try:
            fs.delete_dir(f"{base}/{key}")
        except FileNotFoundError:
            pass

    def adopt(self, other: "CheckpointStore", key: str) -> bool:
        """Move `key`'s folder from `other` here (nothing when `other` lacks it or this store has
        it)."""
        if key not in other.keys() or key in self.keys():
            return False
        if self.direct and other.direct:
            self.path(key).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(other.path(key)), str(self.path(key)))
            return True
        import pyarrow.fs

        (src_fs, src), (dst_fs, dst) = other._fs(), self._fs()
        dst_fs.create_dir(f"{dst}/{key}", recursive=True)
        for info in src_fs.get_file_info(pyarrow.fs.FileSelector(f"{src}/{key}")):
            if info.type == pyarrow.fs.FileType.File:
                with (
                    src_fs.open_input_stream(info.path) as fin,
                    dst_fs.open_output_stream(f"{dst}/{key}/{info.base_name}") as fout,
                ):
                    shutil.copyfileobj(fin, fout)
        other.delete(key)
        return True

    def keys(self) -> list[str]:
        """The lineages that have a folder."""
        if self.direct:
            root = Path(self.root).expanduser()
            return (
                sorted(p.name for p in root.glob(f"{TRIAL_PREFIX}*") if p.is_dir())
                if root.is_dir()
                else []
            )
        import pyarrow.fs

        fs, base = self._fs()
        infos = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
        return sorted(
            i.base_name
            for i in infos
            if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith(TRIAL_PREFIX)
        )


def pending_keys(study: optuna.Study) -> set[str]:
    """The checkpoint folders that running and queued trials resume from."""
    from optuna.trial import TrialState

    from drltune.search.study import lineage

    return {
        lineage_key(lineage(t))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    }


def sweep_checkpoints(study: optuna.Study, store: CheckpointStore) -> int:
    """Delete the checkpoint folders (of this study's own folder) that no running or queued trial
    will resume from."""
    pending = pending_keys(study)
    gone = [key for key in store.keys() if key not in pending]
    for key in gone:
        store.delete(key)
    return len(gone)
