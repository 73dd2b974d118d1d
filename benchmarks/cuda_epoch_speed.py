"""GPU epochs timed (issue 24): plain and re-init epochs, the data path alone, one training step,
peak memory, the settings (cudnn_benchmark, channels_last, deterministic), and the aggregate
throughput of K trials sharing one GPU (each capped to 1/K of its memory, as a fractional-GPU
search runs them) against one trial alone.

Each measurement runs in its own process (a fresh CUDA context), on synthetic clips shaped like
CREMA-D (2 frames of 224 x 224, a 257 x 188 spectrogram), ResNet-18 at full width, DR re-initialising.
Without a CUDA device it prints "no CUDA device" and exits 0.

`--device cpu` times the same epochs on the CPU instead (the input path's CPU side), and
`--compare DIR` adds the rows of another checkout (e.g. `git archive main | tar -x -C /tmp/base`),
run alternately with this one, so that a before/after comes from the same conditions.

    .venv/bin/python benchmarks/cuda_epoch_speed.py --repeats 3 --share 4
    .venv/bin/python benchmarks/cuda_epoch_speed.py --device cpu --clips 96 --image-size 64 --width 16 \\
        --batch 16 --compare /tmp/base
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any

VARIANTS = {"plain": {}, "cudnn_benchmark": {"cudnn_benchmark": True}, "channels_last": {"channels_last": True},
            "deterministic": {"deterministic": True}}


def config(args: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"dataset": "synthetic", "method": "dr", "epochs": 3, "seed": 0, "device": args["device"],
            "batch_size": args["batch"], "encoder_width": args["width"], "threads": args["threads"],
            "dataset_params": {"n_train": args["clips"], "n_val": max(6, args["clips"] // 8),
                               "n_test": max(6, args["clips"] // 8), "image_size": args["image_size"],
                               "audio_freq": 257, "audio_time": 188},
            "params": {"reinit_epoch": 2, "reinit_num": 1}, **extra}


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
clock = time.perf_counter  # set per process from --clock


def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def epochs(src: str | None, args: dict[str, Any], extra: dict[str, Any], out: mp.Queue) -> None:
    """Seconds of a warm-up epoch (dropped), a plain epoch and a re-init epoch, each split into
    train / eval / diagnosis; the data path and one step alone; peak GPU memory."""
    global clock
    clock = CLOCKS[args["clock"]]
    if src:
        sys.path.insert(0, src)
    import torch

    from drltune.config import TrialConfig
    from drltune.train import Trainer

    if args["share"] and args["device"] == "cuda":  # as a search's trial with a 1/share GPU is capped
        from drltune.search.gpu_plan import CONTEXT_BYTES
        from drltune.train.cuda_settings import cap_memory

        cap_memory(1.0 / args["share"], torch.device("cuda"), CONTEXT_BYTES)
    trainer = Trainer(TrialConfig.from_dict(config(args, **extra)))
    dev = trainer.device
    trainer.method.setup()
    rows: dict[str, float] = {}
    for epoch in range(3):
        sync(dev)
        t0 = clock()
        trainer.train_epoch(epoch)
        sync(dev)
        t1 = clock()
        trainer.evaluate(trainer.data.val)
        t2 = clock()
        record = trainer.method.on_epoch_end(epoch)
        sync(dev)
        t3 = clock()
        if epoch == 1:
            rows.update(plain_train=t1 - t0, plain_eval=t2 - t1)
        if epoch == 2:
            assert record["reinit"], "epoch 2 must re-initialise"
            rows.update(reinit_train=t1 - t0, reinit_eval=t2 - t1, reinit_diag=t3 - t2)
    rows["clips_per_s"] = len(trainer.data.train) / rows["plain_train"]
    rows.update(data_path_s=data_path(trainer, src is None), step_ms=step_ms(trainer))
    if dev.type == "cuda":
        rows["peak_gib"] = torch.cuda.max_memory_allocated() / 1024**3
    out.put(rows)


def data_path(trainer: Any, prefetch: bool) -> float:
    """One epoch's batches on the device and nothing else (prefetched where this checkout has it)."""
    c, split = trainer.cfg, trainer.data.train
    rows = split.batches(c.batch_size, shuffle=True, generator=trainer.shuffle_gen)
    sync(trainer.device)
    t0 = clock()
    if prefetch:
        from drltune.data.prefetch import device_batches

        for _ in device_batches(split, rows, trainer.device, c.augment, trainer.augment_gen):
            pass
    else:
        from drltune.data.batches import to_device_batch

        for r in rows:
            to_device_batch(split, r, trainer.device, c.augment, trainer.augment_gen)
    sync(trainer.device)
    return clock() - t0


def step_ms(trainer: Any, steps: int = 10) -> float:
    """A training step on a batch already on the device, synchronised (ms)."""
    from drltune.data.batches import to_device_batch

    split = trainer.data.train
    audio, visual, labels = to_device_batch(split, list(range(trainer.cfg.batch_size)), trainer.device, False, None)
    trainer.model.train()
    trainer.method.train_step(audio, visual, labels, 1, 0)
    sync(trainer.device)
    t0 = clock()
    for s in range(steps):
        trainer.method.train_step(audio, visual, labels, 1, s)
    sync(trainer.device)
    return (clock() - t0) / steps * 1000


def shared(args: dict[str, Any], k: int) -> float:
    """Clips per second of `k` trials training at once on one GPU, each capped to 1/k of its memory."""
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=epochs, args=(None, {**args, "share": k}, {}, out)) for _ in range(k)]
    for p in procs:
        p.start()
    rows = [out.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(r["clips_per_s"] for r in rows)


def run(src: str | None, args: dict[str, Any], extra: dict[str, Any]) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    out = ctx.Queue()
    p = ctx.Process(target=epochs, args=(src, args, extra, out))
    p.start()
    rows = out.get()
    p.join()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--clips", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                    help="cpu: this process's CPU seconds (steadier than wall time on a shared CPU machine; "
                         "on a GPU it misses the GPU's time)")
    ap.add_argument("--share", type=int, default=4, help="trials sharing one GPU in the throughput row (0: skip)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"of {', '.join(VARIANTS)} (CUDA only)")
    ap.add_argument("--compare", help="another checkout's folder: its rows alternate with this one's")
    ap.add_argument("--json", help="write the raw rows here")
    ns = ap.parse_args()
    if ns.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("no CUDA device: nothing to time (see --device cpu)")
            return
        print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}")
    args = {k: getattr(ns, k) for k in ("device", "clips", "batch", "width", "image_size", "threads", "clock")}
    args["share"] = 0
    runs: dict[str, list[dict[str, float]]] = {}
    labels = [("this", None, v) for v in (ns.variants.split(",") if ns.device == "cuda" else ["plain"])]
    if ns.compare:
        labels.append(("compare", ns.compare, "plain"))
    for i in range(ns.repeats):  # interleaved, order reversed every other time: drifts hit every row alike
        for who, src, variant in (labels if i % 2 == 0 else labels[::-1]):
            runs.setdefault(f"{who}:{variant}", []).append(run(src, args, VARIANTS[variant]))
    keys = list(next(iter(runs.values()))[0])
    print(f"{ns.clips} clips, batch {ns.batch}, width {ns.width}, {ns.image_size}px, {ns.threads} threads; "
          f"median of {ns.repeats} ({ns.clock} seconds unless named)")
    print(f"{'row':26s}" + "".join(f"{k:>14s}" for k in keys))
    for name, rows in runs.items():
        print(f"{name:26s}" + "".join(f"{statistics.median(r[k] for r in rows if k in r):14.3f}"
                                      if all(k in r for r in rows) else f"{'-':>14s}" for k in keys))
    if ns.device == "cuda" and ns.share > 1:
        alone = statistics.median(r["clips_per_s"] for r in runs["this:plain"])
        together = shared(args, ns.share)
        print(f"{ns.share} trials sharing one GPU (1/{ns.share} of its memory each): {together:.1f} clips/s "
              f"in all, against {alone:.1f} for one trial alone ({together / alone:.2f}x)")
        runs["shared"] = [{"trials": ns.share, "clips_per_s": together}]
    if ns.json:
        with open(ns.json, "w") as fh:
            json.dump({"args": vars(ns), "runs": runs}, fh, indent=1)


if __name__ == "__main__":
    main()
