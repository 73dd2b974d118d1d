"""What every `drltune prepare DATASET` shares: the media check, worker pool, resumable output
folder, atomic writes, the skipped-clip report and the statistics file (stats.json)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from tqdm import tqdm

from drltune.errors import DrltuneError

REPORT = "prepare_report.txt"
STATS = "stats.json"
SECONDS = "clip_seconds.json"  # clip -> seconds of media, kept across resumed runs
VIDEO_SUFFIXES = (
    ".mp4",
    ".mkv",
    ".webm",
    ".avi",
    ".mov",
    ".flv",
    ".m4v",
    ".mpg",
    ".mpeg",
    ".3gp",
    ".ogv",
)


def require_media(*extra: str) -> None:
    """Fail with one line when the `media` extra (PyAV, soundfile, OpenCV contrib) is missing."""
    for name in ("av", *extra):
        try:
            __import__(name)
        except ImportError:
            raise DrltuneError(f"prepare needs {name}: pip install 'drltune[media]'") from None


def existing_folder(path: Path, option: str) -> Path:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise DrltuneError(f"{option} {path} does not exist or is not a folder")
    return path


def start_out(
    out: Path, options: dict, subdirs: Sequence[str], optional: Sequence[str] = ()
) -> None:
    """Create OUT, refusing to resume into a folder prepared with other options (it would mix
    features). Keys in `optional` may be absent from an older prepare.json when unset."""
    previous = out / "prepare.json"
    if previous.is_file():
        try:
            old = json.loads(previous.read_text())
        except (OSError, json.JSONDecodeError):
            old = {}
        keys = [*options, *(k for k in optional if k not in options)]
        changed = {k: old.get(k) for k in keys if old.get(k) != options.get(k)}
        if changed:
            raise DrltuneError(
                f"--out {out} was prepared with "
                f"{', '.join(f'{k}={v}' for k, v in changed.items())}; use the same options to "
                "resume, or a new --out"
            )
    try:
        for sub in subdirs:
            (out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DrltuneError(f"cannot create --out {out}: {exc.strerror}") from None
    write_json(previous, options)


def pool(jobs: int, n: int) -> ProcessPoolExecutor | contextlib.nullcontext:
    """Worker processes, forked where the OS can (no re-import) and on one torch thread each, the
    way torch's DataLoader runs its workers."""
    if jobs <= 1 or n <= 1:
        return contextlib.nullcontext()
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(
        min(jobs, n),
        mp_context=multiprocessing.get_context(method),
        initializer=torch.set_num_threads,
        initargs=(1,),
    )


def run_clips(
    work: Callable[[Any], tuple[str, Any]], todo: list, jobs: int, desc: str
) -> Iterator[tuple[str, Any]]:
    """`work` over `todo` in `jobs` processes, with a progress bar; yields what each call
    returns."""
    with pool(jobs, len(todo)) as workers:
        results = workers.map(work, todo, chunksize=2) if workers else map(work, todo)
        yield from tqdm(results, total=len(todo), desc=desc, unit="clip")


def replace_folder(tmp: Path, final: Path) -> None:
    """Move a finished temporary folder into place (an older copy is removed first)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    tmp.replace(path)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def write_report(path: Path, skipped: dict[str, str]) -> None:
    lines = [
        f"# clips left out by drltune prepare: {len(skipped)}",
        *(f"{c}\t{w}" for c, w in sorted(skipped.items())),
    ]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def write_stats(
    out: Path,
    dataset: str,
    splits: Mapping[str, Iterable[tuple[str, str]]],
    seconds: dict[str, float],
    skipped: dict[str, str],
    failure_kinds: Sequence[str],
) -> dict:
    """stats.json: clips per class and split, seconds of media per split, and the clips left out
    by kind (`failure_kinds` are the reasons that count as decode failures)."""
    per_split, media = {}, {}
    for name, rows in splits.items():
        rows = list(rows)
        per_split[name] = dict(sorted(Counter(label for _, label in rows).items()))
        media[name] = round(sum(seconds.get(clip, 0.0) for clip, _ in rows), 2)
    kinds = Counter(why.split(":", 1)[0] for why in skipped.values())
    stats = {
        "dataset": dataset,
        "clips": {name: sum(c.values()) for name, c in per_split.items()},
        "clips_per_class": per_split,
        "media_seconds": media,
        "decode_failures": sum(n for kind, n in kinds.items() if kind in failure_kinds),
        "skipped": len(skipped),
        "skipped_by_kind": dict(sorted(kinds.items())),
    }
    write_json(out / STATS, stats)
    return stats


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 3600 else f"{seconds / 3600:.1f} h"


def stats_lines(stats: dict) -> list[str]:
    """The statistics as a few console lines."""
    lines = [
        f"{name}: {n} clip(s), {_duration(stats['media_seconds'].get(name, 0))} of media, "
        f"{len(stats['clips_per_class'][name])} class(es)"
        for name, n in stats["clips"].items()
    ]
    counts = [n for per in stats["clips_per_class"].values() for n in per.values()]
    if counts:
        lines.append(f"clips per class and split: min {min(counts)}, max {max(counts)}")
    kinds = ", ".join(f"{k} {n}" for k, n in stats["skipped_by_kind"].items()) or "none"
    lines.append(
        f"left out: {stats['skipped']} ({kinds}); decode failures: {stats['decode_failures']}"
    )
    return lines
