"""The original's penalties: spectral outliers in narrow bands (``training/losses.py``) and
amplitude-envelope copying (``correlation_penalty.py``), as pure JAX functions.

Same formulas and quirks as the original: the outlier penalty uses the unbiased std, a linear
interpolation quantile over every frame of the batch and a strict ``>`` mask; the correlation
penalty returns 0 when the output holds a NaN. Both are re-exported by
:mod:`jaxaudio.losses.original`. Audio is ``[B, N]`` or ``[B, 1, N]``; computed in float32.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxaudio.dsp import as_mono_batch, magnitude, safe_sqrt, stft_frames

__all__ = [
    "spectral_outlier_penalty",
    "modulation_correlation_penalty",
    "original_modulation_correlation_penalty",
]

DEFAULT_BANDS = ((1800, 2200), (3800, 4200), (5800, 6200))


def spectral_outlier_penalty(
    audio: jax.Array,
    *,
    sample_rate: float = 24000,
    n_fft: int = 2048,
    hop_length: int = 512,
    freq_bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    percentile: float = 90,
) -> jax.Array:
    """Penalty on frames whose energy in narrow bands stands out from the batch.

    Per band, ``E [B, T]`` is the mean ``|STFT|`` over bins ``int(low / (sr / n_fft))`` to
    ``int(high / (sr / n_fft))`` (exclusive); z-scores use the mean and unbiased std (+1e-8) of
    all ``B * T`` values; frames with ``z > quantile(z, percentile / 100)`` (linear
    interpolation, strict ``>``) contribute ``mean((E - mean)**2)``; a band without such frames
    contributes 0. Returns the average over bands. The mask is data-dependent but written with
    ``where``, so this jits; all bands come from one STFT.

    Args:
        audio: ``[B, N]`` or ``[B, 1, N]``.
        sample_rate, n_fft, hop_length, freq_bands, percentile: static options (``sample_rate``
            in Hz, ``freq_bands`` pairs of Hz), keyword-only here
            (``jaxaudio.training.penalties.spectral_outlier_penalty`` takes them by position
            too).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> hum = 0.1 * jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4800) / 24000)  # 20 dB below
        >>> round(float(losses.spectral_outlier_penalty(target + hum)), 3)  # 24 kHz, n_fft 2048
        0.586
    """
    x = as_mono_batch(audio, "audio")
    z = stft_frames(x, n_fft, hop_length, n_fft)
    return _outlier_penalty_from_stft(z, sample_rate, n_fft, freq_bands, percentile)


def _outlier_penalty_from_stft(z, sample_rate, n_fft, freq_bands, percentile) -> jax.Array:
    """:func:`spectral_outlier_penalty` of a frames-major STFT ``[B, T, F]``."""
    n_bins = z.shape[-1]
    resolution = sample_rate / n_fft
    energies = []
    for low_hz, high_hz in freq_bands:
        lo = max(0, int(low_hz / resolution))
        hi = min(n_bins, int(high_hz / resolution))
        if hi <= lo:
            raise ValueError(
                f"spectral_outlier_penalty: band ({low_hz}, {high_hz}) Hz holds no STFT bin "
                f"(bins {lo}..{hi} at {resolution:.2f} Hz per bin)"
            )
        energies.append(jnp.mean(magnitude(z[..., lo:hi]), axis=-1).reshape(-1))
    e = jnp.stack(energies)  # [bands, B * T]
    mean = jnp.mean(e, axis=-1, keepdims=True)
    # The mask is piecewise constant: no gradient flows through the z-scores or the quantile.
    e_sg, mean_sg = jax.lax.stop_gradient(e), jax.lax.stop_gradient(mean)
    std = jnp.std(e_sg, axis=-1, ddof=1, keepdims=True) + 1e-8
    zs = (e_sg - mean_sg) / std
    q = _quantile_linear(zs, percentile / 100.0)
    mask = zs > q
    count = jnp.sum(mask, axis=-1)
    excess = jnp.sum(jnp.where(mask, (e - mean) ** 2, 0), axis=-1)
    per_band = jnp.where(count > 0, excess / jnp.maximum(count, 1), 0)
    penalty = jnp.sum(per_band) / len(freq_bands)
    # A NaN or infinite band energy fails every `z > q` comparison, which would leave no frame
    # selected and a penalty of 0: a broken output must not read as a clean one.
    return jnp.where(jnp.all(jnp.isfinite(e)), penalty, jnp.nan).astype(penalty.dtype)


def _quantile_linear(x: jax.Array, q: float) -> jax.Array:
    """``torch.quantile(x, q, dim=-1, keepdim=True)`` (linear interpolation, torch's ``lerp``).

    The rank is static, so one sort and two static slices do (cheaper than ``jnp.quantile``).
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"spectral_outlier_penalty: percentile must be in [0, 100], got {100 * q}")
    s = jnp.sort(x, axis=-1)
    # torch computes the rank and weight in the input's dtype
    dt = np.dtype(x.dtype)
    rank = dt.type(q) * dt.type(x.shape[-1] - 1)
    lo = int(rank)
    hi = min(lo + 1, x.shape[-1] - 1)
    w = float(rank - dt.type(lo))
    below, above = s[..., lo : lo + 1], s[..., hi : hi + 1]
    # torch.lerp switches formula at weight 0.5 for accuracy
    return below + w * (above - below) if w < 0.5 else above - (above - below) * (1 - w)


def _envelope(x: jax.Array, m_parts: int) -> jax.Array:
    """``[B, N]`` -> ``[B, m_parts]``: max ``|x|`` per segment of ``N // m_parts`` samples."""
    seg = x.shape[-1] // m_parts
    if seg < 1:
        raise ValueError(f"m_parts={m_parts} exceeds the {x.shape[-1]} samples of the audio")
    return jnp.max(magnitude(x[:, : seg * m_parts]).reshape(x.shape[0], m_parts, seg), axis=-1)


def _pearson(x: jax.Array, y: jax.Array, m_parts: int) -> jax.Array:
    """Per-row Pearson correlation (unbiased, +1e-8), clamped to [-1, 1] -> ``[B]``."""
    xc = x - jnp.mean(x, axis=1, keepdims=True)
    yc = y - jnp.mean(y, axis=1, keepdims=True)
    cov = jnp.sum(xc * yc, axis=1) / (m_parts - 1)
    sx = safe_sqrt(jnp.sum(xc * xc, axis=1) / (m_parts - 1))
    sy = safe_sqrt(jnp.sum(yc * yc, axis=1) / (m_parts - 1))
    corr = cov / (sx * sy + 1e-8)
    # torch.clamp passes the gradient on the closed interval; jnp.clip halves it at the ends.
    return jnp.where(corr > 1, 1.0, jnp.where(corr < -1, -1.0, corr))


def original_modulation_correlation_penalty(
    input_audio: jax.Array,
    target_audio: jax.Array,
    output_audio: jax.Array,
    m_parts: int = 250,
    *,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Penalty for copying the amplitude envelope of the input or the target, in the
    original's argument order ``(input, target, output)`` (the order of
    ``jaxaudio.training.losses.modulation_correlation_penalty``;
    :func:`modulation_correlation_penalty` is the same penalty with the prediction first).

    Envelopes are the max ``|x|`` of ``m_parts`` segments over the first
    ``(N // m_parts) * m_parts`` samples; the cost is ``mean_b(corr(in, out)**2 +
    corr(target, out)**2)`` with Pearson correlations per clip. A NaN anywhere in the output
    gives 0 (and a zero gradient), as the original's guard does: that guard is part of the
    original's definition of this penalty (the one loss here that does not propagate a NaN
    prediction; :func:`jaxaudio.losses.original.combined_loss`'s total still does). An
    infinite output is not caught by the guard and gives NaN.

    Args:
        input_audio, target_audio, output_audio: ``[B, N]`` or ``[B, 1, N]``.
        valid: optional ``[B]`` 0/1 weights: the mean runs over the rows marked 1 only (a
            padded last batch), exactly as if the others were absent.
    """
    if m_parts < 2:
        raise ValueError(f"modulation_correlation_penalty: m_parts must be >= 2, got {m_parts}")
    inp = as_mono_batch(input_audio, "input_audio")
    tgt = as_mono_batch(target_audio, "target_audio")
    out = as_mono_batch(output_audio, "output_audio")
    if not inp.shape == tgt.shape == out.shape:
        raise ValueError(
            f"modulation_correlation_penalty: input_audio {inp.shape}, target_audio {tgt.shape} "
            f"and output_audio {out.shape} must have equal shapes [B, N]")
    if valid is not None:  # padding rows must not trip the NaN guard
        if jnp.shape(valid) != (out.shape[0],):
            raise ValueError(f"modulation_correlation_penalty: valid must be a [B] = "
                             f"[{out.shape[0]}] array of 0/1 weights, got {jnp.shape(valid)}")
        out = jnp.where((jnp.asarray(valid) > 0)[:, None], out, 0)
    has_nan = jnp.any(jnp.isnan(out))
    # Zeroing the NaNs keeps the discarded branch's gradient finite (0 * NaN would be NaN).
    out = jnp.where(has_nan, 0, out)
    env_out = _envelope(out, m_parts)
    c_in = _pearson(_envelope(inp, m_parts), env_out, m_parts)
    c_tg = _pearson(_envelope(tgt, m_parts), env_out, m_parts)
    per_clip = c_in**2 + c_tg**2
    if valid is None:
        cost = jnp.mean(per_clip)
    else:
        keep = jnp.asarray(valid) > 0
        n = jnp.maximum(jnp.sum(keep), 1).astype(per_clip.dtype)
        cost = jnp.sum(jnp.where(keep, per_clip, 0)) / n
    return jnp.where(has_nan, 0, cost).astype(cost.dtype)


def modulation_correlation_penalty(
    prediction: jax.Array,
    input: jax.Array,
    target: jax.Array,
    *,
    m_parts: int = 250,
    valid: jax.Array | None = None,
) -> jax.Array:
    """The original's envelope-copying penalty with the prediction first:
    ``original_modulation_correlation_penalty(input, target, prediction, m_parts, valid=valid)``.

    Args:
        prediction, input, target: mono audio ``[B, N]`` or ``[B, 1, N]``.
        m_parts: static; number of envelope segments (default 250).
        valid: optional ``[B]`` 0/1 weights (rows marked 0 are left out of the mean).

    Returns a scalar (``mean_b(corr(in, out)**2 + corr(target, out)**2)``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> swell = target * jnp.linspace(0.0, 1.0, 4800)  # the input: the target, fading in
        >>> round(float(losses.modulation_correlation_penalty(0.5 * swell, swell, target,
        ...                                                   m_parts=50)), 3)  # copies the input
        1.0
        >>> round(float(losses.modulation_correlation_penalty(target, swell, target,
        ...                                                   m_parts=50)), 3)  # copies neither
        0.068
    """
    return original_modulation_correlation_penalty(input, target, prediction, m_parts,
                                                   valid=valid)
