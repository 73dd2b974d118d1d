"""`drltune prepare DATASET`: turn a downloaded dataset into the folder training reads
(--data-root)."""

from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("prepare")
def prepare_group() -> None:
    """Decode a downloaded dataset into audio features, frames and split lists."""


@prepare_group.command("cremad")
@click.option(
    "--raw",
    "raw",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The dataset as published (AudioWAV/, VideoFlash/) or preprocessed (audio/*.npy, "
    "frames/<clip>/).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write; pass it to training as --data-root. Re-running resumes.",
)
@click.option(
    "--splits",
    "splits_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Your split CSVs (train.csv or my_train.csv, val.csv, test.csv). Default: the papers' "
    "split when the clip names match, else a deterministic 80/10/10 split stratified by class.",
)
@click.option(
    "--by-actor",
    is_flag=True,
    help="Make the fallback split speaker-independent (no actor in two splits).",
)
@click.option(
    "--audio-frontend",
    type=click.Choice(["fbank", "stft"]),
    default="fbank",
    show_default=True,
    help="fbank: DR/BalanceMM Kaldi fbank 256x128, AudioSet-normalised; stft: OGM-GE log-STFT "
    "257x188.",
)
@click.option(
    "--partial-seconds",
    is_flag=True,
    help="Also keep a frame of a clip's last, partial second (a 1.5 s clip gets 2 frames, not 1 "
    "used twice); default: whole seconds only, as the OGM-GE preprocessing script.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fallback split.")
@click.option(
    "--jobs",
    type=click.IntRange(1, 256),
    default=min(8, os.cpu_count() or 1),
    show_default=True,
    help="Clips decoded in parallel (worker processes).",
)
def cremad_cmd(
    raw: Path,
    out: Path,
    splits_dir: Path | None,
    by_actor: bool,
    audio_frontend: str,
    partial_seconds: bool,
    seed: int,
    jobs: int,
) -> None:
    """CREMA-D: audio features, 1 fps frames and train/val/test lists (see docs/methods.md §7.1)."""
    from drltune.data.cremad_prepare import REPORT, prepare_cremad

    summary = prepare_cremad(
        raw,
        out,
        splits_dir,
        by_actor,
        audio_frontend,
        seed,
        jobs,
        echo=lambda line: click.echo(line, err=True),
        partial_seconds=partial_seconds,
    )
    sizes = ", ".join(f"{name} {n}" for name, n in summary.split_sizes.items())
    click.echo(
        f"prepared {summary.prepared} clip(s), reused {summary.reused}, skipped "
        f"{len(summary.skipped)} (listed in {out / REPORT}); splits: {summary.split_source}: "
        f"{sizes}"
    )
    click.echo(f"train with: --set dataset=cremad --set data_root={out}")


def _finish(out: Path, dataset: str, summary, extra: str = "") -> None:
    """Print the statistics (also in OUT/stats.json), then check the folder as training will read
    it."""
    from drltune.data.prepare_common import REPORT, STATS, stats_lines
    from drltune.data.prepared_check import check_prepared

    click.echo(
        f"prepared {summary.prepared} clip(s), reused {summary.reused}, skipped "
        f"{len(summary.skipped)} (listed in {out / REPORT}){extra}"
    )
    for line in stats_lines(summary.stats):
        click.echo(f"  {line}")
    click.echo(f"statistics: {out / STATS}")
    click.echo(f"check: {check_prepared(out)}")
    click.echo(
        f"search with: --dataset {dataset} --data-root {out}  (train: --set dataset={dataset} "
        f"--set data_root={out})"
    )


_JOBS = click.option(
    "--jobs",
    type=click.IntRange(1, 256),
    default=min(8, os.cpu_count() or 1),
    show_default=True,
    help="Videos decoded in parallel (worker processes).",
)


@prepare_group.command("kinetics_sounds")
@click.option(
    "--raw",
    "raw",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Kinetics videos in one folder per class (RAW/<class>/*.mp4), optionally under train/, "
    "val/, test/; class folder names may use _ for spaces. Any container PyAV reads.",
)
@click.option(
    "--classes",
    default="ks31",
    show_default=True,
    help="Class list: ks31 (the 31 classes of DR, OGM-GE and BalanceBenchmark; aliases dr, ogm-ge, "
    "balancebenchmark) or a file of class names (one a line, or comma-separated).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write; pass it to training as --data-root. Re-running resumes.",
)
@click.option(
    "--min-seconds",
    type=click.FloatRange(0, None),
    default=1.0,
    show_default=True,
    help="Skip (and report) clips with less audio than this.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the 80/20 train/test split made when RAW has no split folders.",
)
@_JOBS
def kinetics_sounds_cmd(
    raw: Path, classes: str, out: Path, min_seconds: float, seed: int, jobs: int
) -> None:
    """Kinetics-Sounds: fbank audio (1,024 x 128), 1 fps frames and split lists (see docs/datasets.md)."""  # noqa: E501 (click help's summary)
    from drltune.data.ks_prepare import prepare_kinetics_sounds

    summary = prepare_kinetics_sounds(
        raw, out, classes, jobs, min_seconds, seed, echo=lambda line: click.echo(line, err=True)
    )
    _finish(
        out.expanduser().resolve(), "kinetics_sounds", summary, f"; splits: {summary.split_source}"
    )


@prepare_group.command("ucf101")
@click.option(
    "--raw",
    "raw",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The UCF-101 videos as unpacked (UCF-101/<Class>/v_<Class>_gNN_cMM.avi).",
)
@click.option(
    "--splits",
    "splits_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The official split folder (ucfTrainTestlist: classInd.txt, trainlist0N.txt, "
    "testlist0N.txt).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write; pass it to training as --data-root. Re-running resumes.",
)
@click.option(
    "--split",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="Official split to prepare.",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.01, 0.5),
    default=0.1,
    show_default=True,
    help="Share of the official train list held out as val, whole groups (gNN) at a time.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed of the validation split."
)
@click.option(
    "--flow-bound",
    type=click.FloatRange(1, None),
    default=20.0,
    show_default=True,
    help="Flow (pixels per frame) stored at 0 and 255 of the flow images.",
)
@_JOBS
def ucf101_cmd(
    raw: Path,
    splits_dir: Path,
    out: Path,
    split: int,
    val_fraction: float,
    seed: int,
    flow_bound: float,
    jobs: int,
) -> None:
    """UCF-101: 1 fps RGB frames, TV-L1 optical flow and split lists (see docs/datasets.md)."""
    from drltune.data.ucf_prepare import prepare_ucf101

    summary = prepare_ucf101(
        raw,
        splits_dir,
        out,
        split,
        val_fraction,
        seed,
        jobs,
        flow_bound,
        echo=lambda line: click.echo(line, err=True),
    )
    missing = f"; {summary.not_in_raw} listed video(s) not in --raw" if summary.not_in_raw else ""
    _finish(out.expanduser().resolve(), "ucf101", summary, missing)


@prepare_group.command("check")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
def check_cmd(folder: Path) -> None:
    """Check that a prepared folder holds what training reads (layout, splits, labels, every clip's files)."""  # noqa: E501 (click help's summary)
    from drltune.data.prepared_check import check_prepared

    click.echo(check_prepared(folder))


COMMANDS = [prepare_group]
