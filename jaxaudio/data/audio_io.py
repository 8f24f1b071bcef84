"""Reading one audio file as a mono float32 clip at a given rate, with errors that name it.

Shared by the pair folders, the dataset builder and the latent cache. Resampling uses soxr
(a librosa dependency, so always present with jaxaudio) at its high-quality setting, and
falls back to ``scipy.signal.resample_poly`` if soxr cannot be imported.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf

try:
    import soxr
except ImportError:  # pragma: no cover - soxr ships with librosa
    soxr = None


class BadFileError(ValueError):
    """An input file that cannot be used; ``path`` names it, ``problem`` says why."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


def resample(audio: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample ``[N]`` or ``[N, C]`` float audio from ``orig_sr`` to ``target_sr`` Hz."""
    if orig_sr == target_sr:
        return audio
    if soxr is not None:
        return np.asarray(soxr.resample(audio, orig_sr, target_sr, quality="HQ"), np.float32)
    from scipy.signal import resample_poly

    g = math.gcd(int(orig_sr), int(target_sr))
    return resample_poly(audio, target_sr // g, orig_sr // g, axis=0).astype(np.float32)


def resampled_length(frames: int, orig_sr: int, target_sr: int) -> int:
    """Number of samples ``frames`` samples at ``orig_sr`` become at ``target_sr``."""
    if orig_sr == target_sr:
        return int(frames)
    return int(math.ceil(frames * target_sr / orig_sr))


def header(path: str | Path) -> sf._SoundFileInfo:
    """The file's header (rate, frames, channels) without decoding; BadFileError if unreadable."""
    try:
        info = sf.info(str(path))
    except Exception as e:  # soundfile raises LibsndfileError / RuntimeError / TypeError
        raise BadFileError(path, f"cannot be opened as audio ({e}); expected a WAV file") from e
    if info.samplerate <= 0 or info.channels <= 0:
        raise BadFileError(path, f"has an invalid header (rate {info.samplerate} Hz, "
                                 f"{info.channels} channels)")
    return info


def read_mono(path: str | Path, sample_rate: int) -> tuple[np.ndarray, int]:
    """Decode ``path`` to mono float32 ``[N]`` at ``sample_rate`` Hz.

    Channels are averaged (the original's stereo-to-mono rule). Returns the clip and the
    file's own rate, so callers can tell the user when resampling happened.
    """
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:
        raise BadFileError(path, f"cannot be decoded as audio ({e}); expected a WAV file") from e
    if data.shape[0] == 0:
        raise BadFileError(path, "contains no samples; expected a non-empty clip")
    mono = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    if bad:
        raise BadFileError(path, f"contains {bad} NaN or infinite samples; expected finite audio")
    return resample(mono, sr, sample_rate), int(sr)


def fit_length(clip: np.ndarray, num_samples: int) -> np.ndarray:
    """Crop ``[N]`` to its first ``num_samples`` samples, or pad it with trailing silence."""
    if clip.shape[0] >= num_samples:
        return np.ascontiguousarray(clip[:num_samples])
    return np.pad(clip, (0, num_samples - clip.shape[0]))
