"""Datasets behind a registry; importing this package registers the built-in ones."""

from drltune.data import (
    cremad,  # noqa: F401  (registers "cremad")
    kinetics_sounds,  # noqa: F401  (registers "kinetics_sounds")
    synthetic,  # noqa: F401  (registers "synthetic")
    ucf101,  # noqa: F401  (registers "ucf101")
)
from drltune.data.base import DATASETS, DataBundle, DatasetSpec, Split

__all__ = ["DATASETS", "DataBundle", "DatasetSpec", "Split", "load_dataset"]


def load_dataset(name: str, data_root: str | None, params: dict) -> DataBundle:
    """The dataset's DataBundle; `params` may leave out parameters that have a declared default."""
    from drltune.errors import DrltuneError
    from drltune.params import resolve_params

    spec = DATASETS.get(name)
    if spec.needs_data_root and not data_root:
        raise DrltuneError(
            f"dataset {name!r} needs its prepared folder (made by `drltune prepare {name}`): "
            "`data_root: DIR` in the config or `--set data_root=DIR` for train, "
            "`--data-root DIR` for search"
        )
    return spec.load(data_root, resolve_params(spec.params, params, "dataset_params"))
