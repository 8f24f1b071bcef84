"""STFT losses of auraloss 0.4.0 (``auraloss/freq.py``, ``perceptual.py``) as pure JAX functions.

:func:`multi_resolution_stft_loss` is auraloss's ``STFTLoss`` (one resolution: pass ints) and
``MultiResolutionSTFTLoss`` (tuples: the mean over resolutions); :func:`mel_stft_loss`,
:func:`chroma_stft_loss` and :func:`sum_and_difference_stft_loss` are its ``MelSTFTLoss``,
``ChromaSTFTLoss`` and ``SumAndDifferenceSTFTLoss``. Per resolution, with magnitudes
``X = sqrt(max(|STFT(p)|**2, eps))`` and ``Y`` likewise (optionally through a mel or chroma
filterbank)::

    loss = w_sc * ||Y - X||_F / ||Y||_F            (spectral convergence, whole batch)
         + w_log_mag * R(d(log X, log Y))          (d: |.| for "L1", (.)**2 for "L2")
         + w_lin_mag * R(d(X, Y))
         + w_phs * mean((angle STFT(p) - angle STFT(t))**2)

``R`` is the ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``: per element ``[B, (C,) F, T]``,
the scalar terms broadcast, as auraloss adds them). A term whose weight is 0 is not computed.
STFTs are ``torch.stft``'s (centred, reflect padding, periodic window of ``win_lengths`` centred
in ``fft_sizes``). Audio is ``[B, N]`` or ``[B, C, N]`` (channels are separate signals, like
auraloss's ``view(-1, N)``); ``valid`` (``[B]`` bool) leaves padded rows out of every term.

Every option is static (a hashable Python value: ints or tuples of ints for the resolutions,
strings, floats, bools): close over them under ``jax.jit``, e.g.
``jax.jit(functools.partial(multi_resolution_stft_loss, fft_sizes=512, hop_sizes=128,
win_lengths=512))``. Windows, filterbanks and the A-weighting FIR are NumPy constants built
once; like auraloss's, the mel and chroma filterbanks are librosa's float32 ones and the FIR
taps are rounded to float32.

On silence and identical signals auraloss is safe by construction, and so is this: the
magnitude is clamped at ``eps`` before its square root (zero gradient below it, so a silent
signal's magnitude is ``sqrt(eps)`` with a zero gradient and its log is finite), torch's norm
and ``abs`` have derivative 0 at 0 (here ``safe_sqrt`` and :func:`jaxaudio.dsp.magnitude`),
and torch's ``angle`` has derivative 0 at ``z = 0`` (here :func:`safe_angle`).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxaudio import filterbanks
from jaxaudio.dsp import magnitude, power, safe_sqrt, stft_frames
from jaxaudio.losses._common import (check_pair, check_reduction, is_off, keep_rows, reduce,
                                     zero_rows)

__all__ = [
    "STFTLossComponents",
    "multi_resolution_stft_loss",
    "mel_stft_loss",
    "chroma_stft_loss",
    "sum_and_difference_stft_loss",
    "perceptual_weighting_filter",
    "safe_angle",
]

AURALOSS_FFT_SIZES = (1024, 2048, 512)
AURALOSS_HOP_SIZES = (120, 240, 50)
AURALOSS_WIN_LENGTHS = (600, 1200, 240)


class STFTLossComponents(NamedTuple):
    """The loss and its unweighted terms, one entry per resolution (0 where a weight is 0):
    auraloss's ``output="full"``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> c = losses.multi_resolution_stft_loss(0.5 * target, target, fft_sizes=(256, 512),
        ...                                       hop_sizes=(64, 128), win_lengths=(256, 512),
        ...                                       return_components=True)
        >>> [round(float(v), 3) for v in c.sc_mag]  # spectral convergence per resolution
        [0.5, 0.5]
        >>> [round(float(v), 3) for v in c.log_mag]
        [0.298, 0.293]
        >>> round(float(c.loss), 3)
        0.795
    """

    loss: jax.Array
    sc_mag: tuple
    log_mag: tuple
    lin_mag: tuple
    phs: tuple


@jax.custom_jvp
def safe_angle(z: jax.Array) -> jax.Array:
    """``angle(z)`` whose derivative at ``z = 0`` is 0, as torch defines it (``arctan2``'s is
    NaN there)."""
    return jnp.angle(z)


@safe_angle.defjvp
def _safe_angle_jvp(primals, tangents):
    (z,), (dz,) = primals, tangents
    p = power(z)
    nonzero = p > 0
    d = (jnp.real(z) * jnp.imag(dz) - jnp.imag(z) * jnp.real(dz)) / jnp.where(nonzero, p, 1)
    return jnp.angle(z), jnp.where(nonzero, d, 0)


def _resolutions(fft_sizes, hop_sizes, win_lengths) -> tuple[tuple[int, int, int], ...]:
    sizes = [tuple(int(v) for v in np.atleast_1d(s)) for s in (fft_sizes, hop_sizes, win_lengths)]
    if not sizes[0] or not len(sizes[0]) == len(sizes[1]) == len(sizes[2]):
        raise ValueError("multi_resolution_stft_loss: fft_sizes, hop_sizes and win_lengths must "
                         f"be ints or non-empty tuples of equal length, got {tuple(sizes)}")
    return tuple(zip(*sizes))


def perceptual_weighting_filter(x: jax.Array, sample_rate: float) -> jax.Array:
    """auraloss's A-weighting pre-filter: ``[..., N] -> [..., N]``, the 101-tap FIR of
    :func:`jaxaudio.filterbanks.a_weighting_taps` applied as ``torch.nn.functional.conv1d``
    (cross-correlation, zero padding of 50 samples on both sides).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> losses.perceptual_weighting_filter(target, sample_rate=24000).shape
        (2, 4800)
    """
    taps = filterbanks.a_weighting_taps(float(sample_rate))
    k = taps.shape[0]
    flat = x.reshape(-1, 1, x.shape[-1])
    y = jax.lax.conv_general_dilated(
        flat, jnp.asarray(taps, x.dtype)[None, None], (1,), [(k // 2, k // 2)],
        dimension_numbers=("NCH", "OIH", "NCH"), precision=jax.lax.Precision.HIGHEST)
    return y.reshape(x.shape)


def _filterbank(scale, n_bins, sample_rate, n_fft) -> np.ndarray | None:
    """``[n_bins, n_fft//2+1]`` mel (librosa's default Slaney) or chroma filterbank, or None."""
    if scale is None:
        return None
    if scale not in ("mel", "chroma"):
        raise ValueError(f"multi_resolution_stft_loss: scale must be None, 'mel' or 'chroma', "
                         f"got {scale!r}")
    if sample_rate is None or n_bins is None:
        raise ValueError(f"multi_resolution_stft_loss: scale={scale!r} needs sample_rate and "
                         f"n_bins")
    if int(n_bins) > n_fft:
        raise ValueError(f"multi_resolution_stft_loss: n_bins={n_bins} exceeds the FFT size "
                         f"{n_fft}")
    if scale == "mel":
        return filterbanks.mel_filterbank(float(sample_rate), n_fft, int(n_bins), dtype="float32")
    return filterbanks.chroma_filterbank(float(sample_rate), n_fft, int(n_bins))


def _spectrum(x, res, window, eps, fb):
    """``(|STFT| clamped at sqrt(eps) [..., T, F'], STFT [..., T, F])`` of ``x [..., N]``."""
    z = stft_frames(x, res[0], res[1], res[2], window=window, window_dtype="float32")
    p = power(z)
    mag = jnp.sqrt(jnp.where(p >= eps, p, jnp.asarray(eps, p.dtype)))  # torch.clamp(min=eps)
    if fb is not None:
        mag = jnp.matmul(mag, jnp.asarray(fb.T, mag.dtype), precision=jax.lax.Precision.HIGHEST)
    return mag, z


def _distance(a, b, kind: str) -> jax.Array:
    if kind == "L1":
        return magnitude(a - b)  # torch's L1Loss: derivative 0 where a == b
    if kind == "L2":
        return (a - b) ** 2
    raise ValueError(f"multi_resolution_stft_loss: mag_distance must be 'L1' or 'L2', got {kind!r}")


def _resolution_terms(p, t, res, keep, o) -> tuple[jax.Array, tuple]:
    """One resolution's loss and its four unweighted terms (``o``: the options)."""
    fb = _filterbank(o["scale"], o["n_bins"], o["sample_rate"], res[0])
    (xm, xz), (ym, yz) = (_spectrum(s, res, o["window"], o["eps"], fb) for s in (p, t))
    if o["scale_invariance"]:  # per signal; auraloss's own broadcast only works for one signal
        alpha = jnp.sum(xm * ym, axis=(-2, -1)) / jnp.sum(ym**2, axis=(-2, -1))
        ym = ym * alpha[..., None, None]
    zero = jnp.zeros((), xm.dtype)
    sc = zero if is_off(o["w_sc"]) else (
        safe_sqrt(jnp.sum(zero_rows(ym - xm, keep) ** 2))
        / safe_sqrt(jnp.sum(zero_rows(ym, keep) ** 2)))
    log = zero if is_off(o["w_log_mag"]) else reduce(
        _swap(_distance(jnp.log(xm), jnp.log(ym), o["mag_distance"])), o["reduction"], keep)
    lin = zero if is_off(o["w_lin_mag"]) else reduce(
        _swap(_distance(xm, ym, o["mag_distance"])), o["reduction"], keep)
    phs = zero if is_off(o["w_phs"]) else reduce(
        (safe_angle(xz) - safe_angle(yz)) ** 2, "mean", keep)
    loss = o["w_sc"] * sc + o["w_log_mag"] * log + o["w_lin_mag"] * lin + o["w_phs"] * phs
    return loss, (sc, log, lin, phs)


def _swap(x: jax.Array) -> jax.Array:
    """Frames-major ``[..., T, F]`` to auraloss's ``[..., F, T]`` (only "none" shows it)."""
    return jnp.swapaxes(x, -1, -2)


def _prepare(prediction, target, valid, reduction, n_res, perceptual_weighting, sample_rate):
    """The checked pair, padded rows zeroed (not even a NaN of theirs passes), A-weighted when
    asked, and the mask of the rows that count."""
    fname = "multi_resolution_stft_loss"
    check_reduction(reduction, fname)
    if reduction == "none" and n_res > 1:
        raise ValueError(f"{fname}: reduction='none' needs one resolution (their shapes "
                         f"differ), got {n_res}")
    p, t = check_pair(prediction, target, fname)
    keep = keep_rows(valid, p.shape[0], fname)
    p, t = zero_rows(p, keep), zero_rows(t, keep)
    if perceptual_weighting:
        if sample_rate is None:
            raise ValueError(f"{fname}: perceptual_weighting=True needs sample_rate")
        p, t = (perceptual_weighting_filter(s, sample_rate) for s in (p, t))
    return p, t, keep


def multi_resolution_stft_loss(
    prediction, target, *, fft_sizes=AURALOSS_FFT_SIZES, hop_sizes=AURALOSS_HOP_SIZES,
    win_lengths=AURALOSS_WIN_LENGTHS, window: str = "hann", w_sc: float = 1.0,
    w_log_mag: float = 1.0, w_lin_mag: float = 0.0, w_phs: float = 0.0,
    sample_rate: float | None = None, scale: str | None = None, n_bins: int | None = None,
    perceptual_weighting: bool = False, scale_invariance: bool = False, eps: float = 1e-8,
    reduction: str = "mean", mag_distance: str = "L1", return_components: bool = False,
    valid=None,
):
    """auraloss's (multi-resolution) STFT loss; see the module for the formula.

    Args:
        prediction, target: audio ``[B, N]`` or ``[B, C, N]``.
        fft_sizes, hop_sizes, win_lengths: samples; an int each (one resolution) or equal-length
            tuples (default auraloss's ``(1024, 2048, 512)``, ``(120, 240, 50)``,
            ``(600, 1200, 240)``).
        window: ``"hann"`` (default), ``"hamming"``, ``"blackman"``, ``"bartlett"``,
            ``"kaiser"`` (also spelled ``"hann_window"`` etc.), periodic as torch's.
        w_sc, w_log_mag, w_lin_mag, w_phs: term weights (defaults 1, 1, 0, 0).
        sample_rate: Hz; needed by ``scale`` and ``perceptual_weighting``.
        scale: None, ``"mel"`` (librosa's Slaney mel, ``n_bins`` bands, 0 Hz to Nyquist) or
            ``"chroma"`` (``n_bins`` chroma bins).
        perceptual_weighting: A-weight both signals first (:func:`perceptual_weighting_filter`).
        scale_invariance: scale ``Y`` by ``<X, Y> / <Y, Y>`` per signal first.
        eps: clamp of the squared magnitude (default 1e-8).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (one resolution only).
        mag_distance: ``"L1"`` (default) or ``"L2"``.
        return_components: also return the terms (an :class:`STFTLossComponents`).
        valid: optional ``[B]`` bool mask of the rows that count.

    Returns the scalar loss (``"none"``: ``[B, (C,) F, T]``), averaged over resolutions.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> loss = losses.multi_resolution_stft_loss(0.5 * target, target, fft_sizes=(256, 512),
        ...                                          hop_sizes=(64, 128), win_lengths=(256, 512))
        >>> round(float(loss), 3)
        0.795
        >>> losses.multi_resolution_stft_loss(0.5 * target, target, fft_sizes=512, hop_sizes=128,
        ...                                   win_lengths=512, reduction="none").shape  # [B, F, T]
        (2, 257, 38)
    """
    res = _resolutions(fft_sizes, hop_sizes, win_lengths)
    p, t, keep = _prepare(prediction, target, valid, reduction, len(res), perceptual_weighting,
                          sample_rate)
    opts = dict(window=window, w_sc=w_sc, w_log_mag=w_log_mag, w_lin_mag=w_lin_mag,
                w_phs=w_phs, sample_rate=sample_rate, scale=scale, n_bins=n_bins, eps=eps,
                scale_invariance=scale_invariance, reduction=reduction, mag_distance=mag_distance)
    losses, terms = zip(*(_resolution_terms(p, t, r, keep, opts) for r in res))
    loss = sum(losses) / len(res)
    if reduction == "none":  # the scalar terms were broadcast onto the rows left out too
        loss = zero_rows(loss, keep)
    if not return_components:
        return loss
    return STFTLossComponents(loss, *(tuple(k) for k in zip(*terms)))


def mel_stft_loss(prediction, target, *, sample_rate: float, fft_sizes=1024, hop_sizes=256,
                  win_lengths=1024, n_mels: int = 128, **options):
    """auraloss's ``MelSTFTLoss``: :func:`multi_resolution_stft_loss` with ``scale="mel"``,
    ``n_bins=n_mels`` (default 128) and its defaults of one 1024/256/1024 resolution;
    ``sample_rate`` (Hz) is required. Other options as there.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.mel_stft_loss(0.5 * target, target, sample_rate=24000)), 3)
        0.983
    """
    return multi_resolution_stft_loss(
        prediction, target, fft_sizes=fft_sizes, hop_sizes=hop_sizes, win_lengths=win_lengths,
        sample_rate=sample_rate, scale="mel", n_bins=n_mels, **options)


def chroma_stft_loss(prediction, target, *, sample_rate: float, fft_sizes=1024, hop_sizes=256,
                     win_lengths=1024, n_chroma: int = 12, **options):
    """auraloss's ``ChromaSTFTLoss``: :func:`multi_resolution_stft_loss` with
    ``scale="chroma"``, ``n_bins=n_chroma`` (default 12), one 1024/256/1024 resolution by
    default; ``sample_rate`` (Hz) is required. Other options as there.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.chroma_stft_loss(0.5 * target, target, sample_rate=24000)), 3)
        1.192
    """
    return multi_resolution_stft_loss(
        prediction, target, fft_sizes=fft_sizes, hop_sizes=hop_sizes, win_lengths=win_lengths,
        sample_rate=sample_rate, scale="chroma", n_bins=n_chroma, **options)


def sum_and_difference_stft_loss(prediction, target, *, fft_sizes=AURALOSS_FFT_SIZES,
                                 hop_sizes=AURALOSS_HOP_SIZES, win_lengths=AURALOSS_WIN_LENGTHS,
                                 w_sum: float = 1.0, w_diff: float = 1.0,
                                 return_components: bool = False, **options):
    """auraloss's ``SumAndDifferenceSTFTLoss`` for stereo ``[B, 2, N]``:
    ``(w_sum * L(p_L + p_R, t_L + t_R) + w_diff * L(p_L - p_R, t_L - t_R)) / 2`` with ``L`` the
    :func:`multi_resolution_stft_loss` (its other options, ``valid`` included, pass through).

    Returns the scalar loss, or ``(loss, sum_loss, diff_loss)`` with ``return_components``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> stereo = target[None]  # [B, 2, N] = [1, 2, 4800]: left 440 Hz, right 660 Hz
        >>> loss, sum_loss, diff_loss = losses.sum_and_difference_stft_loss(
        ...     0.5 * stereo, stereo, fft_sizes=512, hop_sizes=128, win_lengths=512,
        ...     return_components=True)
        >>> [round(float(v), 3) for v in (loss, sum_loss, diff_loss)]
        [0.857, 0.858, 0.856]
    """
    p, t = check_pair(prediction, target, "sum_and_difference_stft_loss")
    if p.ndim != 3 or p.shape[1] != 2:
        raise ValueError(f"sum_and_difference_stft_loss: expected stereo audio [B, 2, N], got "
                         f"shape {p.shape}")
    kw = dict(fft_sizes=fft_sizes, hop_sizes=hop_sizes, win_lengths=win_lengths, **options)
    sum_loss = multi_resolution_stft_loss(p[:, :1] + p[:, 1:], t[:, :1] + t[:, 1:], **kw)
    diff_loss = multi_resolution_stft_loss(p[:, :1] - p[:, 1:], t[:, :1] - t[:, 1:], **kw)
    loss = (w_sum * sum_loss + w_diff * diff_loss) / 2
    return (loss, sum_loss, diff_loss) if return_components else loss
