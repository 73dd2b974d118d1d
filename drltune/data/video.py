"""Frames as the papers take them: 1 fps from the video (PyAV), segment-middle picks, Resize((s, s))
(PIL)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")


def frames_per_second(
    path: str, per_second: int = 1, partial_seconds: bool = False
) -> list[np.ndarray]:
    """RGB frames (H,W,3) uint8 kept like the OGM/DR `video2frame_update`: the first `per_second`
    evenly spaced frames of every *whole* second (a trailing partial second is dropped).
    A clip shorter than one second keeps its first frame, so no clip ends up without frames.

    `partial_seconds` also keeps the frames of a trailing partial second: a 1.5 s clip then has
    frames at 0 s and 1 s instead of one frame, which DR's 2-frame pick would use twice."""
    import av  # the `media` extra; only `prepare` decodes video

    with av.open(path) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        fps = video_fps(stream)
        candidates, total = [], 0  # only the frames that may be kept are converted to RGB
        for frame in container.decode(stream):
            if kept(total, fps, per_second):
                candidates.append((total, frame.to_ndarray(format="rgb24")))
            total += 1
    if not total:
        raise ValueError("no decodable video frames")
    whole = total if partial_seconds else total // fps * fps
    return [f for i, f in candidates if i < whole] or [candidates[0][1]]


def video_fps(stream) -> int:
    """A PyAV video stream's whole frame rate (the OpenCV `int(CAP_PROP_FPS)` the papers' scripts
    use)."""
    fps = int(round(float(stream.average_rate or stream.guessed_rate or 0)))
    if fps <= 0:
        raise ValueError("unknown frame rate")
    return fps


def kept(index: int, fps: int, per_second: int = 1) -> bool:
    """Whether frame `index` is one of the first `per_second` evenly spaced frames of its second."""
    interval = max(fps // per_second, 1)
    return index % fps < interval * per_second and index % fps % interval == 0


def frame_files(folder: Path) -> list[Path]:
    """The frame images of one clip folder, in name order (frame_00000.jpg, frame_00001.jpg,
    ...)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)


def segment_middles(available: int, wanted: int) -> list[int]:
    """DR's eval pick: split the frames into `wanted` equal segments and take each one's middle
    (seg = n // T; index seg // 2 + i * seg). With fewer frames than wanted, frames repeat in
    order."""
    if available >= wanted:
        seg = available // wanted
        return [i * seg + seg // 2 for i in range(wanted)]
    return [i * available // wanted for i in range(wanted)]


def load_resized(path: Path, size: int, channels: int = 3) -> np.ndarray:
    """One image as (C, size, size) uint8 after Resize((size, size)) (bilinear, as torchvision on
    PIL)."""
    with Image.open(path) as img:
        img = img.convert("RGB" if channels == 3 else "L").resize(
            (size, size), Image.Resampling.BILINEAR
        )
        arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(size, size, channels).transpose(2, 0, 1)


def pick_frames(folder: Path, wanted: int, size: int, channels: int = 3) -> np.ndarray:
    """(wanted, C, size, size) uint8: the segment-middle frames of a clip folder, resized."""
    files = frame_files(folder)
    if not files:
        raise ValueError(f"no frame images in {folder}")
    return np.stack(
        [load_resized(files[i], size, channels) for i in segment_middles(len(files), wanted)]
    )


def save_frames(frames: list[np.ndarray], folder: Path, quality: int = 95) -> None:
    """Write frames as frame_00000.jpg, frame_00001.jpg, ... (the DR naming; JPEG quality of
    OpenCV's default)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:05d}.jpg", quality=quality)
