"""`drltune prepare cremad`: the published CREMA-D (or a preprocessed copy) -> the prepared layout.

Resumable: a clip whose audio feature and frame folder are already in OUT is skipped; each clip is
committed by renames, so an interrupted run never leaves a half-written clip that looks done.
A clip that cannot be read is skipped, listed on the console and in OUT/prepare_report.txt.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

from drltune.data.audio import FRONTENDS, audio_feature
from drltune.data.cremad import CLASS_NAMES, CLIP_NAME
from drltune.data.prepare_common import REPORT, pool, start_out, write_json, write_report
from drltune.data.prepared import label_ids, listing
from drltune.data.splits import Rows, read_split, stratified_split, write_split
from drltune.data.video import frame_files, frames_per_second, save_frames
from drltune.errors import DrltuneError, typed_line

PUBLISHED = ("AudioWAV", "VideoFlash")
PREPROCESSED = ("audio", "frames")
VIDEO_SUFFIXES = (".flv", ".mp4")
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # train / val / test when no paper split fits
OPTIONAL_OPTIONS = ("partial_seconds",)  # prepare.json holds these only when set


@dataclass
class PrepareSummary:
    prepared: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # clip -> why
    split_source: str = ""
    split_sizes: dict[str, int] = field(default_factory=dict)


def prepare_cremad(
    raw: Path,
    out: Path,
    splits_dir: Path | None = None,
    by_actor: bool = False,
    audio_frontend: str = "fbank",
    seed: int = 0,
    jobs: int = 1,
    echo: Callable[[str], None] = print,
    partial_seconds: bool = False,
) -> PrepareSummary:
    """Make OUT (audio/, frames/, splits/, prepare.json, prepare_report.txt) from RAW, decoding
    `jobs` clips at a time (worker processes when jobs > 1). `partial_seconds`: see
    video.frames_per_second (short clips get a frame from their last, partial second)."""
    try:
        import av  # noqa: F401  (the `media` extra)
        import soundfile  # noqa: F401
    except ImportError as exc:
        raise DrltuneError(f"prepare needs {exc.name}: pip install 'drltune[media]'") from None
    if audio_frontend not in FRONTENDS:
        raise DrltuneError(
            f"--audio-frontend: {audio_frontend!r} is not one of {', '.join(FRONTENDS)}"
        )
    raw, out = raw.expanduser().resolve(), out.expanduser().resolve()
    if not raw.is_dir():
        raise DrltuneError(f"--raw {raw} does not exist or is not a folder")
    source = _source_layout(raw)
    options = {"dataset": "cremad", "source": source, "audio_frontend": audio_frontend, "fps": 1}
    if (
        partial_seconds
    ):  # recorded only when set, so folders prepared before the option still resume
        options["partial_seconds"] = True
    summary = PrepareSummary()
    clips = _raw_clips(raw, source, summary)
    raw_names = set(clips) | set(summary.skipped)
    user_splits = (
        _read_split_dir(splits_dir.expanduser(), raw_names) if splits_dir is not None else None
    )
    start_out(out, options, ("audio", "frames"), OPTIONAL_OPTIONS)
    todo = [
        (clip, paths, out, source, audio_frontend, partial_seconds)
        for clip, paths in sorted(clips.items())
        if not ((out / "audio" / f"{clip}.npy").is_file() and (out / "frames" / clip).is_dir())
    ]
    summary.reused = len(clips) - len(todo)
    with pool(jobs, len(todo)) as workers:
        for clip, error in tqdm(
            (workers.map(_try_clip, todo, chunksize=4) if workers else map(_try_clip, todo)),
            total=len(todo),
            desc="prepare cremad",
            unit="clip",
        ):
            if error is None:
                summary.prepared += 1
            else:
                summary.skipped[clip] = error
    done = {c for c in clips if c not in summary.skipped}
    if user_splits is not None:
        splits, summary.split_source = user_splits, f"user ({splits_dir})"
    else:
        splits, summary.split_source = _default_splits(raw_names, done, by_actor, seed)
    splits = _leave_out_skipped(splits, done, summary)
    (out / "splits").mkdir(exist_ok=True)
    for name, rows in splits.items():
        write_split(out / "splits" / f"{name}.csv", rows)
        summary.split_sizes[name] = len(rows)
    first = min(done, default=None)
    audio_shape = (
        list(np.load(out / "audio" / f"{first}.npy", mmap_mode="r").shape) if first else []
    )
    record = {**options, "audio_shape": audio_shape, "split_source": summary.split_source}
    write_json(out / "prepare.json", record)
    write_report(out / REPORT, summary.skipped)
    for clip, why in sorted(summary.skipped.items()):
        echo(f"skipped {clip}: {why}")
    return summary


def _source_layout(raw: Path) -> str:
    if all((raw / d).is_dir() for d in PUBLISHED):
        return "published"
    if all((raw / d).is_dir() for d in PREPROCESSED):
        return "preprocessed"
    raise DrltuneError(
        f"--raw {raw}: expected the published CREMA-D layout (AudioWAV/*.wav and VideoFlash/*.flv) "
        f"or a preprocessed one (audio/<clip>.npy and frames/<clip>/*.jpg); found {listing(raw)}"
    )


def _raw_clips(raw: Path, source: str, summary: PrepareSummary) -> dict[str, tuple[Path, Path]]:
    """{clip: (audio path, video path or frame folder)}; badly named or one-modality clips go to
    `skipped`."""

    def entries(folder: str, keep: Callable[[Path], bool]) -> dict[str, Path]:
        return {
            p.stem: p for p in (raw / folder).iterdir() if not p.name.startswith(".") and keep(p)
        }

    if source == "published":
        audio = entries("AudioWAV", lambda p: p.suffix.lower() == ".wav")
        video = entries("VideoFlash", lambda p: p.suffix.lower() in VIDEO_SUFFIXES)
    else:
        audio = entries("audio", lambda p: p.suffix == ".npy")
        video = entries("frames", Path.is_dir)
    if not audio and not video:
        folders = PUBLISHED if source == "published" else PREPROCESSED
        raise DrltuneError(
            f"--raw {raw}: no clips in its {source} layout; found "
            f"{' and '.join(f'{d}/: {listing(raw / d)}' for d in folders)}"
        )
    clips = {}
    for clip in sorted(set(audio) | set(video)):
        match = CLIP_NAME.match(clip)
        if not match or match["emotion"] not in CLASS_NAMES:
            summary.skipped[clip] = (
                "name is not ActorID_Sentence_EMOTION_Level with a CREMA-D emotion"
            )
        elif clip not in audio:
            summary.skipped[clip] = "no audio (missing .wav / .npy)"
        elif clip not in video:
            summary.skipped[clip] = "no video (missing .flv / frame folder)"
        else:
            clips[clip] = (audio[clip], video[clip])
    return clips


def _try_clip(args: tuple) -> tuple[str, str | None]:
    """(clip, None) when prepared, else (clip, one-line reason): a corrupt clip must not stop the
    run."""
    clip = args[0]
    try:
        _prepare_clip(*args)
        return clip, None
    except Exception as exc:
        return clip, typed_line(exc)


def _prepare_clip(
    clip: str,
    paths: tuple[Path, Path],
    out: Path,
    source: str,
    frontend: str,
    partial_seconds: bool = False,
) -> None:
    """Decode one clip into OUT: frames first, the audio feature last (its presence marks the clip
    done)."""
    audio_src, video_src = paths
    tmp_frames = out / "frames" / f".{clip}.tmp"
    shutil.rmtree(tmp_frames, ignore_errors=True)
    if source == "published":
        feature = audio_feature(str(audio_src), frontend)
        save_frames(frames_per_second(str(video_src), partial_seconds=partial_seconds), tmp_frames)
    else:
        feature = np.load(audio_src)
        if feature.ndim != 2 or not np.isfinite(feature).all():
            raise ValueError(f"expected a finite 2-D audio feature, got shape {feature.shape}")
        _copy_frames(frame_files(video_src), tmp_frames)
    final_frames = out / "frames" / clip
    if final_frames.exists():
        shutil.rmtree(final_frames)
    os.replace(tmp_frames, final_frames)
    tmp_audio = out / "audio" / f".{clip}.tmp.npy"
    np.save(tmp_audio, feature.astype(np.float32))
    os.replace(tmp_audio, out / "audio" / f"{clip}.npy")


def _copy_frames(files: list[Path], folder: Path) -> None:
    """Copy a clip's frame images as they are (no second JPEG encoding), after checking each
    decodes."""
    if not files:
        raise ValueError("no frame images")
    folder.mkdir(parents=True)
    for i, path in enumerate(files):
        with Image.open(path) as img:
            img.load()
        shutil.copyfile(path, folder / f"frame_{i:05d}{path.suffix.lower()}")


def _label(clip: str) -> str:
    return _name_part(clip, "emotion")


def _name_part(clip: str, part: str) -> str:
    """One group of CLIP_NAME ("actor", "emotion") of a clip name that `_clips` has already
    checked."""
    match = CLIP_NAME.match(clip)
    assert match is not None, clip
    return match[part]


def _default_splits(
    raw_names: set[str], done: set[str], by_actor: bool, seed: int
) -> tuple[dict[str, Rows], str]:
    """The papers' split (DR's my_train/val/test) when its clips are all in RAW, else a stratified
    one."""
    splits = _shipped_splits()
    if all(clip in raw_names for rows in splits.values() for clip, _ in rows):
        return splits, "paper (DR my_train/val/test)"
    rows = [(clip, _label(clip)) for clip in sorted(done)]
    group_of = (lambda clip: _name_part(clip, "actor")) if by_actor else None
    parts = stratified_split(rows, SPLIT_FRACTIONS, seed=seed, group_of=group_of)
    return dict(
        zip(("train", "val", "test"), parts)
    ), f"stratified by class{' and actor' if by_actor else ''} (seed {seed}, 80/10/10)"


def _leave_out_skipped(
    splits: dict[str, Rows], done: set[str], summary: PrepareSummary
) -> dict[str, Rows]:
    """Drop clips that could not be prepared, saying in the report which split lost them."""
    for name, rows in splits.items():
        for clip, _ in rows:
            if clip not in done:
                summary.skipped[clip] = (
                    summary.skipped.get(clip, "unreadable") + f" (left out of {name})"
                )
    return {name: [(c, label) for c, label in rows if c in done] for name, rows in splits.items()}


def _read_split_dir(folder: Path, raw_names: set[str]) -> dict[str, Rows]:
    """train/val/test.csv, or DR's my_train/val/test.csv (my_train is then the training split),
    checked before any decoding: labels must be CREMA-D emotions and clips must be in RAW."""
    if not folder.is_dir():
        raise DrltuneError(f"--splits {folder} does not exist or is not a folder")
    train = folder / "my_train.csv" if (folder / "my_train.csv").is_file() else folder / "train.csv"
    files = {"train": train, "val": folder / "val.csv", "test": folder / "test.csv"}
    missing = [p.name for p in files.values() if not p.is_file()]
    if missing:
        raise DrltuneError(
            f"--splits {folder}: expected train.csv (or my_train.csv), val.csv and test.csv; "
            f"found {listing(folder)}"
        )
    splits = {name: read_split(path) for name, path in files.items()}
    label_ids(
        splits, CLASS_NAMES, raw_names, folder
    )  # raises on a label or clip that does not exist
    return splits


def _shipped_splits() -> dict[str, Rows]:
    base = resources.files("drltune") / "resources" / "cremad-splits"
    with resources.as_file(base) as folder:
        return {
            "train": read_split(folder / "my_train.csv"),
            "val": read_split(folder / "val.csv"),
            "test": read_split(folder / "test.csv"),
        }
