"""One encoder's weights from a saved run, so that a method can start from unimodal pretraining.

A saved run is any of: a checkpoint folder of drltune's trainer (its `best_state-<epoch>.pt`, the
selected epoch's weights), one such `.pt` file, a `.pt` file holding a state dict (flat, or under
"weights" or "model", the official repos' form), or a `.safetensors` file. Only the encoder's own
tensors (`audio_net.*` / `visual_net.*`) are read; heads are not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from drltune.errors import DrltuneError, typed_line

BEST_GLOB = (
    "best_state-*.pt"  # the trainer's selected weights in a checkpoint folder (train/checkpoint.py)
)


def weights_file(path: str | Path) -> Path:
    """The file a saved-run path names: itself, or the one selected-weights file of a checkpoint
    folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        found = sorted(path.glob(BEST_GLOB))
        if len(found) != 1:
            raise DrltuneError(
                f"{path}: expected one {BEST_GLOB} in a checkpoint folder, found {len(found)}"
            )
        return found[0]
    if not path.is_file():
        raise DrltuneError(f"{path}: no such file or checkpoint folder")
    return path


def _state_dict(path: Path) -> dict[str, Any]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say so in one line
        raise DrltuneError(f"{path} cannot be read as saved weights ({typed_line(exc)})") from None
    for key in ("weights", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DrltuneError(f"{path}: holds no state dict")
    return state


def encoder_state(path: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix` ("audio_net.") of a saved run, with the prefix removed."""
    file = weights_file(path)
    state = {k[len(prefix) :]: v for k, v in _state_dict(file).items() if k.startswith(prefix)}
    if not state:
        raise DrltuneError(
            f"{file}: has no {prefix.rstrip('.')} weights (is it a drltune run's weights?)"
        )
    return state


def load_encoder(encoder: nn.Module, path: str | Path, prefix: str) -> None:
    """Copy a saved run's encoder weights into `encoder`; a different architecture is an error."""
    state = encoder_state(path, prefix)
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise DrltuneError(
            f"{path}: {prefix.rstrip('.')} weights lack {missing[0]} (and {len(missing) - 1} more)"
        )
    for key, tensor in own.items():
        if state[key].shape != tensor.shape:
            raise DrltuneError(
                f"{path}: {prefix}{key} has shape {tuple(state[key].shape)}, this model "
                f"{tuple(tensor.shape)} (another encoder_width or input?)"
            )
    encoder.load_state_dict({k: state[k] for k in own})
