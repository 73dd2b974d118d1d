"""A video file's audio track as a waveform (PyAV), for datasets that ship videos only
(Kinetics)."""

from __future__ import annotations

import numpy as np


class NoAudio(ValueError):
    """The container has no audio stream (many Kinetics videos are silent)."""


def video_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 waveform of the first audio stream at `sample_rate`, channels averaged
    (what `ffmpeg -ac 1 -ar RATE` gives the papers' scripts), via libswresample."""
    import av  # the `media` extra; only `prepare` decodes video

    with av.open(path) as container:
        if not container.streams.audio:
            raise NoAudio("the file has no audio track")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks: list[np.ndarray] = []
        for frame in container.decode(stream):
            chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(frame))
        chunks.extend(f.to_ndarray().reshape(-1) for f in resampler.resample(None))  # flush
    wave = np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)
    if wave.size == 0:
        raise NoAudio("the audio track holds no samples")
    return wave
