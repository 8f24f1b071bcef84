"""Short-time Fourier transforms and mel spectrograms in JAX, numerically equal to ``torch.stft``
and ``torchaudio.transforms.MelSpectrogram``.

Everything is a pure function of arrays, safe under ``jit``, ``grad`` and ``vmap``. Inputs of
any float dtype are computed in at least float32 (bf16 audio is upcast so FFTs, logs and
reductions stay in float32; float64 stays float64). Windows and filterbanks are NumPy constants
built once.

Framing never gathers: a gather's backward is a scatter-add, slow on GPUs. The padded signal is
cut into blocks of ``g = gcd(hop, win_length)`` samples and each frame is the concatenation of
``win_length / g`` strided slices of those blocks, whose backward is a padded add::

    padded signal   |b0|b1|b2|b3|b4|b5|...        (blocks of g samples, here g = hop)
    frame 0         |b0 b1 b2 b3|
    frame 1            |b1 b2 b3 b4|               slice j of every frame = blocks[j::hop/g]
    frame 2               |b2 b3 b4 b5|

(Only when hop and window are nearly coprime, more than 64 slices per frame, is a gather used.)
Only the window's support is framed: with ``win_length < n_fft`` the windowed frame is
zero-padded to ``n_fft`` on both sides (centred, like ``torch.stft``) before the FFT.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxaudio import filterbanks

__all__ = [
    "as_mono_batch",
    "check_float_audio",
    "compute_dtype",
    "safe_sqrt",
    "hann_window",
    "stft",
    "stft_frames",
    "magnitude",
    "power",
    "mel_filterbank",
    "mel_from_stft",
    "mel_spectrogram",
]

# Beyond this many slices per frame (hop and window nearly coprime) a gather compiles faster.
_MAX_SLICES = 64

_PAD_MODES = {"reflect": "reflect", "constant": "constant", "replicate": "edge", "circular": "wrap"}


def compute_dtype(x) -> jnp.dtype:
    """The dtype DSP runs in: float32, or float64 for float64 input (bf16/f16/ints upcast)."""
    dt = jnp.result_type(x)
    if not jnp.issubdtype(dt, jnp.floating):
        return jnp.dtype(jnp.float32)
    return jnp.promote_types(dt, jnp.float32)


def check_float_audio(x, name: str) -> None:
    """Refuse audio that is not floating point, naming the argument and its dtype.

    Integer PCM (``int16`` samples up to 32767) taken as it is would score losses thousands of
    times too large; the caller knows its full scale, so the conversion is theirs to make.
    """
    dt = jnp.result_type(x)
    if not jnp.issubdtype(dt, jnp.floating):
        hint = (f" (for PCM, divide by its full scale, e.g. x / {2 ** (8 * dt.itemsize - 1)})"
                if jnp.issubdtype(dt, jnp.integer) else "")
        raise TypeError(f"{name}: expected floating-point audio in [-1, 1], got dtype "
                        f"{dt.name}{hint}")


def as_mono_batch(x, name: str) -> jax.Array:
    """Audio ``[B, N]`` or ``[B, 1, N]`` -> ``[B, N]`` in the compute dtype.

    ``name`` is the argument named in the error for any other shape, for an empty batch or
    clip, and for audio that is not floating point (:func:`check_float_audio`).
    """
    x = jnp.asarray(x)
    check_float_audio(x, name)
    if x.ndim == 3:
        if x.shape[1] != 1:
            raise ValueError(f"{name}: expected mono audio [B, 1, N], got shape {x.shape}")
        x = x[:, 0]
    elif x.ndim != 2:
        raise ValueError(f"{name}: expected audio [B, N] or [B, 1, N], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one clip of at least one sample, got an "
                         f"empty batch of shape {x.shape}")
    return x.astype(compute_dtype(x))


def safe_sqrt(v: jax.Array) -> jax.Array:
    """``sqrt`` whose derivative at 0 is 0 (torch's ``norm`` convention), not inf/NaN.

    NaN stays NaN (a loss of a NaN prediction must not read as 0); negative values, which
    only rounding could give a sum of squares, read as 0.
    """
    pos = v > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, v, 1)), jnp.where(jnp.isnan(v), v, 0))


@functools.lru_cache(maxsize=None)
def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window of length ``n`` (``torch.hann_window(n)``), float64, read-only."""
    if n < 1:
        raise ValueError(f"hann_window: length must be >= 1, got {n}")
    w = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n) if n > 1 else np.ones(1)
    w.setflags(write=False)
    return w


def _frame(x: jax.Array, length: int, hop: int, n_frames: int) -> jax.Array:
    """``[..., L]`` -> ``[..., n_frames, length]`` with frame t = ``x[..., t*hop : t*hop+length]``."""
    g = math.gcd(length, hop)
    r, s = length // g, hop // g
    if r > _MAX_SLICES:
        idx = np.arange(n_frames)[:, None] * hop + np.arange(length)[None, :]
        return x[..., idx]
    n_blocks = (n_frames - 1) * s + r
    blocks = x[..., : n_blocks * g].reshape(*x.shape[:-1], n_blocks, g)
    last = (n_frames - 1) * s + 1
    parts = [
        jax.lax.slice_in_dim(blocks, j, j + last, stride=s, axis=blocks.ndim - 2) for j in range(r)
    ]
    frames = jnp.stack(parts, axis=-2)  # [..., T, r, g]
    return frames.reshape(*x.shape[:-1], n_frames, length)


def _check_sizes(n_fft: int, hop_length: int, win_length: int) -> None:
    if n_fft < 1 or hop_length < 1:
        raise ValueError(f"stft: n_fft and hop_length must be >= 1, got {n_fft}, {hop_length}")
    if not 1 <= win_length <= n_fft:
        raise ValueError(f"stft: win_length must be in [1, n_fft={n_fft}], got {win_length}")


def stft_frames(
    x: jax.Array,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    window: str = "hann",
    window_dtype: str = "float64",
) -> jax.Array:
    """:func:`stft` in frames-major layout: ``[..., N]`` -> complex ``[..., T, n_fft//2+1]``.

    The losses use this layout (the FFT's natural one) so no transpose is materialised.
    ``window`` and ``window_dtype`` name a periodic window of :func:`jaxaudio.filterbanks.window`
    (default: Hann, exact).
    """
    hop_length = n_fft // 4 if hop_length is None else int(hop_length)
    win_length = n_fft if win_length is None else int(win_length)
    _check_sizes(n_fft, hop_length, win_length)
    dtype = compute_dtype(x)
    x = jnp.asarray(x).astype(dtype)
    if center:
        if pad_mode not in _PAD_MODES:
            raise ValueError(f"stft: pad_mode must be one of {sorted(_PAD_MODES)}, got {pad_mode!r}")
        half = n_fft // 2
        if pad_mode == "reflect" and x.shape[-1] <= half:
            raise ValueError(
                f"stft: reflect padding needs more than n_fft//2 = {half} samples, got {x.shape[-1]}"
            )
        widths = [(0, 0)] * (x.ndim - 1) + [(half, half)]
        x = jnp.pad(x, widths, mode=_PAD_MODES[pad_mode])
    length = x.shape[-1]
    if length < n_fft:
        raise ValueError(f"stft: signal of {length} samples is shorter than n_fft = {n_fft}")
    n_frames = 1 + (length - n_fft) // hop_length
    left = (n_fft - win_length) // 2
    # Only the window's support is framed; the zeros around it are added after windowing.
    segment = x[..., left : left + (n_frames - 1) * hop_length + win_length]
    frames = _frame(segment, win_length, hop_length, n_frames)
    win = (hann_window(win_length) if (window, window_dtype) == ("hann", "float64")
           else filterbanks.window(window, win_length, window_dtype))
    frames = frames * jnp.asarray(win, dtype)
    if win_length < n_fft:
        widths = [(0, 0)] * (frames.ndim - 1) + [(left, n_fft - win_length - left)]
        frames = jnp.pad(frames, widths)
    return jnp.fft.rfft(frames, axis=-1)


def stft(
    x: jax.Array,
    n_fft: int,
    hop_length: int | None = None,
    win_length: int | None = None,
    center: bool = True,
    pad_mode: str = "reflect",
    window: str = "hann",
) -> jax.Array:
    """``torch.stft`` with a periodic window (Hann by default), onesided, not normalised.

    Args:
        x: audio ``[..., N]``.
        n_fft: FFT size; hop_length defaults to ``n_fft // 4``, win_length to ``n_fft``.
        center: pad ``n_fft // 2`` samples on both sides with ``pad_mode`` (``"reflect"``,
            ``"constant"``, ``"replicate"`` or ``"circular"``).
        window: a periodic window of :func:`jaxaudio.filterbanks.window` (``"hann"``,
            ``"hamming"``, ``"blackman"``, ``"bartlett"``, ``"kaiser"``), centred in ``n_fft``.

    Returns:
        complex ``[..., n_fft//2+1, T]`` with ``T = 1 + N // hop_length`` when centred.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import dsp
        >>> dsp.stft(jnp.zeros((2, 4800)), 512, 128).shape  # [B, F, T]
        (2, 257, 38)
    """
    z = stft_frames(x, n_fft, hop_length, win_length, center, pad_mode, window)
    return jnp.swapaxes(z, -1, -2)


@jax.custom_jvp
def magnitude(z: jax.Array) -> jax.Array:
    """``|z|`` (complex or real) whose derivative at ``z = 0`` is 0, as torch defines it.

    ``jnp.abs`` gives NaN there for complex ``z`` and 1 for real ``z``; torch gives 0 for both,
    so an L1 term between identical signals has a zero gradient.
    """
    return jnp.abs(z)


@magnitude.defjvp
def _magnitude_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    mag = jnp.abs(z)
    if not jnp.iscomplexobj(z):
        return mag, jnp.sign(z) * dz
    nonzero = mag > 0
    safe = jnp.where(nonzero, mag, 1)
    dmag = (jnp.real(z) * jnp.real(dz) + jnp.imag(z) * jnp.imag(dz)) / safe
    return mag, jnp.where(nonzero, dmag, 0)


def power(z: jax.Array) -> jax.Array:
    """``|z|**2`` as ``re**2 + im**2``: the same values and gradients as torch's
    ``z.abs().pow(2)``, without a square root."""
    return jnp.real(z) ** 2 + jnp.imag(z) ** 2


@functools.lru_cache(maxsize=None)
def mel_filterbank(
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Triangular HTK mel filterbank without normalisation, ``[n_fft//2+1, n_mels]`` float64.

    librosa's ``filters.mel(htk=True, norm=None)`` (built in NumPy by
    :func:`jaxaudio.filterbanks.mel_filterbank`, no librosa at run time), which equals torchaudio's
    ``melscale_fbanks(..., norm=None, mel_scale="htk")`` (MelSpectrogram's default). ``fmax``
    None means ``sample_rate / 2``. Read-only; built once per configuration.
    """
    nyquist = float(sample_rate) / 2.0
    fmax = nyquist if fmax is None else float(fmax)
    if int(n_mels) < 1:
        raise ValueError(f"mel_filterbank: n_mels must be >= 1, got {n_mels}")
    if int(n_fft) < 2:
        raise ValueError(f"mel_filterbank: n_fft must be >= 2, got {n_fft}")
    if not 0.0 <= float(fmin) < fmax:
        raise ValueError(f"mel_filterbank: need 0 <= fmin < fmax, got fmin={fmin}, fmax={fmax}")
    if fmax > nyquist:
        raise ValueError(f"mel_filterbank: fmax={fmax:g} Hz is above half the sample rate "
                         f"({nyquist:g} Hz at sample_rate={sample_rate:g}); its top bands "
                         f"would be empty")
    fb = filterbanks.mel_filterbank(float(sample_rate), int(n_fft), int(n_mels), float(fmin),
                                    fmax, htk=True, norm=None, dtype="float64")
    fb = np.ascontiguousarray(fb.T)
    fb.setflags(write=False)
    return fb


def mel_from_stft(
    z: jax.Array,
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> jax.Array:
    """Mel power spectrogram from a frames-major STFT: ``[..., T, F]`` -> ``[..., T, n_mels]``."""
    fb = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
    p = power(z)
    if p.shape[-1] != fb.shape[0]:
        raise ValueError(
            f"mel_from_stft: STFT has {p.shape[-1]} bins, n_fft={n_fft} needs {fb.shape[0]}"
        )
    # HIGHEST: GPUs would otherwise run float32 matmuls in TF32 (about 1e-3 relative error).
    return jnp.matmul(p, jnp.asarray(fb, p.dtype), precision=jax.lax.Precision.HIGHEST)


def mel_spectrogram(
    x: jax.Array,
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    hop_length: int | None = None,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> jax.Array:
    """``torchaudio.transforms.MelSpectrogram``: ``[..., N]`` -> ``[..., n_mels, T]``.

    Its defaults: ``win_length = n_fft``, ``hop_length = n_fft // 2`` when None, periodic Hann,
    centred with reflect padding, power 2, HTK mel scale without normalisation, ``fmax`` None
    meaning ``sample_rate / 2``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import dsp
        >>> dsp.mel_spectrogram(jnp.zeros((2, 4800)), 24000, 1024, 80, 256).shape
        (2, 80, 19)
    """
    hop_length = n_fft // 2 if hop_length is None else hop_length
    z = stft_frames(x, n_fft, hop_length, n_fft)
    return jnp.swapaxes(mel_from_stft(z, sample_rate, n_fft, n_mels, fmin, fmax), -1, -2)
