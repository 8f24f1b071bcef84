"""Windows, mel and chroma filterbanks and the A-weighting FIR, as NumPy constants.

Each is built once per (hashable) configuration with :func:`functools.cache` and returned
read-only. No librosa at run time: the mel and chroma builders repeat librosa's
``filters.mel`` and ``filters.chroma`` step by step (the same operations in the same dtype, so
they agree with librosa to the last bit in float64 and in float32; ``tests/test_filterbanks.py``
checks it). The A-weighting taps are auraloss's ``FIRFilter("aw")`` design (scipy.signal).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["WINDOWS", "window", "mel_filterbank", "chroma_filterbank", "a_weighting_taps"]


def _cosine_sum(n: int, coefs: tuple[float, ...]) -> np.ndarray:
    """Periodic generalised cosine window ``sum_k (-1)**k a_k cos(2 pi k m / n)``."""
    m = np.arange(n) / n
    return sum((-1) ** k * a * np.cos(2.0 * np.pi * k * m) for k, a in enumerate(coefs))


WINDOWS = {  # periodic windows of length n, as torch's ``*_window(n)`` defaults
    "hann": lambda n: _cosine_sum(n, (0.5, 0.5)),
    "hamming": lambda n: _cosine_sum(n, (0.54, 0.46)),
    "blackman": lambda n: _cosine_sum(n, (0.42, 0.5, 0.08)),
    "bartlett": lambda n: 1.0 - np.abs(2.0 * np.arange(n) / n - 1.0),
    "kaiser": lambda n: np.kaiser(n + 1, 12.0)[:-1],  # torch's default beta = 12
}


def _torch_float32(key: str, n: int) -> np.ndarray:
    """``torch.<key>_window(n)`` as torch builds it in float32 (its default dtype): the
    symmetric window of ``n + 1`` points by its float32 operations, the last point dropped.
    The cosines are correctly rounded; torch's own float32 ``cos`` may differ in the last bit."""
    f32, m = np.float32, n + 1
    ar = np.arange(m, dtype=f32)
    cos = lambda a: np.cos(a.astype(np.float64)).astype(f32)  # noqa: E731
    if key in ("hann", "hamming"):
        alpha, beta = (0.5, 0.5) if key == "hann" else (0.54, 0.46)
        c = cos(ar * f32(np.pi * 2.0 / (m - 1)))
        w = c * f32(-beta) + f32(alpha)
    elif key == "blackman":
        a = ar * f32(np.pi / (m - 1))
        w = cos(a * f32(4)) * f32(0.08) - cos(a * f32(2)) * f32(0.5) + f32(0.42)
    elif key == "bartlett":
        w = ar * f32(2.0 / (m - 1))
        half = ((m - 1) >> 1) + 1
        w[half:] = w[half:] * f32(-1) + f32(2)
    else:
        w = np.kaiser(m, 12.0).astype(f32)
    return np.asarray(w, f32)[:n].astype(np.float64)


@functools.cache
def window(name: str, n: int, dtype: str = "float64") -> np.ndarray:
    """Periodic window ``[n]`` (as float64 values), read-only: ``torch.<name>_window(n)``.

    Args:
        name: ``"hann"``, ``"hamming"``, ``"blackman"``, ``"bartlett"`` or ``"kaiser"``
            (beta 12); torch's and auraloss's spellings (``"hann_window"``) are accepted too.
        n: length in samples (``>= 1``; length 1 is ``[1.0]``, as torch gives).
        dtype: ``"float64"`` (the exact window) or ``"float32"``: the window as torch builds it
            in its default float32, which auraloss uses even on float64 audio.

    Examples:
        >>> from jaxaudio import filterbanks
        >>> filterbanks.window("hann", 4).round(6).tolist()  # periodic: no final 0
        [0.0, 0.5, 1.0, 0.5]
    """
    key = name[: -len("_window")] if name.endswith("_window") else name
    if key not in WINDOWS:
        raise ValueError(f"window: unknown window {name!r}; expected one of {sorted(WINDOWS)} "
                         f"(optionally with the suffix '_window')")
    if int(n) < 1:
        raise ValueError(f"window: length must be >= 1, got {n}")
    if dtype not in ("float64", "float32"):
        raise ValueError(f"window: dtype must be 'float64' or 'float32', got {dtype!r}")
    if int(n) == 1:
        w = np.ones(1)
    elif dtype == "float32":
        w = _torch_float32(key, int(n))
    else:
        w = np.asarray(WINDOWS[key](int(n)), np.float64)
    w.setflags(write=False)
    return w


def _hz_to_mel(f: np.ndarray, htk: bool) -> np.ndarray:
    f = np.asarray(f, np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    lin = f / f_sp
    log = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def _mel_to_hz(m: np.ndarray, htk: bool) -> np.ndarray:
    m = np.asarray(m, np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.cache
def mel_filterbank(sample_rate: float, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None, *, htk: bool = False, norm: str | None = "slaney",
                   dtype: str = "float64") -> np.ndarray:
    """Triangular mel filterbank ``[n_mels, n_fft//2+1]``, librosa's ``filters.mel``.

    Args:
        sample_rate: Hz.
        n_fft: FFT size.
        n_mels: number of bands.
        fmin, fmax: Hz; ``fmax`` None means ``sample_rate / 2``.
        htk: HTK mel scale (True) or Slaney's (False, librosa's default).
        norm: ``"slaney"`` (area normalisation, librosa's default) or None.
        dtype: ``"float64"`` or ``"float32"`` (librosa's default, which auraloss uses): the
            weights are stored in it as librosa does, so float32 rounding matches librosa's.

    Returns the read-only filterbank (rows are bands, columns FFT bins).

    Examples:
        >>> from jaxaudio import filterbanks
        >>> filterbanks.mel_filterbank(24000, 1024, 80).shape  # [n_mels, n_fft//2+1]
        (80, 513)
    """
    if norm not in ("slaney", None):
        raise ValueError(f"mel_filterbank: norm must be 'slaney' or None, got {norm!r}")
    fmax = float(sample_rate) / 2 if fmax is None else float(fmax)
    fftfreqs = np.arange(0, 1 + int(n_fft) // 2, dtype=np.float64) * (float(sample_rate) / n_fft)
    mels = np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), int(n_mels) + 2)
    mel_f = _mel_to_hz(mels, htk)
    fdiff = np.diff(mel_f)
    ramps = np.subtract.outer(mel_f, fftfreqs)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)).astype(dtype)
    if norm == "slaney":
        weights *= (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]
    weights.setflags(write=False)
    return weights


@functools.cache
def chroma_filterbank(sample_rate: float, n_fft: int, n_chroma: int = 12, *,
                      dtype: str = "float32") -> np.ndarray:
    """Chroma filterbank ``[n_chroma, n_fft//2+1]``: librosa's ``filters.chroma`` with its
    defaults (tuning 0, ``ctroct=5``, ``octwidth=2``, L2-normalised columns, starting at C),
    stored in ``dtype`` (librosa's default float32, which auraloss uses). Read-only."""
    n_fft, n_chroma = int(n_fft), int(n_chroma)
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    frqbins = n_chroma * np.log2(frequencies / (440.0 / 16))
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    d = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    n_chroma2 = np.round(float(n_chroma) / 2)
    d = np.remainder(d + n_chroma2 + 10 * n_chroma, n_chroma) - n_chroma2
    wts = np.exp(-0.5 * (2 * d / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    length = np.sqrt(np.sum(np.abs(wts) ** 2, axis=0, keepdims=True))
    length[length < np.finfo(wts.dtype).tiny] = 1.0
    wts = wts / length
    wts *= np.exp(-0.5 * (((frqbins / n_chroma - 5.0) / 2.0) ** 2))[np.newaxis, :]
    wts = np.roll(wts, -3 * (n_chroma // 12), axis=0)
    out = np.ascontiguousarray(wts[:, : int(1 + n_fft / 2)], dtype=dtype)
    out.setflags(write=False)
    return out


@functools.cache
def a_weighting_taps(sample_rate: float, ntaps: int = 101) -> np.ndarray:
    """auraloss's A-weighting FIR ``[ntaps]``: the IEC/CD 1672 analog A-weighting filter,
    made digital by the bilinear transform, and its response at 512 frequencies fitted by a
    least-squares FIR of ``ntaps`` (odd) taps; rounded to float32 as auraloss stores it."""
    import scipy.signal  # lazy: only the perceptual weighting needs it

    if int(ntaps) % 2 == 0:
        raise ValueError(f"a_weighting_taps: ntaps must be odd, got {ntaps}")
    f1, f2, f3, f4, a1000 = 20.598997, 107.65265, 737.86223, 12194.217, 1.9997
    nums = [(2 * np.pi * f4) ** 2 * (10 ** (a1000 / 20)), 0, 0, 0, 0]
    dens = np.polymul([1, 4 * np.pi * f4, (2 * np.pi * f4) ** 2],
                      [1, 4 * np.pi * f1, (2 * np.pi * f1) ** 2])
    dens = np.polymul(np.polymul(dens, [1, 2 * np.pi * f3]), [1, 2 * np.pi * f2])
    b, a = scipy.signal.bilinear(nums, dens, fs=sample_rate)
    w_iir, h_iir = scipy.signal.freqz(b, a, worN=512, fs=sample_rate)
    taps = scipy.signal.firls(int(ntaps), w_iir, abs(h_iir), fs=sample_rate)
    taps = taps.astype(np.float32).astype(np.float64)
    taps.setflags(write=False)
    return taps
