"""What trial checkpoints cost a search: bytes written per epoch, seconds spent checkpointing per
epoch, and the disk a search leaves in use when it ends.

A real `drltune search` runs in its own process session on small synthetic data (the encoder width
is what sets a checkpoint's size: 8 is the built-in default, 64 the papers' ResNet-18). While it runs,
the disk bytes written by every process of that session (/proc/PID/io write_bytes, the driver and
Ray's workers) are sampled; at the end the folder the search was started in is measured (the study
database excluded). Seconds per epoch spent checkpointing come from the trials' own records
(`checkpoint_s`) when the trainer records them; otherwise the same Trainer is timed in-process with
and without a checkpoint folder.

    .venv/bin/python benchmarks/checkpoint_cost.py                          # widths 8 and 64
    .venv/bin/python benchmarks/checkpoint_cost.py --widths 64 --trials 6 --epochs 4 --extra=--checkpoint-every=2
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna

DRLTUNE = str(Path(sys.executable).with_name("drltune"))
MARKER = "DRLTUNE_BENCH_RUN"
SPACE = """
fixed:
  encoder_width: {width}
  batch_size: 32
  threads: 1
  dataset_params: {{n_train: 64, n_val: 32, n_test: 32, audio_freq: 16, audio_time: 16, image_size: 16}}
space:
  lr: {{low: 1.0e-3, high: 1.0e-1, log: true}}
methods:
  dr: {{reinit_epoch: 2, reinit_num: 2, alpha: {{low: 0.5, high: 5.0, log: true}}, kmeans_n_init: 1}}
"""


def session_pids(tag: str) -> list[int]:
    needle = f"{MARKER}={tag}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if needle in Path(f"/proc/{entry}/environ").read_bytes():
                    pids.append(int(entry))
            except OSError:
                pass
    return pids


def write_bytes(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def disk_use(folder: Path, skip_suffix: str = ".db") -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            if not name.endswith(skip_suffix) and ".db-" not in name:
                try:
                    total += os.lstat(os.path.join(root, name)).st_size
                except OSError:
                    pass
    return total


def run_search(width: int, trials: int, epochs: int, extra: list[str]) -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="drltune-ckpt-bench-"))
    (work / "space.yaml").write_text(SPACE.format(width=width))
    tag = uuid.uuid4().hex
    env = {**os.environ, MARKER: tag}
    cmd = [DRLTUNE, "search", "--space", "space.yaml", "--trials", str(trials), "--max-epochs", str(epochs),
           "--concurrent", "2", "--pruner", "none", "--study", "bench", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    peak: dict[int, int] = {}
    while proc.poll() is None:
        for pid in session_pids(tag):
            value = write_bytes(pid)
            if value is not None:
                peak[pid] = max(value, peak.get(pid, 0))
        time.sleep(0.2)
    seconds = time.perf_counter() - start
    output = proc.stdout.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.exit(f"search failed:\n{output[-3000:]}")
    study = optuna.load_study(study_name="bench", storage=f"sqlite:///{work}/studies/drltune.db")
    histories = [t.user_attrs.get("history", []) for t in study.get_trials(deepcopy=False)]
    epochs_run = sum(len(h) for h in histories)
    ckpt = [r["checkpoint_s"] for h in histories for r in h if "checkpoint_s" in r]
    result = {"epochs": epochs_run, "bytes_per_epoch": sum(peak.values()) / max(epochs_run, 1),
              "disk_end": disk_use(work), "seconds": seconds,
              "ckpt_s": sum(ckpt) / max(epochs_run, 1) if ckpt else float("nan")}  # per epoch, saved or not
    shutil.rmtree(work, ignore_errors=True)
    return result


def in_process_checkpoint_seconds(width: int, epochs: int) -> float:
    """Per-epoch seconds that a checkpoint folder adds to Trainer.fit (for code without `checkpoint_s`)."""
    from drltune.config import TrialConfig
    from drltune.train import Trainer

    cfg = TrialConfig.from_dict({"method": "dr", "encoder_width": width, "epochs": epochs, "threads": 1,
                                 "batch_size": 32, "params": {"reinit_epoch": 2, "kmeans_n_init": 1},
                                 "dataset_params": {"n_train": 64, "n_val": 32, "n_test": 32, "audio_freq": 16,
                                                    "audio_time": 16, "image_size": 16}})
    times = {}
    for with_ckpt in (False, True, False, True):
        with tempfile.TemporaryDirectory() as folder:
            t0 = time.perf_counter()
            Trainer(cfg).fit(checkpoint_dir=folder if with_ckpt else None)
            times.setdefault(with_ckpt, []).append(time.perf_counter() - t0)
    return (min(times[True]) - min(times[False])) / epochs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", default="8,64")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--extra", default="", help="more `drltune search` arguments, space-separated")
    args = ap.parse_args()
    print(f"search: {args.trials} trials x {args.epochs} epochs, 2 concurrent, no pruning, DR; {args.extra or 'defaults'}")
    print(f"{'width':>5} {'epochs':>6} {'MB written/epoch':>16} {'ckpt s/epoch':>12} {'disk at end MB':>14} {'wall s':>7}")
    for width in (int(w) for w in args.widths.split(",")):
        r = run_search(width, args.trials, args.epochs, args.extra.split())
        ckpt = r["ckpt_s"]
        note = ""
        if ckpt != ckpt:  # nan: the trainer does not record it
            ckpt, note = in_process_checkpoint_seconds(width, args.epochs), "  (ckpt s: in-process Trainer, no Ray copy)"
        print(f"{width:>5} {r['epochs']:>6} {r['bytes_per_epoch'] / 2**20:>16.2f} {ckpt:>12.3f} "
              f"{r['disk_end'] / 2**20:>14.1f} {r['seconds']:>7.1f}{note}")


if __name__ == "__main__":
    main()
