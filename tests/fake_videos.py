"""Write small real video files (PyAV) for the prepare tests and the data benchmark: a class-coloured
square that moves a few pixels a frame, and an optional class-pitched tone as an AAC audio track."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def write_video(path: Path, k: int = 0, seconds: float = 2.0, fps: int = 8, width: int = 32, height: int = 24,
                audio: bool = True, sample_rate: int = 16_000, codec: str = "mpeg4") -> Path:
    """One video of `seconds` with content depending on class index `k`; the container follows the suffix."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(k)
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = None
        if audio:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
        background = np.clip(rng.normal(90, 25, (height, width, 3)), 0, 255).astype(np.uint8)
        side = max(height // 3, 2)
        for i in range(int(fps * seconds)):
            img = background.copy()
            x = (2 * i) % (width - side)
            img[height // 3:height // 3 + side, x:x + side] = (40 * k % 256, 255 - 40 * k % 256, 200)
            for packet in video.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            n = int(sample_rate * seconds)
            t = np.arange(n) / sample_rate
            wave = (0.3 * np.sin(2 * np.pi * (300 + 150 * k) * t) + 0.02 * rng.standard_normal(n)).astype(np.float32)
            step = sound.codec_context.frame_size or 1024
            for start in range(0, n, step):
                frame = av.AudioFrame.from_ndarray(wave[None, start:start + step], format="flt", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                for packet in sound.encode(frame):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def write_corrupt(path: Path) -> Path:
    """A file with a video suffix that no demuxer can read."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 4)
    return path
