"""Trial checkpoints: written atomically, read with `weights_only`, so a retried trial continues
exactly where it stopped (same metrics as an uninterrupted run on CPU).

Two files, so that a checkpoint costs about one model (plus its optimiser state) per save:
`trainer_state.pt` (model, optimiser, RNG, history: rewritten at every save) and `best_state.pt`
(the selected model's weights: rewritten only when the selection changed). What a fresh trainer
rebuilds from the seed (DR's initial weights) is never stored.
Everything stored is a tensor or a plain type: RNG states become tensors, the history and the
config become JSON strings. Loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from drltune.errors import DrltuneError, typed_line

FILENAME = "trainer_state.pt"
BEST_PREFIX = "best_state-"  # + the epoch its weights are from + ".pt"
FORMAT = 2


def checkpoint_path(directory: str | os.PathLike) -> Path:
    return Path(directory) / FILENAME


def best_path(directory: str | os.PathLike, epoch: int) -> Path:
    return Path(directory) / f"{BEST_PREFIX}{epoch}.pt"


def _plain(value: Any) -> Any:
    """JSON fallback for numpy scalars that a method may put in an epoch record."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def rng_states() -> dict[str, Any]:
    """The global torch / numpy / python RNG states, as tensors and plain lists, and the CUDA
    generators' (one per visible GPU) when this process has used CUDA."""
    numpy_state = np.random.get_state(
        legacy=True
    )  # the default at run time (numpy's stubs say legacy=False)
    assert isinstance(numpy_state, tuple), "the global RandomState is always MT19937"
    kind, keys, pos, has_gauss, cached = numpy_state
    version, internal, gauss_next = random.getstate()
    cuda_used = torch.cuda.is_available() and torch.cuda.is_initialized()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if cuda_used else [],
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def set_rng_states(state: dict[str, Any]) -> None:
    """Restore `rng_states()`. The CUDA states go back to the GPUs this process sees (a Ray trial
    sees its own as GPU 0); where there is no CUDA, or the checkpoint has none (saved on a CPU, or
    before CUDA states were saved), the CUDA generators are left as seeded."""
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        for index, cuda_state in enumerate(cuda_states[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def _write(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a crash mid-write leaves the previous file intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def save(
    directory: str | os.PathLike,
    state: dict[str, Any],
    best_state: dict[str, torch.Tensor] | None = None,
) -> list[Path]:
    """Write `state` (tensors / plain types; `history` and `config` may be any JSON data; `owner`,
    the study's id, optional) and, when
    given, the selected model's weights (those of epoch `state["best_epoch"]`). The best file is
    written first under its epoch's name and older ones are removed only after the state file that
    names the new one: a crash at any point leaves a state file whose best file exists.
    Returns the files written."""
    directory = Path(directory)
    written = []
    if best_state is not None:
        written.append(best_path(directory, int(state["best_epoch"])))
        _write(written[-1], {"format": FORMAT, "weights": best_state})
    payload = {
        **state,
        "format": FORMAT,
        "history": json.dumps(state["history"], default=_plain),
        "config": json.dumps(state["config"], sort_keys=True, default=_plain),
    }
    _write(checkpoint_path(directory), payload)
    written.append(checkpoint_path(directory))
    keep = best_path(directory, int(state["best_epoch"])).name
    for old in directory.glob(f"{BEST_PREFIX}*.pt"):
        if old.name != keep:
            old.unlink(missing_ok=True)
    return written


def load(
    directory: str | os.PathLike, config: dict[str, Any], owner: str | None = None
) -> dict[str, Any] | None:
    """The state saved in `directory`, or None when there is none; refuses another config's
    checkpoint, and with `owner` (a study's id, see search/study.py) one that another study saved
    (one saved without an owner, before studies had ids, is taken)."""
    path = checkpoint_path(directory)
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"format {state.get('format')!r}, expected {FORMAT}")
        state["history"] = json.loads(state["history"])
        saved_config = json.loads(state["config"])
        state["best_state"] = None
        if state["best_epoch"] >= 0:
            best_file = best_path(directory, state["best_epoch"])
            state["best_state"] = torch.load(best_file, map_location="cpu", weights_only=True)[
                "weights"
            ]
    except Exception as exc:  # a truncated or foreign file: say so, do not guess
        raise DrltuneError(
            f"checkpoint {path} cannot be read ({typed_line(exc)}); "
            "delete its folder to start the trial over"
        ) from None
    saved_owner = state.get("owner")
    if owner is not None and saved_owner is not None and saved_owner != owner:
        raise DrltuneError(
            f"checkpoint {path} belongs to another study (id {saved_owner}, this one is {owner}); "
            "delete its folder to start the trial over"
        )
    expected = json.loads(json.dumps(config, sort_keys=True, default=_plain))
    # an unset key (None) equals an absent one: a checkpoint from before a setting existed still
    # fits
    saved_config = {k: v for k, v in saved_config.items() if v is not None}
    expected = {k: v for k, v in expected.items() if v is not None}
    if saved_config != expected:
        changed = sorted(
            k for k in set(saved_config) | set(expected) if saved_config.get(k) != expected.get(k)
        )
        raise DrltuneError(
            f"checkpoint {path} belongs to another config (differs in {', '.join(changed)})"
        )
    return state
