"""What happens to audio around the model: the target fitted to the input's length, and the
original's post-processing of the decoded output (``inference_cascade.py``).

Post-processing, in order:

1. **Level.** The output is scaled so its RMS equals the quadratic mean of the input's and the
   target's RMS, ``sqrt((rms_in^2 + rms_tgt^2) / 2)`` (the original's formula; the input's
   alone when there is no target), by a gain of at most 3. RMS values skip the first 5000
   samples (0.21 s at 24 kHz) as the original does, where the codec's decoder is still warming
   up; clips shorter than twice that use every sample. A (near-)silent output is left alone.
2. **Notch filter** (``--filter``): spectral peaks above the ``--filter_percentile`` percentile
   of the output's FFT magnitudes, at 50 Hz or more, are removed with ``scipy.signal.iirnotch``
   (Q = 30) run forwards and backwards (``filtfilt``, no phase shift), at most ten of them; the
   RMS is then restored. The original notches the first ten outlier *bins* in frequency order
   (often neighbouring bins of a single peak, and counting the sub-50 Hz bins it skips); here
   the ten strongest distinct peaks are notched: the outlier bins by falling magnitude, a bin
   within a chosen notch's bandwidth (f / Q) being part of that notch.
3. **Limiter.** If the peak exceeds 1.0, the whole output is scaled to a peak of 0.9 (the
   original's "soft limiting": one gain, no distortion). It runs last, after the filter, so the
   written file never clips (the original filtered after limiting and clipped on writing).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RMS_SKIP_SAMPLES = 5000
MAX_GAIN = 3.0
SILENT_RMS = 1e-6
LIMIT_PEAK = 1.0
LIMITED_PEAK = 0.9
QUIET_RMS = 0.01  # below this the original warns that the output is very quiet
NOTCH_Q = 30.0
NOTCH_MIN_HZ = 50.0
MAX_NOTCHES = 10
TARGET_LOOP_FADE_SECONDS = 0.02


def rms(x: np.ndarray, skip: int = RMS_SKIP_SAMPLES) -> float:
    """RMS of ``[N]`` after its first ``skip`` samples (all of it when ``N < 2 * skip``)."""
    x = np.asarray(x, np.float64).reshape(-1)
    if x.size >= 2 * skip:
        x = x[skip:]
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def fit_target(target: np.ndarray, num_samples: int, sample_rate: int) -> np.ndarray:
    """The target ``[M]`` cropped to ``num_samples``, or looped up to it.

    A shorter target is repeated (a silent tail would hand the cascade nothing to mix), each
    repeat crossfaded into the previous one over 20 ms so the seams do not click.
    """
    target = np.asarray(target, np.float32)
    if target.shape[0] >= num_samples:
        return np.ascontiguousarray(target[:num_samples])
    fade = min(int(TARGET_LOOP_FADE_SECONDS * sample_rate), target.shape[0] // 2)
    ramp = ((np.arange(fade) + 0.5) / max(fade, 1)).astype(np.float32)
    out = target.copy()
    while out.shape[0] < num_samples:
        if fade:
            out[-fade:] = out[-fade:] * (1.0 - ramp) + target[:fade] * ramp
        out = np.concatenate([out, target[fade:]])
    return out[:num_samples]


def match_level(output: np.ndarray, input_audio: np.ndarray,
                target: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Step 1: ``(scaled output, gain)``."""
    out_rms = rms(output)
    if out_rms <= SILENT_RMS:
        return output, 1.0
    in_rms = rms(input_audio)
    goal = in_rms if target is None else float(np.sqrt((in_rms ** 2 + rms(target) ** 2) / 2.0))
    gain = min(goal / out_rms, MAX_GAIN)
    return (output * gain).astype(np.float32), float(gain)


def soft_limit(audio: np.ndarray) -> tuple[np.ndarray, float]:
    """Step 3: ``(audio, scale)``; scaled to a peak of 0.9 when its peak exceeds 1.0."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak <= LIMIT_PEAK:
        return audio, 1.0
    scale = LIMITED_PEAK / peak
    return (audio * scale).astype(np.float32), scale


def outlier_frequencies(audio: np.ndarray, sample_rate: int, percentile: float,
                        max_notches: int = MAX_NOTCHES, q: float = NOTCH_Q) -> list[float]:
    """Centre frequencies (Hz) of the strongest distinct spectral outliers (see step 2)."""
    spectrum = np.abs(np.fft.rfft(np.asarray(audio, np.float64)))
    freqs = np.fft.rfftfreq(audio.shape[0], 1.0 / sample_rate)
    threshold = np.percentile(spectrum, percentile)
    nyquist = sample_rate / 2.0
    candidates = np.nonzero((spectrum > threshold) & (freqs >= NOTCH_MIN_HZ)
                            & (freqs < 0.98 * nyquist))[0]
    chosen: list[float] = []
    for i in candidates[np.argsort(-spectrum[candidates], kind="stable")]:
        f = float(freqs[i])
        if any(abs(f - c) <= c / q for c in chosen):
            continue
        chosen.append(f)
        if len(chosen) == max_notches:
            break
    return chosen


def remove_frequency_outliers(audio: np.ndarray, sample_rate: int, percentile: float = 99.5,
                              ) -> tuple[np.ndarray, list[float]]:
    """Step 2: ``(filtered audio at the input's RMS, notched frequencies in Hz)``."""
    from scipy import signal

    audio = np.asarray(audio, np.float32)
    freqs = outlier_frequencies(audio, sample_rate, percentile)
    filtered = audio.astype(np.float64)
    for f in freqs:
        b, a = signal.iirnotch(f, NOTCH_Q, sample_rate)
        filtered = signal.filtfilt(b, a, filtered)
    before, after = rms(audio, 0), rms(filtered, 0)
    if after > 0:
        filtered *= before / after
    return filtered.astype(np.float32), freqs


@dataclass
class PostInfo:
    """What post-processing did: the level gain, the limiter's scale, notched frequencies."""

    gain: float = 1.0
    limiter_scale: float = 1.0
    notches: list[float] = field(default_factory=list)
    rms_before: float = 0.0
    rms_after: float = 0.0


def postprocess(output: np.ndarray, input_audio: np.ndarray, target: np.ndarray | None,
                sample_rate: int, *, apply_filter: bool = False,
                filter_percentile: float = 99.5) -> tuple[np.ndarray, PostInfo]:
    """Steps 1-3 on the decoded output ``[N]``; returns float32 ``[N]`` with peak <= 1."""
    info = PostInfo(rms_before=rms(output))
    audio, info.gain = match_level(np.asarray(output, np.float32), input_audio, target)
    if apply_filter:
        audio, info.notches = remove_frequency_outliers(audio, sample_rate, filter_percentile)
    audio, info.limiter_scale = soft_limit(audio)
    info.rms_after = rms(audio)
    return audio, info
