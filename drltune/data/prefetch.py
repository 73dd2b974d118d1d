"""Device batches that keep a GPU busy: the next batch is gathered into pinned memory and copied
(then normalised and augmented) on a side CUDA stream while the current one trains.

On a CPU device it is the plain path (`to_device_batch`, one batch at a time): the same tensors,
the same generator draws in the same order, so a CPU result does not change.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np
import torch

from drltune.data.base import Split
from drltune.data.batches import finish_batch, host_batch, to_device_batch

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def device_batches(
    split: Split,
    rows: Iterable[np.ndarray],
    device: torch.device,
    augment: bool,
    generator: torch.Generator | None,
) -> Iterator[Batch]:
    """(audio, visual, labels) on `device` for each row set, in order; prefetched one ahead on
    CUDA."""
    if device.type != "cuda":
        for r in rows:
            yield to_device_batch(split, r, device, augment, generator)
        return
    yield from _prefetched(split, iter(rows), device, augment, generator)


def _prefetched(
    split: Split,
    rows: Iterator[np.ndarray],
    device: torch.device,
    augment: bool,
    generator: torch.Generator | None,
) -> Iterator[Batch]:
    side = torch.cuda.Stream(device)
    main = torch.cuda.current_stream(device)

    def load(r: np.ndarray) -> tuple[Batch, torch.cuda.Event]:
        staged = host_batch(split, r, pin=True)
        with torch.cuda.stream(side):
            batch = finish_batch(*staged, device, augment, generator)
            ready = torch.cuda.Event()
            ready.record(side)
        return batch, ready

    pending = None
    for r in rows:
        loaded = load(r)
        if pending is not None:
            yield _hand_over(*pending, main)
        pending = loaded
    if pending is not None:
        yield _hand_over(*pending, main)


def _hand_over(batch: Batch, ready: torch.cuda.Event, main: torch.cuda.Stream) -> Batch:
    """The compute stream waits for the copy; the allocator learns that the compute stream uses
    the side stream's tensors (else it could reuse their memory while a kernel still reads it)."""
    main.wait_event(ready)
    for t in batch:
        t.record_stream(main)
    return batch
