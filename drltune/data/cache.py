"""Decode once: each split's audio features and frames as memory-mapped .npy files, shared by every
trial.

A cache lives in `<data_root>/cache/<dataset>-<key>/`, where the key hashes everything that changes
its content (preprocessing parameters, split lists, what `prepare` recorded). The first trial that
needs it builds it under a file lock into a temporary folder and renames that into place, so a
concurrent trial waits and then maps the finished files, and a crash never leaves half a cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from filelock import FileLock
from tqdm import tqdm

from drltune.data.base import Split
from drltune.errors import DrltuneError

FORMAT_VERSION = 1
ClipReader = Callable[
    [str], tuple[np.ndarray, np.ndarray]
]  # clip -> (audio (C,F,T), visual (T,C,H,W) uint8)


def cache_key(parts: dict[str, Any]) -> str:
    """A short stable hash of JSON-able `parts`."""
    blob = json.dumps({"format": FORMAT_VERSION, **parts}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


AUDIO_DTYPES = ("float16", "float32")


def cached_splits(
    cache_root: Path,
    name: str,
    key_parts: dict[str, Any],
    splits: Mapping[str, Sequence[tuple[str, int]]],
    read_clip: ClipReader,
    audio_dtype: str = "float16",
) -> dict[str, Split]:
    """Memory-mapped Splits for `splits` ({split: [(clip, label id), ...]}), building the cache if
    absent.

    `read_clip` decodes one clip (only called while building); `key_parts` must name every
    parameter that changes what it returns. Audio is stored as `audio_dtype`: float16 halves the
    cache and its page-cache footprint (error up to ~4e-3 on fbank values); float32 is exact.
    """
    if audio_dtype not in AUDIO_DTYPES:
        raise DrltuneError(f"audio_dtype: {audio_dtype!r} is not one of {', '.join(AUDIO_DTYPES)}")
    if audio_dtype != "float16":  # the default keeps the keys (and caches) of earlier versions
        key_parts = {**key_parts, "audio_dtype": audio_dtype}
    key = cache_key(
        {**key_parts, "splits": {s: list(map(list, rows)) for s, rows in splits.items()}}
    )
    final = cache_root / f"{name}-{key}"
    if not _complete(final):
        try:
            cache_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DrltuneError(
                f"cannot create the cache folder {cache_root}: {exc.strerror}"
            ) from None
        with FileLock(str(cache_root / f"{name}-{key}.lock")):
            if not _complete(final):
                _build(final, key_parts, splits, read_clip, np.dtype(audio_dtype))
    return {s: _open(final, s) for s in splits}


def _complete(folder: Path) -> bool:
    return (folder / "meta.json").is_file()


def _open(folder: Path, split: str) -> Split:
    arrays = [
        np.load(folder / f"{split}_{part}.npy", mmap_mode="r")
        for part in ("audio", "visual", "labels")
    ]
    return Split(*arrays)


def _build(
    final: Path,
    key_parts: dict[str, Any],
    splits: Mapping[str, Sequence[tuple[str, int]]],
    read_clip: ClipReader,
    audio_dtype: np.dtype,
) -> None:
    """Write every split into a fresh temporary folder, then rename it to `final` (atomic on
    POSIX)."""
    for stale in final.parent.glob(
        f".{final.name}.tmp-*"
    ):  # left by a crashed builder; we hold the lock
        shutil.rmtree(stale, ignore_errors=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    tmp.mkdir()
    try:
        first_clip = next(clip for rows in splits.values() for clip, _ in rows)
        audio0, visual0 = read_clip(first_clip)
        total = sum(len(rows) for rows in splits.values())
        with tqdm(
            total=total, desc=f"building cache {final.name}", unit="clip", leave=False
        ) as bar:
            for split, rows in splits.items():
                _write_split(tmp, split, rows, read_clip, audio0, visual0, bar, audio_dtype)
        meta = {
            **key_parts,
            "audio_shape": list(audio0.shape),
            "visual_shape": list(visual0.shape),
            "sizes": {s: len(r) for s, r in splits.items()},
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _write_split(
    folder: Path,
    split: str,
    rows: Sequence[tuple[str, int]],
    read_clip: ClipReader,
    audio0: np.ndarray,
    visual0: np.ndarray,
    bar: tqdm,
    audio_dtype: np.dtype,
) -> None:
    n = len(rows)
    audio = np.lib.format.open_memmap(
        folder / f"{split}_audio.npy", "w+", audio_dtype, (n, *audio0.shape)
    )
    visual = np.lib.format.open_memmap(
        folder / f"{split}_visual.npy", "w+", np.uint8, (n, *visual0.shape)
    )
    labels = np.array([label for _, label in rows], dtype=np.int64)
    for i, (clip, _) in enumerate(rows):
        a, v = read_clip(clip)
        if a.shape != audio0.shape or v.shape != visual0.shape:
            raise DrltuneError(
                f"clip {clip}: audio {a.shape} / frames {v.shape} differ from the first clip's "
                f"{audio0.shape} / {visual0.shape}; every clip needs the same shapes"
            )
        audio[i] = a
        visual[i] = v
        bar.update()
    audio.flush()
    visual.flush()
    del audio, visual
    np.save(folder / f"{split}_labels.npy", labels)
