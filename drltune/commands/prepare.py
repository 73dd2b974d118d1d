"""`drltune prepare DATASET`: turn a downloaded dataset into the folder training reads (--data-root)."""
from __future__ import annotations

import os
from pathlib import Path

import click


@click.group("prepare")
def prepare_group() -> None:
    """Decode a downloaded dataset into audio features, frames and split lists."""


@prepare_group.command("cremad")
@click.option("--raw", "raw", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The dataset as published (AudioWAV/, VideoFlash/) or preprocessed (audio/*.npy, frames/<clip>/).")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write; pass it to training as --data-root. Re-running resumes.")
@click.option("--splits", "splits_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Your split CSVs (train.csv or my_train.csv, val.csv, test.csv). Default: the papers' split "
                   "when the clip names match, else a deterministic 80/10/10 split stratified by class.")
@click.option("--by-actor", is_flag=True, help="Make the fallback split speaker-independent (no actor in two splits).")
@click.option("--audio-frontend", type=click.Choice(["fbank", "stft"]), default="fbank", show_default=True,
              help="fbank: DR/BalanceMM Kaldi fbank 256x128, AudioSet-normalised; stft: OGM-GE log-STFT 257x188.")
@click.option("--partial-seconds", is_flag=True,
              help="Also keep a frame of a clip's last, partial second (a 1.5 s clip gets 2 frames, not 1 used "
                   "twice); default: whole seconds only, as the OGM-GE preprocessing script.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the fallback split.")
@click.option("--jobs", type=click.IntRange(1, 256), default=min(8, os.cpu_count() or 1), show_default=True,
              help="Clips decoded in parallel (worker processes).")
def cremad_cmd(raw: Path, out: Path, splits_dir: Path | None, by_actor: bool, audio_frontend: str,
               partial_seconds: bool, seed: int, jobs: int) -> None:
    """CREMA-D: audio features, 1 fps frames and train/val/test lists (see docs/methods.md §7.1)."""
    from drltune.data.cremad_prepare import REPORT, prepare_cremad

    summary = prepare_cremad(raw, out, splits_dir, by_actor, audio_frontend, seed, jobs,
                             echo=lambda line: click.echo(line, err=True), partial_seconds=partial_seconds)
    sizes = ", ".join(f"{name} {n}" for name, n in summary.split_sizes.items())
    click.echo(f"prepared {summary.prepared} clip(s), reused {summary.reused}, skipped {len(summary.skipped)} "
               f"(listed in {out / REPORT}); splits: {summary.split_source}: {sizes}")
    click.echo(f"train with: --set dataset=cremad --set data_root={out}")


COMMANDS = [prepare_group]
