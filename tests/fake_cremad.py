"""Write a CREMA-D-shaped raw folder (real WAV + FLV files) for tests and the data benchmarks.

Each clip has a class-dependent tone in noise and frames whose colour depends on the class, so the
data is learnable, and the files are what the published dataset holds: 16 kHz PCM WAVs in
AudioWAV/ and Sorenson (flv1) videos at 30 fps in VideoFlash/, named ActorID_Sentence_EMOTION_Level.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
SENTENCES = ("IEO", "DFA", "ITS", "IOM", "ITH", "IWL", "IWW", "MTI", "TAI", "TIE", "TSI", "WSI")


def clip_names(n_clips: int, n_actors: int = 4) -> list[str]:
    """Distinct CREMA-D names cycling over emotions, actors (1001...) and sentences."""
    names = []
    for i in range(n_clips):
        emotion = EMOTIONS[i % len(EMOTIONS)]
        actor = 1001 + (i // len(EMOTIONS)) % n_actors
        sentence = SENTENCES[(i // (len(EMOTIONS) * n_actors)) % len(SENTENCES)]
        level = ("XX", "LO", "MD", "HI")[(i // (len(EMOTIONS) * n_actors * len(SENTENCES))) % 4]
        names.append(f"{actor}_{sentence}_{emotion}_{level}")
    if len(set(names)) != n_clips:
        raise ValueError(f"at most {len(EMOTIONS) * n_actors * len(SENTENCES) * 4} distinct clips with {n_actors} actors")
    return names


def write_cremad_raw(root: Path, n_clips: int = 12, seconds: float = 2.2, width: int = 96, height: int = 72,
                     n_actors: int = 4, seed: int = 0) -> list[str]:
    """Create root/AudioWAV/*.wav and root/VideoFlash/*.flv; returns the clip names."""
    import av
    import soundfile

    rng = np.random.default_rng(seed)
    (root / "AudioWAV").mkdir(parents=True, exist_ok=True)
    (root / "VideoFlash").mkdir(parents=True, exist_ok=True)
    names = clip_names(n_clips, n_actors)
    sr, fps = 16_000, 30
    t = np.arange(int(sr * seconds)) / sr
    for name in names:
        k = EMOTIONS.index(name.split("_")[2])
        wave = 0.3 * np.sin(2 * np.pi * (300 + 250 * k) * t) + 0.05 * rng.standard_normal(t.size)
        soundfile.write(root / "AudioWAV" / f"{name}.wav", wave.astype(np.float32), sr, subtype="PCM_16")
        colour = np.array([40 * k, 255 - 40 * k, 128], np.float32)
        with av.open(str(root / "VideoFlash" / f"{name}.flv"), "w", format="flv") as container:
            stream = container.add_stream("flv", rate=fps)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            noisy = np.clip(colour + rng.normal(0, 20, (4, height, width, 3)), 0, 255).astype(np.uint8)
            for i in range(int(fps * seconds)):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(noisy[i % 4], format="rgb24")))
            container.mux(stream.encode())
    return names
