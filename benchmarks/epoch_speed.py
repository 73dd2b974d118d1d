"""Seconds per plain epoch and per DR re-init epoch, split into train, evaluation and diagnosis:
drltune's trainer against a loop written the way the official DR code (ours.py) runs.

Generates CREMA-D-shaped clips (WAV + FLV), prepares them (1 fps JPEG frames, fbank features,
actor-disjoint 80/10/10 split) and times, each in its own process, alternating:

  drltune    `Trainer.fit` with method dr (re-init after epoch 2), on the memory-mapped cache
  reference  the official way: a DataLoader whose workers decode each frame JPEG with PIL and apply
             DR's eval transform (Resize + ToTensor + Normalize; DR's my_train mode skips the training
             augmentation), fp32, evaluation of the test split at the training batch size, and the
             diagnosis as separate feature passes over the shuffled train loader and the val loader,
             then 4 x MinMaxScaler + KMeans on float32 features and the blend of every encoder parameter

Both build the same model from the same seed (drltune's AVClassifier is the official network).
Epoch 0 warms up and is not reported; epoch 1 is a plain epoch and epoch 2 a re-init epoch.
`--compare DIR` adds a drltune row run from another checkout (e.g. `git worktree add ../base main`),
so before/after figures come from the same, interleaved conditions.

    .venv/bin/python benchmarks/epoch_speed.py --clips 240 --batch 16 --width 64 --image-size 224 --repeats 3
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

PHASES = ("train", "eval", "diag")


def run_drltune(src: str | None, root: str, args: dict, queue: mp.Queue) -> None:
    """One drltune run; returns {epoch: {phase: seconds}} measured around the trainer's own methods."""
    if src:
        sys.path.insert(0, src)
    import torch

    from drltune.config import TrialConfig
    from drltune.train import Trainer

    cfg = TrialConfig.from_dict({
        "dataset": "cremad", "data_root": root, "method": "dr", "epochs": 3, "seed": 0,
        "batch_size": args["batch"], "encoder_width": args["width"], "threads": args["threads"], "device": "cpu",
        "dataset_params": {"image_size": args["image_size"]},
        "params": {"reinit_epoch": 2, "reinit_num": 1, "kmeans_n_init": args["n_init"]}})
    trainer = Trainer(cfg)
    variant = args.get("variant")
    if variant == "channels_last":  # a lever under test: NHWC weights (conv inputs follow them)
        trainer.model.to(memory_format=torch.channels_last)
    elif variant == "eval256":  # the evaluation batch of earlier versions, to isolate that lever
        trainer.eval_batch_size = lambda: max(args["batch"], 256)
    calls: list[tuple[int, str, float]] = []  # (epoch, phase, seconds) per call
    state = {"epoch": 0}

    def timed(phase, fn):
        def wrapper(*a, **kw):
            start = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                calls.append((state["epoch"], phase, time.perf_counter() - start))
        return wrapper

    train_epoch = trainer.train_epoch

    def train_and_mark(epoch):
        state["epoch"] = epoch
        return train_epoch(epoch)

    trainer.train_epoch = timed("train", train_and_mark)
    trainer.evaluate = timed("eval", trainer.evaluate)
    trainer.method.on_epoch_end = timed("diag", trainer.method.on_epoch_end)
    trainer.fit()
    calls.pop()  # fit's final test pass of the selected model is not part of an epoch
    times: dict[int, dict[str, float]] = {}
    for epoch, phase, seconds in calls:
        times.setdefault(epoch, dict.fromkeys(PHASES, 0.0))[phase] += seconds
    queue.put({"epochs": times, "threads": torch.get_num_threads()})


def run_reference(root: str, args: dict, queue: mp.Queue) -> None:
    """The official loop's shape, timed the same way (see the module docstring)."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import MinMaxScaler
    from torchvision import transforms

    from drltune.data.cremad import CLASS_NAMES
    from drltune.data.splits import read_split
    from drltune.data.video import frame_files, segment_middles
    from drltune.models import AVClassifier

    torch.set_num_threads(args["threads"])
    size = args["image_size"]
    transform = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                                    transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

    class OfficialDataset(torch.utils.data.Dataset):
        def __init__(self, split: str) -> None:
            self.items = [(c, CLASS_NAMES.index(label)) for c, label in read_split(Path(root) / "splits" / f"{split}.csv")]

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int):
            clip, label = self.items[i]
            audio = torch.from_numpy(np.load(Path(root) / "audio" / f"{clip}.npy")).unsqueeze(0)
            files = frame_files(Path(root) / "frames" / clip)
            images = []
            for idx in segment_middles(len(files), 2):
                with Image.open(files[idx]) as img:
                    images.append(transform(img.convert("RGB")))
            return audio, torch.stack(images), label

    def loader(split: str, shuffle: bool) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(OfficialDataset(split), batch_size=args["batch"], shuffle=shuffle,
                                           num_workers=args["workers"],  # forked, as on the official Linux runs
                                           multiprocessing_context="fork" if args["workers"] else None)

    torch.manual_seed(0)
    model = AVClassifier(len(CLASS_NAMES), "concat", args["width"])
    initial = {n: t.detach().clone() for n, t in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=2e-3, momentum=0.9, weight_decay=1e-4)
    train_loader, val_loader, test_loader = loader("train", True), loader("val", False), loader("test", False)

    def features(dl):
        model.eval()
        feats_a, feats_v, labels = [], [], []
        with torch.no_grad():
            for audio, visual, y in dl:
                out = model(audio.float(), visual.float())
                feats_a.append(out.feat_a)
                feats_v.append(out.feat_v)
                labels.append(y)
        return torch.cat(feats_a).numpy(), torch.cat(feats_v).numpy(), torch.cat(labels).numpy()

    def purity(x, y):
        x = MinMaxScaler(feature_range=(-1, 1)).fit_transform(x)
        clusters = KMeans(n_clusters=len(CLASS_NAMES), random_state=0, n_init=args["n_init"]).fit_predict(x)
        return sum(np.bincount(y[clusters == c]).max() for c in np.unique(clusters)) / len(y)

    times: dict[int, dict[str, float]] = {}
    for epoch in range(3):
        slot = times[epoch] = dict.fromkeys(PHASES, 0.0)
        start = time.perf_counter()
        model.train()
        for audio, visual, y in train_loader:
            out = model(audio.float(), visual.float())
            loss = F.cross_entropy(out.logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        slot["train"] = time.perf_counter() - start
        start = time.perf_counter()
        model.eval()
        correct = 0
        with torch.no_grad():
            for audio, visual, y in test_loader:
                correct += (model(audio.float(), visual.float()).logits.argmax(1) == y).sum().item()
        slot["eval"] = time.perf_counter() - start
        if epoch == 2:
            start = time.perf_counter()
            train_a, train_v, train_y = features(train_loader)
            val_a, val_v, val_y = features(val_loader)
            for name, tr, va in (("audio_net.", train_a, val_a), ("visual_net.", train_v, val_v)):
                w = float(np.tanh(3.0 * abs(purity(tr, train_y) - purity(va, val_y))))
                with torch.no_grad():
                    for n, p in model.named_parameters():
                        if n.startswith(name):
                            p.data = w * initial[n] + (1 - w) * p.data
            slot["diag"] = time.perf_counter() - start
    queue.put({"epochs": times, "threads": torch.get_num_threads()})


def measure(target, *args) -> dict:
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, results))
    proc.start()
    while True:
        try:
            result = results.get(timeout=5)
            break
        except queue.Empty:
            if not proc.is_alive():
                raise SystemExit(f"error: {target.__name__} exited with {proc.exitcode} before reporting") from None
    proc.join()
    return result


def prepare_data(work: Path, clips: int) -> Path:
    from drltune.data.cremad_prepare import prepare_cremad
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the fixture writer lives with the tests
    from fake_cremad import write_cremad_raw

    if len(list((work / "raw" / "AudioWAV").glob("*.wav"))) != clips:  # a kept --workdir is reused
        write_cremad_raw(work / "raw", clips, seconds=2.5, width=480, height=360, n_actors=10)
    prepare_cremad(work / "raw", work / "prepared", by_actor=True, echo=lambda line: print(line, file=sys.stderr))
    return work / "prepared"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--width", type=int, default=64, help="encoder width (64 = the papers' ResNet-18)")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers of the reference loop")
    ap.add_argument("--n-init", default="auto", help="KMeans n_init for both ('auto' = 1 run, sklearn >= 1.4's default)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per row, alternating; medians are reported")
    ap.add_argument("--compare", action="append", default=[], metavar="DIR",
                    help="also time drltune from this checkout (repeatable): a before/after row")
    ap.add_argument("--variants", default="", help="comma-separated extra drltune rows, each one lever changed: "
                    "channels_last (NHWC model), eval256 (evaluation batch >= 256 as before)")
    ap.add_argument("--no-reference", action="store_true", help="skip the official-style loop")
    ap.add_argument("--workdir", help="keep the generated data here instead of a temp dir (and reuse it)")
    args = ap.parse_args(argv)
    n_init = int(args.n_init) if args.n_init.isdigit() else args.n_init
    settings = {"batch": args.batch, "width": args.width, "image_size": args.image_size, "threads": args.threads,
                "workers": args.workers, "n_init": n_init}
    with tempfile.TemporaryDirectory() as tmp:
        root = str(prepare_data(Path(args.workdir or tmp), args.clips))
        from drltune.data import load_dataset

        bundle = load_dataset("cremad", root, {"frames": 2, "image_size": args.image_size})  # build the cache untimed
        print(f"data: {args.clips} CREMA-D-shaped clips, split {len(bundle.train)}/{len(bundle.val)}/"
              f"{len(bundle.test)} (actor-disjoint); batch {args.batch}, width {args.width}, "
              f"{args.image_size}px, {args.threads} threads, reference workers {args.workers}, "
              f"KMeans n_init {n_init}; medians of {args.repeats} alternating runs")
        del bundle
        rows: dict[str, tuple] = {"drltune": (run_drltune, None, settings)}
        for variant in filter(None, args.variants.split(",")):
            rows[f"drltune+{variant}"] = (run_drltune, None, {**settings, "variant": variant})
        rows.update({f"drltune@{Path(d).name}": (run_drltune, str(Path(d).resolve()), settings) for d in args.compare})
        if not args.no_reference:
            rows["reference"] = (run_reference, settings)
        runs: dict[str, list[dict]] = {name: [] for name in rows}
        for _ in range(args.repeats):
            for name, (target, *head, row_settings) in rows.items():
                runs[name].append(measure(target, *head, root, row_settings))
    report(runs, "reference" if "reference" in runs else None)


def report(runs: dict[str, list[dict]], reference: str | None) -> None:
    def median(name: str, epoch: int, phase: str | None = None) -> float:
        vals = [sum(r["epochs"][epoch].values()) if phase is None else r["epochs"][epoch][phase] for r in runs[name]]
        return statistics.median(vals)

    header = (f"{'row':<22} {'plain s':>8} {'train':>7} {'eval':>6} {'re-init s':>10} {'train':>7} {'eval':>6} "
              f"{'diag':>6}" + (f" {'plain x':>8} {'re-init x':>9}" if reference else ""))
    print(header)
    print("-" * len(header))
    for name in runs:
        line = (f"{name:<22} {median(name, 1):>8.2f} {median(name, 1, 'train'):>7.2f} {median(name, 1, 'eval'):>6.2f} "
                f"{median(name, 2):>10.2f} {median(name, 2, 'train'):>7.2f} {median(name, 2, 'eval'):>6.2f} "
                f"{median(name, 2, 'diag'):>6.2f}")
        if reference:
            line += f" {median(reference, 1) / median(name, 1):>7.2f}x {median(reference, 2) / median(name, 2):>8.2f}x"
        print(line, flush=True)
    print("x = the reference's median seconds / this row's (above 1: faster than the official way)")


if __name__ == "__main__":
    main()
