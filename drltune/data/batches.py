"""On-device batches: gather a split's rows, move them to the device, normalise and augment there
(batched RandomResizedCrop + flip, one draw per clip)."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.ops import roi_align

from drltune.data.base import Split

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_device_batch(
    split: Split,
    rows: np.ndarray,
    device: torch.device,
    augment: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather rows, move them to the device, then normalise and (optionally) augment there."""
    return finish_batch(*host_batch(split, rows, pin=False), device, augment, generator)


def host_batch(
    split: Split, rows: np.ndarray, pin: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The rows gathered on the host; `pin`: in page-locked memory, so that a copy to a GPU is
    asynchronous (from pageable memory a `non_blocking` copy still blocks the host)."""
    audio, visual, labels = (
        torch.from_numpy(np.ascontiguousarray(a[rows]))
        for a in (split.audio, split.visual, split.labels)
    )
    return (
        (audio.pin_memory(), visual.pin_memory(), labels.pin_memory())
        if pin
        else (audio, visual, labels)
    )


def finish_batch(
    audio: torch.Tensor,
    visual: torch.Tensor,
    labels: torch.Tensor,
    device: torch.device,
    augment: bool,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Host tensors to the device (asynchronously from pinned memory), normalised and augmented
    there."""
    non_blocking = device.type == "cuda"
    audio = audio.to(device, non_blocking=non_blocking).float()
    visual = visual.to(device, non_blocking=non_blocking)
    labels = labels.to(device, non_blocking=non_blocking).long()
    if (
        augment and device.type == "cpu"
    ):  # on uint8, where a CPU crops and resizes several times faster
        visual = augment_frames(visual, generator)
    visual = (
        visual.float()
    )  # still 0..255: crop/resize are linear, and the /255 folds into mean and std
    if augment and device.type != "cpu":
        visual = augment_frames(visual, generator)
    mean, std = normalisation(device)
    return audio, visual.sub_(mean).div_(std), labels


@functools.lru_cache(maxsize=None)
def normalisation(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """ImageNet mean and std on 0..255 frames, built once per device (not per batch)."""
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 1, 3, 1, 1) * 255.0
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 1, 3, 1, 1) * 255.0
    return mean, std


def augment_frames(
    visual: torch.Tensor,
    generator: torch.Generator | None = None,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Batched RandomResizedCrop + horizontal flip, one draw per clip (all its frames alike).

    Runs on whatever device `visual` (B,T,3,H,W floats) lives on, via one `roi_align` call.
    uint8 frames take the CPU route instead: integer crops resized per clip with antialiased
    bilinear interpolation (what torchvision's RandomResizedCrop does to a uint8 tensor).
    """
    b, t, c, h, w = visual.shape
    boxes, flip = _random_crops(b, h, w, generator, scale, ratio)
    if visual.dtype == torch.uint8:
        return _crop_resize_uint8(visual, boxes, flip)
    boxes = boxes.to(visual.device, visual.dtype)
    boxes = torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1).repeat_interleave(
        t, dim=0
    )
    idx = torch.arange(b * t, device=visual.device, dtype=visual.dtype).unsqueeze(1)
    flat = visual.reshape(b * t, c, h, w)
    out = roi_align(
        flat,
        torch.cat([idx, boxes], dim=1),
        output_size=(h, w),
        spatial_scale=1.0,
        sampling_ratio=2,
        aligned=True,
    )
    flip = flip.to(visual.device).repeat_interleave(t).view(-1, 1, 1, 1)
    out = torch.where(flip, out.flip(-1), out)
    return out.view(b, t, c, h, w)


def _random_crops(
    b: int,
    h: int,
    w: int,
    generator: torch.Generator | None,
    scale: tuple[float, float],
    ratio: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per clip a crop box (x0, y0, width, height) in pixels and a flip decision, drawn on the
    CPU."""
    draw = lambda n: torch.rand(n, generator=generator)  # noqa: E731
    area = h * w * (scale[0] + (scale[1] - scale[0]) * draw(b))
    log_r = torch.log(torch.tensor(ratio))
    aspect = torch.exp(log_r[0] + (log_r[1] - log_r[0]) * draw(b))
    cw = torch.sqrt(area * aspect).clamp(1, w)
    ch = torch.sqrt(area / aspect).clamp(1, h)
    x0 = (w - cw) * draw(b)
    y0 = (h - ch) * draw(b)
    return torch.stack([x0, y0, cw, ch], dim=1), draw(b) < 0.5


def _crop_resize_uint8(
    visual: torch.Tensor, boxes: torch.Tensor, flip: torch.Tensor
) -> torch.Tensor:
    h, w = visual.shape[-2:]
    out = torch.empty_like(visual)
    for i, ((x, y, cw, ch), flipped) in enumerate(zip(boxes.tolist(), flip.tolist())):
        x, y, cw, ch = int(x), int(y), max(1, round(cw)), max(1, round(ch))
        crop = visual[i, :, :, y : min(y + ch, h), x : min(x + cw, w)].contiguous(
            memory_format=torch.channels_last
        )
        resized = F.interpolate(
            crop, size=(h, w), mode="bilinear", align_corners=False, antialias=True
        )
        out[i] = resized.flip(-1) if flipped else resized
    return out
