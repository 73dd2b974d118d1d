"""Process-wide CUDA settings a trial asks for: deterministic kernels, cuDNN autotuning, and the
allocator configuration that lets several trial processes share one GPU.

They are global to the process, and Ray reuses a worker for the next trial: every CUDA trial sets
each of them, on or off, so nothing leaks from the trial before. A CPU trial touches none of them.
"""

from __future__ import annotations

import gc
import os

import torch

# cuBLAS picks its reduction order per workspace; a fixed workspace makes it repeatable
# (https://docs.nvidia.com/cuda/cublas/#results-reproducibility). Read when cuBLAS starts.
CUBLAS_WORKSPACE = ":4096:8"
# Segments that grow and shrink in place: less fragmentation, so a capped share of a GPU holds more,
# and freed memory goes back for the other processes on the same GPU.
ALLOC_CONF = "expandable_segments:True"


def prepare_process(deterministic: bool) -> None:
    """The environment CUDA reads once, when it starts in this process: call it before the first
    CUDA use (a user's own settings win). In a reused Ray worker the first trial's settings hold."""
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", ALLOC_CONF)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def apply(device: torch.device, deterministic: bool, cudnn_benchmark: bool) -> None:
    """Set the flags for a trial on `device` (nothing on a CPU: its kernels are deterministic for a
    given thread count already)."""
    if device.type != "cuda":
        return
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cudnn.benchmark = cudnn_benchmark


def release_cached_memory() -> None:
    """Give the cached blocks of a finished trial back to the GPU, so that the next trial on this
    (reused) worker, or another process on the same GPU, can have them."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        # the finished trainer's reference cycles, so that its blocks are free to give back
        gc.collect()
        torch.cuda.synchronize()
        torch.cuda.empty_cache()


def cap_memory(share: float, device: torch.device, context_bytes: int) -> float | None:
    """Hold this process to its `share` of the GPU (Ray's fractional GPU is a label only): the
    allocator refuses more than share x memory, less one CUDA context (which it cannot count), so
    a trial that outgrows its share fails alone instead of starving the trials beside it.
    Returns the fraction set (None: a whole GPU or none, nothing capped)."""
    if device.type != "cuda" or share <= 0 or share >= 1:
        return None
    total = torch.cuda.get_device_properties(device).total_memory
    fraction = max(share - context_bytes / total, share / 2)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return fraction
