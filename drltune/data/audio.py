"""Audio front-ends of the papers (docs/methods.md §7.1), in torch: a Kaldi fbank and the OGM-GE
STFT.

torchaudio is not a dependency, so the Kaldi-compatible fbank (what
torchaudio.compliance.kaldi.fbank computes with the AST/BalanceMM options) is written out here with
torch.fft; reading uses soundfile and resampling scipy's polyphase filter.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable

import numpy as np
import torch
from scipy.signal import resample_poly

# AudioSet statistics the OGM/DR fbank recipes normalise with: (x - mean) / (2 * std).
FBANK_MEAN = -4.503877
FBANK_STD = 5.141276


def read_audio(path: str, sample_rate: int) -> np.ndarray:
    """Mono float32 waveform in [-1, 1] at `sample_rate` (averaging channels, resampling if
    needed)."""
    import soundfile  # the `media` extra; only `prepare` reads audio files

    wave, sr = soundfile.read(path, dtype="float32", always_2d=True)
    wave = wave.mean(axis=1)
    if wave.size == 0:
        raise ValueError("no audio samples")
    if sr != sample_rate:
        ratio = Fraction(sample_rate, sr)
        wave = resample_poly(wave, ratio.numerator, ratio.denominator).astype(np.float32)
    return wave


def _mel(freq: torch.Tensor | float) -> torch.Tensor | float:
    return 1127.0 * (
        torch.log1p(freq / 700.0) if isinstance(freq, torch.Tensor) else math.log1p(freq / 700.0)
    )


def kaldi_mel_banks(
    num_bins: int, n_fft: int, sample_rate: int, low_freq: float = 20.0
) -> torch.Tensor:
    """(num_bins, n_fft//2 + 1) triangular filters, equally spaced on Kaldi's mel scale (as in
    Kaldi)."""
    high_freq = sample_rate / 2
    mel_low, mel_high = _mel(low_freq), _mel(high_freq)
    delta = (mel_high - mel_low) / (num_bins + 1)
    fft_mel = _mel(torch.arange(n_fft // 2, dtype=torch.float64) * sample_rate / n_fft)
    left = mel_low + delta * torch.arange(num_bins, dtype=torch.float64).unsqueeze(1)
    center, right = left + delta, left + 2 * delta
    up = (fft_mel - left) / (center - left)
    down = (right - fft_mel) / (right - center)
    banks = torch.clamp(torch.minimum(up, down), min=0.0)
    return torch.nn.functional.pad(banks, (0, 1)).float()  # Kaldi leaves the Nyquist bin out


def kaldi_fbank(
    wave: np.ndarray,
    sample_rate: int,
    num_bins: int = 128,
    frame_ms: float = 25.0,
    shift_ms: float = 10.0,
    preemphasis: float = 0.97,
) -> torch.Tensor:
    """Log mel filterbank (frames, num_bins) like `kaldi.fbank(htk_compat=True, use_energy=False,
    window_type='hanning', dither=0)`: snip-edges framing, per-frame DC removal, pre-emphasis,
    a symmetric Hann window, power spectrum on a power-of-two FFT."""
    x = torch.from_numpy(np.asarray(wave, np.float32)).double()
    length, shift = int(sample_rate * frame_ms / 1000), int(sample_rate * shift_ms / 1000)
    if x.numel() < length:
        raise ValueError(f"audio shorter than one {frame_ms:g} ms frame")
    frames = x.unfold(0, length, shift)
    frames = frames - frames.mean(dim=1, keepdim=True)
    previous = torch.cat([frames[:, :1], frames[:, :-1]], dim=1)
    frames = (frames - preemphasis * previous) * torch.hann_window(
        length, periodic=False, dtype=torch.float64
    )
    n_fft = 1 << (length - 1).bit_length()
    power = torch.fft.rfft(frames, n=n_fft).abs().pow(2).float()
    energies = power @ kaldi_mel_banks(num_bins, n_fft, sample_rate).T
    return torch.clamp(energies, min=torch.finfo(torch.float32).eps).log()


def fbank_feature(wave: np.ndarray, sample_rate: int, target_frames: int = 256) -> np.ndarray:
    """DR/BalanceMM input: de-meaned wave -> 128-bin fbank, zero-padded or cut to `target_frames`,
    normalised with the AudioSet statistics. Shape (target_frames, 128)."""
    fb = kaldi_fbank(wave - wave.mean(), sample_rate)
    if fb.shape[0] < target_frames:
        fb = torch.nn.functional.pad(fb, (0, 0, 0, target_frames - fb.shape[0]))
    fb = fb[:target_frames]
    return ((fb - FBANK_MEAN) / (2 * FBANK_STD)).numpy()


def ogm_stft_feature(wave: np.ndarray, sample_rate: int, seconds: float = 3.0) -> np.ndarray:
    """OGM-GE/ARL input: wave tiled x3 and cut to 3 s, clipped to [-1, 1]; STFT n_fft 512, hop 353,
    periodic Hann, centred with reflect padding (librosa < 0.10); log(|S| + 1e-7). Shape (257, 188)
    at 22,050 Hz."""
    n = int(sample_rate * seconds)
    reps = max(3, math.ceil(n / len(wave)))  # OGM tiles x3; a clip under 1 s needs more to fill 3 s
    tiled = np.clip(np.tile(wave, reps)[:n], -1.0, 1.0)
    spec = torch.stft(
        torch.from_numpy(np.ascontiguousarray(tiled)),
        n_fft=512,
        hop_length=353,
        window=torch.hann_window(512),
        center=True,
        pad_mode="reflect",
        return_complex=True,
    )
    return torch.log(spec.abs() + 1e-7).numpy()


# name -> (sample rate the recipe reads at, feature function); `prepare --audio-frontend` picks one.
FRONTENDS: dict[str, tuple[int, Callable[[np.ndarray, int], np.ndarray]]] = {
    "fbank": (16_000, fbank_feature),
    "stft": (22_050, ogm_stft_feature),
}


def audio_feature(path: str, frontend: str) -> np.ndarray:
    """The chosen front-end's feature of one audio file, float32."""
    sample_rate, feature = FRONTENDS[frontend]
    return np.asarray(feature(read_audio(path, sample_rate), sample_rate), dtype=np.float32)
