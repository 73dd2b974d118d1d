"""How a search shares its machines' CPUs and GPUs among trials, decided before Ray starts any:
the CPUs each GPU trial gets by default, and whether the trials that Ray would pack onto one GPU
fit in its memory (refused in one line if not, instead of running out of memory mid-trial).
"""

from __future__ import annotations

import math
import shutil
import subprocess
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from drltune.errors import DrltuneError

GiB = 1024**3
# What each process on a GPU holds outside PyTorch's allocator (CUDA context, cuDNN and cuBLAS
# code and workspaces): a per-process memory cap cannot count it, so it is set aside first.
CONTEXT_BYTES = int(0.75 * GiB)
SLACK = 1.25  # allocator rounding and fragmentation, cuDNN workspaces, the prefetched next batch


def check_device_for_ray(device: str) -> None:
    """Ray gives a trial its GPU through CUDA_VISIBLE_DEVICES, where it is always cuda (cuda:0):
    a fixed index would name a GPU the trial cannot see, or another trial's."""
    if device.startswith("cuda:"):
        raise DrltuneError(
            f"device: {device} cannot be used in a search: Ray assigns each trial its GPU "
            "(the trial sees it as cuda); use device: auto or cuda, and --gpus-per-trial"
        )


def default_cpus_per_trial(
    nodes: Sequence[tuple[float, float]], gpus_per_trial: float, concurrent: int
) -> int:
    """CPUs per trial when --cpus-per-trial is not given. `nodes`: (CPUs, GPUs) of each node.

    Without GPUs 1, as before (a CPU trial's result depends on its thread count, and its cores
    are the ones that train). With GPUs, a node's cores divided by the trials it runs at once
    (its GPUs / each trial's share, at most --concurrent), on the tightest node: k-means,
    augmentation draws and batch gathering then use the cores a GPU machine has, instead of one."""
    return cpus_split(nodes, gpus_per_trial, concurrent)[0]


def cpus_split(
    nodes: Sequence[tuple[float, float]], gpus_per_trial: float, concurrent: int
) -> tuple[int, str]:
    """`default_cpus_per_trial` and, with GPUs, how it came about (for the search's start line)."""
    splits = []
    for cpus, gpus in nodes:
        if gpus > 0 and gpus_per_trial > 0:
            trials = max(1, min(concurrent, math.floor(gpus / gpus_per_trial + 1e-9)))
            splits.append(
                (max(1, math.floor(cpus / trials)), f"{cpus:g} cores / {trials} trials per node")
            )
    if not splits:
        return 1, ""
    return min(splits)


def ray_nodes(ray: Any) -> list[tuple[float, float]]:
    """(CPUs, GPUs) of each live node of the Ray cluster."""
    return [
        (float(n["Resources"].get("CPU", 0)), float(n["Resources"].get("GPU", 0)))
        for n in ray.nodes()
        if n.get("Alive")
    ]


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one training trial holds on its GPU, and what it was computed for."""

    bytes: int
    batch_size: int
    encoder_width: int

    def describe(self) -> str:
        return (
            f"about {self.bytes / GiB:.1f} GiB (batch_size {self.batch_size}, encoder_width "
            f"{self.encoder_width}: weights, gradients, optimiser state, activations)"
        )


def trial_memory(
    num_classes: int,
    audio_shape: tuple[int, ...],
    visual_shape: tuple[int, ...],
    fusion: str,
    batch_size: int,
    encoder_width: int,
    optimizer: str,
    eval_batch_size: int,
) -> MemoryEstimate:
    """The model built and run once on PyTorch's `meta` device (shapes only, no memory, no
    compute): its parameters, and every tensor autograd saves for the backward pass of one
    training batch (in float32: an upper bound for bf16 autocast), plus the largest layer outputs
    of an evaluation batch."""
    from drltune.models import AVClassifier

    with torch.device("meta"):
        model = AVClassifier(num_classes, fusion, encoder_width, audio_channels=audio_shape[0])
        params = sum(p.numel() * p.element_size() for p in model.parameters())
        own = {id(p) for p in model.parameters()}
        saved: dict[
            int, int
        ] = {}  # one entry per tensor (views count once: their base), weights excluded

        def pack(t: torch.Tensor) -> torch.Tensor:  # called for each tensor autograd keeps
            base = t._base if t._base is not None else t
            if id(base) not in own:
                saved[id(base)] = base.numel() * base.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.empty(batch_size, *audio_shape), torch.empty(batch_size, *visual_shape))
        largest = [0]

        def track(_module: Any, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                largest[0] = max(largest[0], output.numel() * output.element_size())

        hooks = [m.register_forward_hook(track) for m in model.modules()]
        with torch.no_grad():
            model(
                torch.empty(eval_batch_size, *audio_shape),
                torch.empty(eval_batch_size, *visual_shape),
            )
        for h in hooks:
            h.remove()
    optimiser_states = {"sgd": 1, "adam": 2, "adamw": 2}[optimizer]
    batch_inputs = (
        2 * batch_size * (math.prod(audio_shape) + math.prod(visual_shape)) * 4
    )  # this one and the next
    total = params * (2 + optimiser_states) + sum(saved.values()) + 2 * largest[0] + batch_inputs
    return MemoryEstimate(int(total * SLACK), batch_size, encoder_width)


def per_trial_cap(share: float, gpu_bytes: int) -> int:
    """The allocator cap of a trial with `share` of a GPU: its share, less one CUDA context."""
    return int(share * gpu_bytes) - CONTEXT_BYTES


def check_memory_fits(
    estimate: MemoryEstimate, share: float, gpu_bytes: int, gpus: int, concurrent: int
) -> None:
    """Refuse a GPU share too small for the trial (Ray would pack the trials, and they would run
    out of memory mid-trial)."""
    if share <= 0 or share >= 1:
        return  # no GPU, or whole GPUs: nothing shares one
    cap = per_trial_cap(share, gpu_bytes)
    if estimate.bytes <= cap:
        return
    needed = (
        math.ceil((estimate.bytes + CONTEXT_BYTES) / gpu_bytes * 10_000) / 10_000
    )  # Ray takes 4 decimals
    fit = max(1, math.floor(1 / needed)) * max(gpus, 1)
    raise DrltuneError(
        f"each trial needs {estimate.describe()}, but a {share:g} share of a {gpu_bytes / GiB:.0f} "
        f"GiB GPU holds {max(cap, 0) / GiB:.1f} GiB: --concurrent {concurrent} would run out of "
        f"GPU memory; give each trial at least --gpus-per-trial {needed:g} (with the default "
        f"share: --concurrent {fit} at most)"
    )


def local_gpu_bytes() -> int | None:
    """The smallest GPU's memory on this machine, from nvidia-smi (the driver starts no CUDA context
    of its own); None where it cannot tell."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
        sizes = [int(float(line)) * 1024**2 for line in out.split() if line.strip()]
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return min(sizes) if sizes else None


def largest(space: Any, key: str, default: int) -> int:
    """The largest value a search space gives `key` (a fixed value, a choice, or a range's end)."""
    for dim in getattr(space, "top", []):
        if dim.name == key:
            if dim.kind == "fixed":
                return int(dim.value)
            if dim.kind == "categorical":
                return int(max(dim.choices))
            return int(dim.high)
    return int(space.fixed.get(key, default)) if hasattr(space, "fixed") else default
