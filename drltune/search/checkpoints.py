"""Where a search keeps its trials' checkpoints, and when they go away.

One folder per trial lineage (a trial and its retries share it), `<root>/<key>`: `root` is a local
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

TRIAL_PREFIX = "trial-"


def study_folder_name(study_name: str) -> str:
    """A file-system-safe folder name for a study."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", study_name) or "study"


def lineage_key(trial_number: int) -> str:
    return f"{TRIAL_PREFIX}{trial_number}"


class CheckpointStore:
    """The checkpoint folders of one study under `root` (a path or a URI)."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/") or "/"
        self.direct = "://" not in self.root  # a plain path: the trainer writes in place

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
                with fs.open_input_stream(info.path) as src, open(dest / info.base_name, "wb") as out:
                    shutil.copyfileobj(src, out)
        return len(infos)

    def upload(self, key: str, folder: Path, written: list[Path]) -> None:
        """Upload what the trainer just wrote, then drop remote files it no longer has (old best weights)."""
        import pyarrow.fs

        fs, base = self._fs()
        fs.create_dir(f"{base}/{key}", recursive=True)
        for file in written:
            with open(file, "rb") as src, fs.open_output_stream(f"{base}/{key}/{file.name}") as out:
                shutil.copyfileobj(src, out)
        have = {p.name for p in folder.iterdir()}
        for info in fs.get_file_info(pyarrow.fs.FileSelector(f"{base}/{key}", allow_not_found=True)):
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

    def keys(self) -> list[str]:
        """The lineages that have a folder."""
        if self.direct:
            root = Path(self.root).expanduser()
            return sorted(p.name for p in root.glob(f"{TRIAL_PREFIX}*") if p.is_dir()) if root.is_dir() else []
        import pyarrow.fs

        fs, base = self._fs()
        infos = fs.get_file_info(pyarrow.fs.FileSelector(base, allow_not_found=True))
        return sorted(i.base_name for i in infos
                      if i.type == pyarrow.fs.FileType.Directory and i.base_name.startswith(TRIAL_PREFIX))
