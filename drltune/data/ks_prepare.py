"""`drltune prepare kinetics_sounds`: Kinetics videos -> the layout kinetics_sounds.py reads.

    RAW/<class>/<video>
        one folder per class (the Kinetics downloaders' layout), or
    RAW/{train,val,test}/<class>/<video>
        the same per Kinetics split

Each video gives OUT/audio/<stem>.npy (the OGM-GE Kinetics-Sounds recipe,
data/KineticSound/process_audio.py: 16 kHz mono, de-meaned, Kaldi fbank 128 bins, padded or cut to
1,024 frames, AudioSet-normalised, the same front-end as `prepare cremad --audio-frontend fbank`)
and OUT/frames/<stem>/ (1 fps, as the OGM-GE video_preprocessing.py). Only the classes of the chosen
list are prepared. A clip with no audio track, too short, or undecodable is skipped and reported; a
clip already in OUT is reused.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from drltune.data import prepare_common as common
from drltune.data.audio import fbank_feature
from drltune.data.media import NoAudio, video_audio
from drltune.data.prepared import listing
from drltune.data.splits import Rows, stratified_split, write_split
from drltune.data.video import frames_per_second, save_frames
from drltune.errors import DrltuneError, typed_line

SAMPLE_RATE, AUDIO_FRAMES = 16_000, 1024
# Named class lists shipped in drltune/resources/kinetics-sounds (each file cites its source).
CLASS_LISTS = {"ks31": "ks31.txt"}
ALIASES = {"dr": "ks31", "ogm-ge": "ks31", "balancebenchmark": "ks31"}
UNPUBLISHED = {
    "arl": "ARL (ICCV 2025) reads a 34-class dataset/data/KineticSound/class.txt that its "
    "repository does not ship, so its exact names are not known; pass your copy as --classes FILE",
}
SPLIT_DIRS = ("train", "val", "test")
FAILURES = ("decode error",)


@dataclass
class KsSummary:
    prepared: int = 0
    reused: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # clip -> "kind: detail"
    split_source: str = ""
    stats: dict = field(default_factory=dict)


def norm(name: str) -> str:
    """Class names compare without case, `_` or repeated spaces ('playing_bagpipes' = 'Playing
    bagpipes')."""
    return " ".join(name.replace("_", " ").split()).lower()


def class_list(spec: str) -> tuple[list[str], str]:
    """(class names, what they came from): a shipped list's name, or a file of names (one a line,
    or comma-separated as ARL's class.txt; `#` starts a comment)."""
    key = ALIASES.get(spec.lower(), spec.lower())
    if key in UNPUBLISHED:
        raise DrltuneError(f"--classes {spec}: {UNPUBLISHED[key]}")
    if key in CLASS_LISTS:
        text = (
            resources.files("drltune") / "resources" / "kinetics-sounds" / CLASS_LISTS[key]
        ).read_text()
        source = key
    else:
        path = Path(spec).expanduser()
        if not path.is_file():
            raise DrltuneError(
                f"--classes {spec}: not a shipped list ({', '.join([*CLASS_LISTS, *ALIASES])}) "
                "nor a file of class names"
            )
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise DrltuneError(f"--classes {path}: unreadable ({exc})") from None
        source = str(path.resolve())
    names: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        names.extend(n.strip() for n in line.split(",") if n.strip())
    if len({norm(n) for n in names}) != len(names) or not names:
        raise DrltuneError(
            f"--classes {spec}: expected distinct class names, got {len(names)} name(s) "
            f"with {len(names) - len({norm(n) for n in names})} repeat(s)"
        )
    return names, source


def prepare_kinetics_sounds(
    raw: Path,
    out: Path,
    classes: str = "ks31",
    jobs: int = 1,
    min_seconds: float = 1.0,
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> KsSummary:
    """Make OUT (audio/, frames/, splits/train.csv and test.csv [, val.csv], prepare.json,
    stats.json, prepare_report.txt) from the videos in RAW; resumable."""
    common.require_media()
    raw, out = common.existing_folder(raw, "--raw"), out.expanduser().resolve()
    names, source = class_list(classes)
    summary = KsSummary()
    videos, by_split = _raw_videos(raw, names, summary)
    options = {
        "dataset": "kinetics_sounds",
        "classes": source,
        "audio_frontend": "fbank",
        "audio_frames": AUDIO_FRAMES,
        "sample_rate": SAMPLE_RATE,
        "fps": 1,
        "min_seconds": min_seconds,
    }
    common.start_out(out, options, ("audio", "frames"))
    seconds = {k: v for k, v in common.read_json(out / common.SECONDS).items() if k in videos}
    todo = [
        (clip, str(path), str(out), min_seconds)
        for clip, (path, _) in sorted(videos.items())
        if not ((out / "audio" / f"{clip}.npy").is_file() and (out / "frames" / clip).is_dir())
    ]
    summary.reused = len(videos) - len(todo)
    for clip in videos:
        if (
            clip not in seconds and (out / "frames" / clip).is_dir()
        ):  # reused without a record: 1 frame a second
            seconds[clip] = float(len(list((out / "frames" / clip).glob("*.jpg"))))
    for clip, (status, value) in common.run_clips(_try_clip, todo, jobs, "prepare kinetics_sounds"):
        if status == "ok":
            summary.prepared += 1
            seconds[clip] = value
        else:
            summary.skipped[clip] = value
    common.write_json(out / common.SECONDS, seconds)
    done = {clip for clip in videos if clip not in summary.skipped}
    splits, summary.split_source = _splits(by_split, videos, done, seed)
    (out / "splits").mkdir(exist_ok=True)
    for stale in set(SPLIT_DIRS) - set(splits):  # a val.csv from an earlier layout would be read
        (out / "splits" / f"{stale}.csv").unlink(missing_ok=True)
    for name, rows in splits.items():
        write_split(out / "splits" / f"{name}.csv", rows)
    first = min(done, default=None)
    audio_shape = (
        list(np.load(out / "audio" / f"{first}.npy", mmap_mode="r").shape) if first else []
    )
    common.write_json(
        out / "prepare.json",
        {
            **options,
            "audio_shape": audio_shape,
            "split_source": summary.split_source,
            "class_names": names,
        },
    )
    common.write_report(out / common.REPORT, summary.skipped)
    summary.stats = common.write_stats(
        out, "kinetics_sounds", splits, seconds, summary.skipped, FAILURES
    )
    for clip, why in sorted(summary.skipped.items()):
        echo(f"skipped {clip}: {why}")
    if not done:
        raise DrltuneError(f"no clip of --raw {raw} could be prepared (see {out / common.REPORT})")
    return summary


def _raw_videos(
    raw: Path, names: list[str], summary: KsSummary
) -> tuple[dict[str, tuple[Path, str]], dict[str, Rows]]:
    """({clip: (video, label)}, {raw split: rows}); the split is '' without split folders."""
    wanted = {norm(n): n for n in names}
    splits = [d for d in SPLIT_DIRS if (raw / d).is_dir()]
    roots = [(s, raw / s) for s in splits] if splits else [("", raw)]
    videos: dict[str, tuple[Path, str]] = {}
    by_split: dict[str, Rows] = {}
    found_classes = set()
    for split, root in roots:
        for folder in sorted(p for p in root.iterdir() if p.is_dir() and norm(p.name) in wanted):
            label = wanted[norm(folder.name)]
            found_classes.add(label)
            for video in sorted(folder.iterdir()):
                if video.name.startswith(".") or video.suffix.lower() not in common.VIDEO_SUFFIXES:
                    continue
                clip = video.stem
                if clip in videos:
                    where = f"{split}/{folder.name}/{video.name}"
                    summary.skipped[where] = f"duplicate name: {clip} is also {videos[clip][0]}"
                    continue
                videos[clip] = (video, label)
                by_split.setdefault(split, []).append((clip, label))
    if not videos:
        where = ", ".join(f"{s}/: {listing(r)}" for s, r in roots) if splits else listing(raw)
        raise DrltuneError(
            f"--raw {raw}: no videos in folders named after the {len(names)} classes "
            f"(expected RAW/<class>/<video> or RAW/train/<class>/<video>); found {where}"
        )
    return videos, by_split


def _try_clip(args: tuple) -> tuple[str, tuple[str, object]]:
    """(clip, ("ok", seconds of audio)) or (clip, ("skip", "kind: why")): one bad video must not
    stop the run."""
    clip = args[0]
    try:
        return clip, ("ok", _prepare_clip(*args))
    except NoAudio as exc:
        return clip, ("skip", f"no audio: {exc}")
    except _TooShort as exc:
        return clip, ("skip", f"too short: {exc}")
    except Exception as exc:
        return clip, ("skip", f"decode error: {typed_line(exc)}")


class _TooShort(ValueError):
    pass


def _prepare_clip(clip: str, video: str, out_dir: str, min_seconds: float) -> float:
    """Decode one video into OUT: frames first, the audio feature last (its presence marks the clip
    done)."""
    out = Path(out_dir)
    wave = video_audio(video, SAMPLE_RATE)
    seconds = wave.size / SAMPLE_RATE
    if seconds < min_seconds:
        raise _TooShort(f"{seconds:.2f} s of audio < --min-seconds {min_seconds:g}")
    feature = fbank_feature(wave, SAMPLE_RATE, target_frames=AUDIO_FRAMES)
    tmp_frames = out / "frames" / f".{clip}.tmp"
    shutil.rmtree(tmp_frames, ignore_errors=True)  # left by an interrupted run
    save_frames(frames_per_second(video), tmp_frames)
    common.replace_folder(tmp_frames, out / "frames" / clip)
    tmp_audio = out / "audio" / f".{clip}.tmp.npy"
    np.save(tmp_audio, feature.astype(np.float32))
    tmp_audio.replace(out / "audio" / f"{clip}.npy")
    return round(seconds, 3)


def _splits(
    by_split: dict[str, Rows], videos: dict, done: set[str], seed: int
) -> tuple[dict[str, Rows], str]:
    """train/test (and val) from the split folders, else a class-stratified 80/20 train/test split.
    Kinetics' own test labels were long withheld, so without a test/ folder its val/ is the test
    set."""
    keep = {name: [(c, label) for c, label in rows if c in done] for name, rows in by_split.items()}
    if "" in keep:
        rows = keep[""]
        train, test = (
            stratified_split(rows, (0.8, 0.2), seed=seed) if len(rows) >= 2 else (rows, [])
        )
        return {
            "train": train,
            "test": test,
        }, f"stratified by class (seed {seed}, 80/20; val carved at load time)"
    if "train" not in keep or not ({"val", "test"} & set(keep)):
        raise DrltuneError(
            f"--raw split folders: found {', '.join(sorted(keep))}; expected train/ and test/ (or "
            "val/)"
        )
    if "test" in keep:
        splits = {"train": keep["train"], "test": keep["test"]}
        if "val" in keep:
            splits["val"] = keep["val"]
        return splits, "folders (train/, test/" + (
            ", val/)" if "val" in keep else "; val carved at load time)"
        )
    return {
        "train": keep["train"],
        "test": keep["val"],
    }, "folders (train/; val/ as test; val carved at load time)"
