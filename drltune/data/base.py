"""What every dataset hands the trainer: in-memory or memory-mapped arrays, and the dataset
registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterator, Sequence

import numpy as np
import torch

from drltune.params import Param
from drltune.registry import Registry


class RowView:
    """Rows `index` of an array, read only when indexed: a subset of a memory-mapped split stays
    on disk instead of being copied."""

    def __init__(self, array: np.ndarray | RowView, index: np.ndarray) -> None:
        self.array, self.index = array, index

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.index), *self.array.shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        return self.array[self.index[rows]]


@dataclass
class Split:
    """One split: audio (N,1,F,T) float16/float32, visual (N,T,3,H,W) uint8, labels (N,) int64.

    The arrays may be `np.memmap`s shared by every trial on a node; batches copy only their rows.
    """

    audio: np.ndarray | RowView
    visual: np.ndarray | RowView
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[np.ndarray]:
        n = len(self)
        order = torch.randperm(n, generator=generator).numpy() if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for start in range(0, stop, batch_size):
            yield np.sort(
                order[start : start + batch_size]
            )  # sorted rows read memmaps sequentially

    def subset(self, rows: np.ndarray) -> "Split":
        """The given rows (sorted), as a new split that reads them from this one's arrays."""
        rows = np.sort(np.asarray(rows, dtype=np.int64))
        return Split(RowView(self.audio, rows), RowView(self.visual, rows), self.labels[rows])


@dataclass
class DataBundle:
    train: Split
    val: Split
    test: Split
    class_names: Sequence[str]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def audio_shape(self) -> tuple[int, ...]:
        return tuple(self.train.audio.shape[1:])

    @property
    def visual_shape(self) -> tuple[int, ...]:
        return tuple(self.train.visual.shape[1:])


class DatasetSpec:
    """A registered dataset: its parameters, the TrialConfig defaults that suit it, and a loader.

    A dataset is a subclass with a `name`, registered with `@DATASETS.register`."""

    name: ClassVar[str]
    description: ClassVar[str]
    params: ClassVar[tuple[Param, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    method_defaults: ClassVar[
        dict[str, dict[str, Any]]
    ] = {}  # per method, overriding its declared defaults
    needs_data_root: ClassVar[bool] = True

    @classmethod
    def load(cls, data_root: str | None, params: dict[str, Any]) -> DataBundle:
        raise NotImplementedError


DATASETS: Registry = Registry("dataset")
