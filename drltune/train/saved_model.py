"""A trained model on disk: its weights in safetensors, its config beside it as YAML.

`drltune train --save-model model.safetensors` writes `model.safetensors` (the selected epoch's
weights: what `train` evaluated on test) and `model.safetensors.yaml` (the resolved TrialConfig
under a `meta` block with what rebuilding the model needs: classes, audio channels, the test
accuracy `train` printed). The YAML is also a config `drltune train --config` reads. Safetensors
holds tensors only, so loading runs no pickled code.

    from drltune.train import load_model, predict
    model = load_model("model.safetensors")          # eval mode, on the CPU
    labels = predict(model, split)                   # a Split of the config's dataset
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from drltune import safe_yaml
from drltune.config import TrialConfig
from drltune.data.base import Split
from drltune.data.batches import to_device_batch
from drltune.errors import DrltuneError
from drltune.methods import METHODS
from drltune.models import AVClassifier
from drltune.resolve import resolve

if TYPE_CHECKING:
    from drltune.train.trainer import Trainer, TrainResult

FORMAT = "drltune-model/1"  # meta.format: bumped when the layout of these two files changes


def config_path(path: str | os.PathLike) -> Path:
    """Where the config of the weights at `path` lives: the same name with `.yaml` appended."""
    return Path(f"{os.fspath(path)}.yaml")


def check_writable(path: str | os.PathLike) -> None:
    """Refuse a --save-model path before training rather than after it."""
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise DrltuneError(f"--save-model {path}: directory {folder} does not exist")
    if Path(path).is_dir():
        raise DrltuneError(
            f"--save-model {path}: is a directory; give a file name such as model.safetensors"
        )


def save_model(trainer: Trainer, result: TrainResult, path: str | os.PathLike) -> tuple[Path, Path]:
    """Write the trainer's current weights (after `fit`: the selected epoch's) and their config."""
    from safetensors.torch import save_model as save_tensors

    weights, cfg_file = Path(path), config_path(path)
    meta = {
        "format": FORMAT,
        "num_classes": trainer.model.num_classes,
        "audio_channels": trainer.data.audio_shape[0],
        "best_epoch": result.best_epoch,
        "test_acc": result.test_acc,
        "test_f1": result.test_f1,
    }
    try:
        save_tensors(
            trainer.model, str(weights), metadata={"format": FORMAT}
        )  # shared tensors stored once
        cfg_file.write_text(trainer.cfg.config.to_yaml(meta), encoding="utf-8")
    except OSError as exc:
        raise DrltuneError(f"cannot write {exc.filename or weights}: {exc.strerror}") from None
    return weights, cfg_file


def _read_meta(path: str | os.PathLike) -> tuple[TrialConfig, dict[str, Any]]:
    cfg_file = config_path(path)
    if not Path(path).is_file():
        raise DrltuneError(f"saved model not found: {path}")
    if not cfg_file.is_file():
        raise DrltuneError(
            f"{path}: its config {cfg_file} is missing (written beside it by --save-model)"
        )
    try:
        doc = safe_yaml.load(cfg_file.read_text(encoding="utf-8"))
    except Exception as exc:  # a YAML error or an unreadable file: one line either way
        raise DrltuneError(f"{cfg_file}: cannot read it: {exc}") from None
    meta = doc.get("meta") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise DrltuneError(
            f"{cfg_file}: not a drltune saved-model config (meta.format {FORMAT!r} expected)"
        )
    return TrialConfig.from_dict(
        {k: v for k, v in doc.items() if k != "meta"}, where=str(cfg_file)
    ), meta


def load_saved_config(path: str | os.PathLike) -> TrialConfig:
    """The TrialConfig the saved model was trained with (what `drltune train --config` reads
    too)."""
    return _read_meta(path)[0]


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> AVClassifier:
    """The model `train --save-model` wrote, rebuilt from its config (the method's own modules
    included) with its weights, in eval mode on `device`."""
    from safetensors.torch import load_model as load_tensors

    cfg, meta = _read_meta(path)
    resolved = resolve(cfg)
    model = AVClassifier(
        int(meta["num_classes"]),
        resolved.fusion,
        resolved.encoder_width,
        resolved.modality,
        audio_channels=int(meta["audio_channels"]),
    )
    METHODS.get(resolved.method)(resolved.params, None).extend_model(
        model
    )  # no trainer: extend_model needs none
    try:
        load_tensors(model, os.fspath(path), strict=True, device="cpu")
    except Exception as exc:  # a truncated file, or weights of another architecture
        raise DrltuneError(f"{path}: cannot load its weights: {str(exc).splitlines()[0]}") from None
    return model.to(device).eval()


@torch.inference_mode()
def predict(model: AVClassifier, split: Split, batch_size: int = 64) -> np.ndarray:
    """The model's class for each clip of `split` (eval mode, no augmentation, inputs normalised as
    in training; on CUDA under bf16 autocast, as `train` evaluates there)."""
    device = next(model.parameters()).device
    model.eval()
    out = []
    for rows in split.batches(batch_size, shuffle=False):
        audio, visual, _ = to_device_batch(split, rows, device, False, None)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            out.append(model(audio, visual).logits.float().argmax(1).cpu().numpy())
    return np.concatenate(out)
