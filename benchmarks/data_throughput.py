"""Samples per second and peak memory of drltune's data path against the papers' way, on the same data.

Generates a CREMA-D-shaped raw folder (WAV + 480x360 FLV, like the published clips) in a temp dir,
runs `prepare` on it (1 fps JPEG frames + fbank features, the papers' on-disk layout) and then times:

  cached     drltune: rows of the memory-mapped uint8/float16 cache (224x224, 2 frames), batched
             RandomResizedCrop + flip + normalisation on tensors (`to_device_batch(augment=True)`)
  reference  the official DR/OGM code's way: a torch DataLoader whose Dataset opens each frame JPEG
             with PIL, applies torchvision RandomResizedCrop(224) + flip + ToTensor + Normalize on the
             CPU per sample, and loads the per-clip audio array

`cached` runs in one process on one torch thread; `reference` gets --workers DataLoader worker
processes besides its main one (the papers use several), so the reference has the larger CPU
budget. Each path runs in its own process; memory is ru_maxrss: the process right after its
imports (torch alone is several hundred MiB), its peak, and for `reference` the largest worker's
peak (forked workers share the parent's pages, which RSS counts in both).

    .venv/bin/python benchmarks/data_throughput.py --clips 320 --workers 2

Then one row per video dataset (`--prepare-clips` generated videos each, 0 skips them): what
`drltune prepare kinetics_sounds` (10 s 340x256 MP4s with AAC audio) and `prepare ucf101` (7 s
320x240 AVIs at 25 fps, TV-L1 flow) cost on one process, and the cache build over the result.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def peak_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def run_cached(root: str, batch: int, epochs: int, workers: int, device: str, queue: mp.Queue,
               audio_dtype: str = "float16") -> None:
    from drltune.data import load_dataset
    from drltune.data.batches import to_device_batch

    torch.set_num_threads(1)  # several threads lose to their own barriers on a busy 2-core machine
    base = peak_rss_mib()
    split = load_dataset("cremad", root, {"frames": 2, "image_size": 224, "audio_dtype": audio_dtype}).train
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs + 1):  # epoch 0 warms up (page cache, allocator) and is not timed
        if epoch == 1:
            seen, start = 0, time.perf_counter()
        for rows in split.batches(batch, shuffle=True, generator=gen):
            audio, visual, labels = to_device_batch(split, rows, dev, True, gen)
            seen += len(labels)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    queue.put((f"cached {audio_dtype}", seen / (time.perf_counter() - start), base, peak_rss_mib(), 0.0, tuple(visual.shape)))


class PaperDataset(torch.utils.data.Dataset):
    """What the DR/OGM CREMA-D datasets do per item in train mode (docs/methods.md §7.1)."""

    def __init__(self, root: Path, split: str, frames: int = 2) -> None:
        from torchvision import transforms

        from drltune.data.cremad import CLASS_NAMES
        from drltune.data.splits import read_split

        self.root, self.frames = root, frames
        self.items = [(clip, CLASS_NAMES.index(label)) for clip, label in read_split(root / "splits" / f"{split}.csv")]
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(224), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        from PIL import Image

        clip, label = self.items[i]
        audio = torch.from_numpy(np.load(self.root / "audio" / f"{clip}.npy")).unsqueeze(0)
        files = sorted((self.root / "frames" / clip).iterdir())
        seg = max(len(files) // self.frames, 1)
        picks = [min(s * seg + np.random.randint(seg), len(files) - 1) for s in range(self.frames)]
        images = []
        for p in picks:
            with Image.open(files[p]) as img:
                images.append(self.transform(img.convert("RGB")))
        return audio, torch.stack(images), label


def run_reference(root: str, batch: int, epochs: int, workers: int, device: str, queue: mp.Queue) -> None:
    torch.set_num_threads(1)
    base = peak_rss_mib()
    loader = torch.utils.data.DataLoader(PaperDataset(Path(root), "train"), batch_size=batch, shuffle=True,
                                         num_workers=workers, pin_memory=device == "cuda", persistent_workers=workers > 0)
    dev = torch.device(device)
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs + 1):  # epoch 0 starts the workers and warms up; it is not timed
        if epoch == 1:
            seen, start = 0, time.perf_counter()
        for audio, visual, labels in loader:
            visual = visual.to(dev)
            seen += len(labels)
    rate = seen / (time.perf_counter() - start)
    del loader  # joins the workers, so RUSAGE_CHILDREN covers them
    queue.put(("reference", rate, base, peak_rss_mib(), peak_rss_mib(resource.RUSAGE_CHILDREN), tuple(visual.shape)))


def measure(target, *args, **kwargs) -> tuple:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue), kwargs=kwargs)
    proc.start()
    result = queue.get()
    proc.join()
    return result


def prepare_rows(work: Path, clips: int) -> None:
    """One row per video dataset: prepare (one worker) and first-use cache build on generated videos."""
    from drltune.data import load_dataset
    from drltune.data.ks_prepare import prepare_kinetics_sounds
    from drltune.data.ucf_prepare import prepare_ucf101
    from fake_videos import write_video

    classes = ("playing bagpipes", "chopping wood", "tap dancing", "singing")
    ucf = ("ApplyEyeMakeup", "Archery", "YoYo", "Bowling")
    lists = work / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(ucf)))
    train, test = [], []
    for i in range(clips):
        k = i % len(classes)
        write_video(work / "ks_raw" / ("test" if i % 5 == 4 else "train") / classes[k] / f"clip{i:04d}.mp4", k,
                    seconds=10, fps=25, width=340, height=256)
        name = f"v_{ucf[k]}_g{1 + i // len(ucf):02d}_c01"  # one clip a group; g01 is the test list
        write_video(work / "UCF-101" / ucf[k] / f"{name}.avi", k, seconds=7, fps=25, width=320, height=240,
                    audio=False)
        (test if i < len(ucf) else train).append(f"{ucf[k]}/{name}.avi")
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\n".join(test) + "\n")
    quiet = {"echo": lambda line: None}
    runs = [("kinetics_sounds", lambda: prepare_kinetics_sounds(work / "ks_raw", work / "ks", jobs=1, **quiet),
             work / "ks", {"frames": 3, "image_size": 224, "val_fraction": 0.25}),
            ("ucf101", lambda: prepare_ucf101(work / "UCF-101", lists, work / "ucf", val_fraction=0.5, jobs=1, **quiet),
             work / "ucf", {"frames": 3, "flow_frames": 1, "image_size": 224})]
    print(f"{'dataset':<16} {'clips':>6} {'media s':>8} {'prepare s':>10} {'clips/s':>8} {'media s/s':>10} "
          f"{'cache s':>8}  (one process; generated videos)")
    for name, prepare, out, params in runs:
        t0 = time.perf_counter()
        summary = prepare()
        t1 = time.perf_counter()
        load_dataset(name, str(out), params)
        t2 = time.perf_counter()
        media = sum(summary.stats["media_seconds"].values())
        print(f"{name:<16} {summary.prepared:>6} {media:>8.0f} {t1 - t0:>10.1f} {summary.prepared / (t1 - t0):>8.2f} "
              f"{media / (t1 - t0):>10.1f} {t2 - t1:>8.1f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=320)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=2, help="timed passes over the training split per path (after one warm-up pass)")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference path")
    ap.add_argument("--repeats", type=int, default=3, help="runs per path; the best is reported (noisy machines)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workdir", help="keep the generated data here instead of a temp dir (and reuse it)")
    ap.add_argument("--audio-dtypes", default="float16,float32",
                    help="audio cache types to time, one `cached` row each (dataset_params.audio_dtype)")
    ap.add_argument("--prepare-clips", type=int, default=12,
                    help="generated videos per dataset for the kinetics_sounds and ucf101 prepare rows (0: skip)")
    args = ap.parse_args(argv)
    dtypes = args.audio_dtypes.split(",")

    from drltune.data import load_dataset
    from drltune.data.cremad_prepare import prepare_cremad
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture writer lives with the tests
    from fake_cremad import write_cremad_raw

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        t0 = time.perf_counter()
        if len(list((work / "raw" / "AudioWAV").glob("*.wav"))) != args.clips:  # a kept --workdir is reused
            write_cremad_raw(work / "raw", args.clips, seconds=2.5, width=480, height=360, n_actors=8)
        t1 = time.perf_counter()
        summary = prepare_cremad(work / "raw", work / "prepared", echo=lambda line: print(line, file=sys.stderr))
        t2 = time.perf_counter()
        bundle = load_dataset("cremad", str(work / "prepared"), {"frames": 2, "image_size": 224})
        t3 = time.perf_counter()
        n = len(bundle.train)
        print(f"data: {args.clips} generated CREMA-D-shaped clips (480x360 FLV, 16 kHz WAV), train split {n} clips; "
              f"device {args.device}, batch {args.batch}, {args.epochs} epochs; cached: 1 thread, reference: {args.workers} workers")
        if summary.prepared:
            total = n + len(bundle.val) + len(bundle.test)
            print(f"one-off: generate {t1 - t0:.1f}s, prepare {t2 - t1:.1f}s ({summary.prepared / (t2 - t1):.1f} "
                  f"clips/s), build cache {t3 - t2:.1f}s ({total / (t3 - t2):.1f} clips/s)")
        else:
            print(f"one-off: reused the data and cache in {work}")
        del bundle
        sizes = {}
        for dtype in dtypes:  # build each cache untimed; its audio file size is the dtype's cost
            cached = load_dataset("cremad", str(work / "prepared"), {"frames": 2, "image_size": 224, "audio_dtype": dtype})
            sizes[f"cached {dtype}"] = sum(s.audio.nbytes + s.visual.nbytes for s in (cached.train, cached.val, cached.test))
        del cached
        paths = [(f"cached {d}", run_cached, {"audio_dtype": d}) for d in dtypes] + [("reference", run_reference, {})]
        runs: dict[str, list[tuple]] = {name: [] for name, _, _ in paths}
        for _ in range(args.repeats):  # alternate, so a busy moment on a shared machine hits all
            for name, target, kwargs in paths:
                runs[name].append(measure(target, str(work / "prepared"), args.batch, args.epochs, args.workers,
                                          args.device, **kwargs))
    print(f"{'path':<16} {'samples/s best':>14} {'all runs':>16} {'RSS MiB: imports':>17} {'peak':>6} "
          f"{'worker peak':>12} {'cache MiB':>10}  batch visual shape")
    best = {}
    for name, results in runs.items():
        rates = [r[1] for r in results]
        best[name] = max(rates)
        size = f"{sizes[name] / 2**20:.1f}" if name in sizes else "-"
        print(f"{name:<16} {best[name]:>14.1f} {' '.join(f'{r:.0f}' for r in rates):>16} "
              f"{max(r[2] for r in results):>17.0f} {max(r[3] for r in results):>6.0f} "
              f"{max(r[4] for r in results):>12.0f} {size:>10}  {results[0][5]}")
    for dtype in dtypes:
        print(f"speed-up of the cached {dtype} path (best vs best): "
              f"{best[f'cached {dtype}'] / best['reference']:.1f}x")
    if args.prepare_clips:
        with tempfile.TemporaryDirectory() as tmp:
            prepare_rows(Path(tmp), args.prepare_clips)


if __name__ == "__main__":
    main()
