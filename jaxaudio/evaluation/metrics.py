"""Musical-quality metrics of one clip: pure NumPy/SciPy functions of 1-D float arrays.

Every function takes mono signals ``[N]`` at sample rate ``sr`` and returns a finite Python
float, silence included (each docstring says what silence gives). Signals of different lengths
are compared over their common start. Window and FFT sizes are given at 24 kHz and scale with
``sr`` (to the nearest power of two), so a metric means the same at other rates.

One line each (they are repeated in the README):

- ``log_spectral_distance``: mean |log magnitude difference| over STFTs of 512/1024/2048
  points, on RMS-normalised signals; 0 = the same spectrum, about 1-3 for unrelated music.
- ``comb_contrast_db``: how far the spectrum's peaks at multiples of the codec frame rate
  stand above the level between them (dB); about 0 for music without a frame-rate comb.
- ``high_frequency_share``: percent of the energy above ``cutoff`` (6 kHz).
- ``onset_correlation``: Pearson correlation of onset-strength envelopes (log-mel spectral
  flux, hop 256 at 24 kHz); 1 = the same rhythm. ``onset_envelope(..., band=(lo, hi))`` and
  ``band_energy_envelope`` restrict the same log-mel spectrogram to a band (``bands``).
- ``chroma_similarity``: frame-wise cosine similarity of 12-bin chroma (60 Hz - 5 kHz,
  A4 = 440 Hz), averaged over the reference's sounding frames; 1 = the same pitch classes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import signal

# The level floor of the log-spectral distance, relative to RMS-normalised signals whose STFT
# is scaled so unit-RMS white noise has unit expected power per bin: -80 dB below that.
LSD_EPS = 1e-4
LSD_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (FFT size, hop) at 24 kHz
COMB_MAX_HZ = 11000.0
COMB_RESOLUTION_HZ = 3.0  # Welch bin width, a few Hz: EnCodec's 75 Hz comb has 25 bins per tooth
COMB_TOOTH_BINS = 2  # a tooth's peak is the maximum within +-2 bins of k * frame_rate
COMB_GAP = (0.3, 0.7)  # the level between teeth: this part of the way to the next harmonic
ONSET_FFT, ONSET_HOP, ONSET_MELS, ONSET_TOP_DB = 1024, 256, 64, 80.0
CHROMA_FFT, CHROMA_HOP = 8192, 2048  # 2.9 Hz bins at 24 kHz: low notes land in their class
CHROMA_BAND = (60.0, 5000.0)
CHROMA_SOUNDING_DB = 60.0  # reference frames within 60 dB of its loudest count
_REF_RATE = 24000


def _scaled(n: int, sr: int) -> int:
    """``n`` samples at 24 kHz as a power of two at ``sr``."""
    return int(n * 2 ** round(np.log2(sr / _REF_RATE)))


def _mono(x, name: str = "x") -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D signal, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name}: contains NaN or infinite samples")
    return x


def _common(*xs) -> list[np.ndarray]:
    n = min(x.shape[0] for x in xs)
    return [x[:n] for x in xs]


def _rms_normalised(x: np.ndarray) -> np.ndarray:
    r = np.sqrt(np.mean(x**2))
    return x / r if r > 0 else x


def stft_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| ``[frames, n_fft // 2 + 1]``: centred frames (zero-padded ends), Hann window
    scaled to unit energy, so white noise of unit variance has unit expected power per bin."""
    x = np.pad(np.asarray(x, np.float64), (n_fft // 2, n_fft // 2))
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.abs(np.fft.rfft(frames * _unit_hann(n_fft), axis=-1))


@lru_cache(maxsize=16)
def _unit_hann(n: int) -> np.ndarray:
    w = signal.get_window("hann", n)
    return w / np.sqrt(np.sum(w**2))


def log_spectral_distance(x, ref, sr: int) -> float:
    """Multi-resolution log-spectral distance, in nats of magnitude (natural log).

    Both signals are normalised to unit RMS (so only the spectral shape counts, not the level);
    for each (FFT, hop) in 512/128, 1024/256, 2048/512 at 24 kHz (Hann), the mean over
    frames and bins of ``|log(|X| + eps) - log(|R| + eps)|`` with ``eps = 1e-4`` (-80 dB
    below unit-RMS white noise per bin); the result is the mean over the three resolutions.
    Silence against silence gives 0; silence against a signal gives a large finite value.
    """
    x, ref = _common(_mono(x, "x"), _mono(ref, "ref"))
    x, ref = _rms_normalised(x), _rms_normalised(ref)
    out = []
    for n_fft, hop in LSD_RESOLUTIONS:
        n_fft, hop = _scaled(n_fft, sr), _scaled(hop, sr)
        a, b = stft_magnitude(x, n_fft, hop), stft_magnitude(ref, n_fft, hop)
        out.append(np.mean(np.abs(np.log(a + LSD_EPS) - np.log(b + LSD_EPS))))
    return float(np.mean(out))


def distance_ratio(output, input, target, song, sr: int, *, delta: float = 1e-3) -> float:
    """``D(output, song) / min(D(input, song), D(target, song))`` with D the log-spectral
    distance: below 1 means the output is nearer the song than either part alone.

    ``delta`` is added to both distances so the ratio stays finite when a part equals the song
    (a copy of the song then gives ``delta / (D + delta)``, about 0; all silent gives 1).
    """
    d_out = log_spectral_distance(output, song, sr)
    d_part = min(log_spectral_distance(input, song, sr), log_spectral_distance(target, song, sr))
    return float((d_out + delta) / (d_part + delta))


def welch_power(x, sr: int, resolution_hz: float = COMB_RESOLUTION_HZ
                ) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and Welch power spectrum (Hann, 50 % overlap) with bins of at most
    ``resolution_hz``; clips shorter than one segment are zero-padded to it."""
    x = _mono(x)
    nper = int(2 ** np.ceil(np.log2(sr / resolution_hz)))
    if x.shape[0] < nper:
        x = np.pad(x, (0, nper - x.shape[0]))
    return signal.welch(x, fs=sr, window="hann", nperseg=nper, noverlap=nper // 2,
                        detrend=False, scaling="spectrum")


def comb_contrast_db(x, sr: int, frame_rate: float) -> float:
    """Mean height (dB) of the teeth of a comb at ``k * frame_rate`` over the level between them.

    From a Welch power spectrum with bins of at most 3 Hz, ``M`` = the maximum over +-2 bins
    around each bin. Tooth ``k`` (every multiple of ``frame_rate`` up to 11 kHz and below
    Nyquist) reads ``M`` at ``k * frame_rate``; its floor is the median of ``M`` from 0.3 to 0.7
    of the way to the next tooth. The result is the mean over teeth of ``10 log10(tooth /
    floor)``. Taking the floor from the same 5-bin maximum makes a flat spectrum (white noise)
    read about 0 dB instead of the few dB a maximum-against-median comparison would give.
    A pure comb at the frame rate reads tens of dB; silence reads 0.
    """
    x = _mono(x)
    if not frame_rate > 0:
        raise ValueError(f"frame_rate {frame_rate}: expected a positive rate in Hz")
    freqs, power = welch_power(x, sr)
    df = freqs[1] - freqs[0]
    if frame_rate * (COMB_GAP[1] - COMB_GAP[0]) < 3 * df:
        raise ValueError(f"frame_rate {frame_rate} Hz: too dense a comb for {df:.2f} Hz bins")
    m = np.maximum.reduce([np.roll(power, s) for s in range(-COMB_TOOTH_BINS,
                                                            COMB_TOOTH_BINS + 1)])
    eps = 1e-10 * float(np.mean(power)) + 1e-30  # -100 dB re the mean level; silence reads 0
    top = min(COMB_MAX_HZ, sr / 2 - frame_rate)
    contrasts = []
    for k in range(1, int(top // frame_rate) + 1):
        f = k * frame_rate
        tooth = m[int(round(f / df))]
        lo, hi = (int(np.ceil((f + g * frame_rate) / df)) for g in COMB_GAP)
        floor = float(np.median(m[lo:hi + 1]))
        contrasts.append(10 * np.log10((tooth + eps) / (floor + eps)))
    if not contrasts:
        raise ValueError(f"frame_rate {frame_rate} Hz: no harmonic below "
                         f"{min(COMB_MAX_HZ, sr / 2):g} Hz")
    return float(np.mean(contrasts))


def high_frequency_share(x, sr: int, cutoff: float = 6000.0) -> float:
    """Percent (0-100) of the signal's energy above ``cutoff`` Hz (one FFT of the whole clip).
    Silence gives 0."""
    x = _mono(x)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.shape[0], 1.0 / sr)
    total = float(np.sum(power))
    return float(100.0 * np.sum(power[freqs > cutoff]) / total) if total > 0 else 0.0


def _mel_edges(sr: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    """``n_mels + 2`` filter edges (Hz), evenly spaced on the HTK mel scale."""
    mel = lambda f: 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)  # noqa: E731
    return 700.0 * (10 ** (np.linspace(mel(fmin), mel(fmax or sr / 2), n_mels + 2) / 2595.0) - 1)


@lru_cache(maxsize=8)
def mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> np.ndarray:
    """Triangular filters ``[n_mels, n_fft // 2 + 1]`` on the HTK mel scale (cached: do not
    modify the result)."""
    edges = _mel_edges(sr, n_mels, fmin, fmax)
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def mel_centres(sr: int, n_mels: int, fmin: float = 0.0, fmax: float | None = None
                ) -> np.ndarray:
    """Centre frequencies (Hz) ``[n_mels]`` of :func:`mel_filterbank`'s filters."""
    return _mel_edges(sr, n_mels, fmin, fmax)[1:-1]


def onset_mel_power(x, sr: int) -> np.ndarray:
    """Mel power spectrogram ``[64, frames]`` the onset measures read: 64 HTK mel filters over
    ``0 .. sr / 2`` of the STFT power, FFT 1024 and hop 256 at 24 kHz (centred frames)."""
    x = _mono(x)
    n_fft, hop = _scaled(ONSET_FFT, sr), _scaled(ONSET_HOP, sr)
    return mel_filterbank(sr, n_fft, ONSET_MELS) @ (stft_magnitude(x, n_fft, hop) ** 2).T


def band_channels(sr: int, band: tuple[float, float] | None) -> np.ndarray:
    """Boolean ``[64]``: the onset mel filters whose centre lies in ``band = (lo, hi)`` Hz,
    ``lo <= centre < hi`` (every filter when ``band`` is None)."""
    centres = mel_centres(sr, ONSET_MELS)
    if band is None:
        return np.ones(centres.shape, bool)
    lo, hi = band
    return (centres >= lo) & (centres < hi)


def onset_envelope(x, sr: int, *, band: tuple[float, float] | None = None,
                   mel_power: np.ndarray | None = None) -> np.ndarray:
    """Onset strength ``[frames]``: mean over the 64 mel bands (or those with centres in
    ``band = (lo, hi)`` Hz) of the half-wave-rectified frame-to-frame rise of the log-mel power
    (dB re the clip's maximum over all bands, floored 80 dB below), FFT 1024 and hop 256 at
    24 kHz. The full-band envelope is the band-count-weighted mean of those of bands that
    partition the spectrum. Silence, and a band with no mel filter, give zeros.

    ``mel_power``: :func:`onset_mel_power` of ``x`` if already computed (``x`` is then unread).
    """
    mel = onset_mel_power(x, sr) if mel_power is None else mel_power
    chosen = band_channels(sr, band)
    peak = float(mel.max())
    if peak <= 0 or not chosen.any():
        return np.zeros(mel.shape[1])
    db = 10 * np.log10(np.maximum(mel[chosen], peak * 10 ** (-ONSET_TOP_DB / 10)) / peak)
    flux = np.maximum(0.0, np.diff(db, axis=1)).mean(axis=0)
    return np.concatenate([[0.0], flux])


def band_energy_envelope(x, sr: int, *, band: tuple[float, float] | None = None,
                         mel_power: np.ndarray | None = None) -> np.ndarray:
    """Band energy ``[frames]`` in dB: the summed power of the onset mel filters with centres in
    ``band`` (as :func:`onset_envelope` chooses them), re the clip's loudest frame over all
    bands, floored 80 dB below it. Silence, and a band with no mel filter, give zeros."""
    mel = onset_mel_power(x, sr) if mel_power is None else mel_power
    chosen = band_channels(sr, band)
    peak = float(mel.sum(axis=0).max())
    if peak <= 0 or not chosen.any():
        return np.zeros(mel.shape[1])
    energy = mel[chosen].sum(axis=0)
    return 10 * np.log10(np.maximum(energy, peak * 10 ** (-ONSET_TOP_DB / 10)) / peak)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; 0 when either side is constant (no variation to follow)."""
    a, b = a - a.mean(), b - b.mean()
    den = float(np.sqrt(np.sum(a * a) * np.sum(b * b)))
    return float(np.sum(a * b) / den) if den > 1e-30 else 0.0


def onset_correlation(x, ref, sr: int) -> float:
    """Pearson correlation (-1..1) of the onset envelopes of ``x`` and ``ref``: 1 = the same
    rhythm. A flat envelope (silence, a steady tone) gives 0."""
    x, ref = _common(_mono(x, "x"), _mono(ref, "ref"))
    return pearson(onset_envelope(x, sr), onset_envelope(ref, sr))


def chromagram(x, sr: int) -> np.ndarray:
    """Power chroma ``[frames, 12]`` (0 = C): STFT power (FFT 8192, hop 2048 at 24 kHz) of the
    bins from 60 Hz to 5 kHz summed into the nearest pitch class, A4 = 440 Hz."""
    x = _mono(x)
    n_fft = _scaled(CHROMA_FFT, sr)
    power = stft_magnitude(x, n_fft, _scaled(CHROMA_HOP, sr)) ** 2
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    band = (freqs >= CHROMA_BAND[0]) & (freqs <= CHROMA_BAND[1])
    pitch_class = np.round(12 * np.log2(freqs[band] / 440.0) + 69).astype(int) % 12
    onehot = np.eye(12)[pitch_class]  # [bins, 12]
    return power[:, band] @ onehot


def chroma_similarity(x, ref, sr: int) -> float:
    """Frame-wise cosine similarity (0..1) of the chroma of ``x`` and ``ref``, averaged over
    the frames where ``ref`` sounds (within 60 dB of its loudest frame).

    Frame-wise rather than of the time-averaged chroma, so a chord played at the wrong time
    counts against it. A silent ``x`` frame gives 0 there; a silent ``ref`` gives 0 (no
    harmony to keep).
    """
    x, ref = _common(_mono(x, "x"), _mono(ref, "ref"))
    cx, cr = chromagram(x, sr), chromagram(ref, sr)
    energy = cr.sum(axis=1)
    if energy.max() <= 0:
        return 0.0
    sounding = energy >= energy.max() * 10 ** (-CHROMA_SOUNDING_DB / 10)
    nx, nr = np.linalg.norm(cx, axis=1), np.linalg.norm(cr, axis=1)
    cos = np.sum(cx * cr, axis=1) / np.maximum(nx * nr, 1e-30)
    cos = np.where((nx > 0) & (nr > 0), cos, 0.0)
    return float(np.mean(cos[sounding]))
