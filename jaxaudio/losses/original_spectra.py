"""What the spectral losses share: a signal's STFTs, log magnitudes and log mels computed once
per resolution (:class:`SpecCache`), the multi-resolution STFT and log-mel distances between
two of them, and the row weights of a padded batch (``valid``).

Pure functions of arrays, as :mod:`jaxaudio.losses.original` (which builds its losses from
them) and :mod:`jaxaudio.training.objective` use them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxaudio.dsp import magnitude, mel_from_stft, safe_sqrt, stft_frames

LOG_EPS = 1e-5  # inside log(|X| + eps) and log(mel + eps)
SC_EPS = 1e-6  # spectral convergence denominator


def rows(x: jax.Array, w: jax.Array | None) -> jax.Array:
    """``x [B, ...]`` with the rows of weight 0 zeroed (no weights: ``x``)."""
    if w is None:
        return x
    keep = w.reshape((-1,) + (1,) * (x.ndim - 1)) > 0
    return jnp.where(keep, x, jnp.zeros((), x.dtype))


def mean_rows(x: jax.Array, w: jax.Array | None) -> jax.Array:
    """Mean over every element of the rows of weight 1 (``w`` is ``[B]`` of 0/1, or None)."""
    if w is None:
        return jnp.mean(x)
    per_row = x[0].size
    return jnp.sum(rows(x, w)) / (jnp.maximum(jnp.sum(w), 1).astype(x.dtype) * per_row)


def row_weights(valid, batch: int) -> jax.Array | None:
    """``valid`` as ``[B]`` row weights (None stays None), checked against the batch."""
    if valid is None:
        return None
    w = jnp.asarray(valid)
    if w.shape != (batch,):
        raise ValueError(f"valid must be a [B] = [{batch}] array of 0/1 weights, got {w.shape}")
    return w


def fro(x: jax.Array) -> jax.Array:
    """The Frobenius norm, with derivative 0 at 0."""
    return safe_sqrt(jnp.sum(x * x))


def resolutions(fft_sizes, hop_sizes, win_sizes) -> tuple[tuple[int, int, int], ...]:
    """The ``(n_fft, hop, win)`` triples of a multi-resolution loss, checked (an int is one
    resolution)."""
    fft_sizes, hop_sizes, win_sizes = (tuple(np.atleast_1d(v).tolist())
                                       for v in (fft_sizes, hop_sizes, win_sizes))
    if not (len(fft_sizes) == len(hop_sizes) == len(win_sizes)) or not fft_sizes:
        raise ValueError(
            "stft_loss: fft_sizes, hop_sizes and win_sizes must be non-empty and of equal length, "
            f"got {fft_sizes}, {hop_sizes}, {win_sizes}"
        )
    return tuple((int(f), int(h), int(w)) for f, h, w in zip(fft_sizes, hop_sizes, win_sizes))


class SpecCache:
    """STFTs of one signal, computed once per (n_fft, hop, win) and shared between the
    STFT and mel losses (the mel default n_fft=1024, hop=256 is also an STFT resolution)."""

    def __init__(self, x: jax.Array):
        self.x = x
        self._stft: dict[tuple[int, int, int], jax.Array] = {}
        self._logmag: dict[tuple[int, int, int], tuple[jax.Array, jax.Array]] = {}
        self._logmel: dict[tuple, jax.Array] = {}

    def stft(self, res: tuple[int, int, int]) -> jax.Array:
        if res not in self._stft:
            self._stft[res] = stft_frames(self.x, res[0], res[1], res[2])
        return self._stft[res]

    def mag_logmag(self, res: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
        if res not in self._logmag:
            mag = magnitude(self.stft(res))
            self._logmag[res] = (mag, jnp.log(mag + LOG_EPS))
        return self._logmag[res]

    def logmel(self, sample_rate, n_fft, n_mels, hop_length, fmin, fmax) -> jax.Array:
        key = (sample_rate, n_fft, n_mels, hop_length, fmin, fmax)
        if key not in self._logmel:
            z = self.stft((int(n_fft), int(hop_length), int(n_fft)))
            mel = mel_from_stft(z, sample_rate, n_fft, n_mels, fmin, fmax)
            self._logmel[key] = jnp.log(mel + LOG_EPS)
        return self._logmel[key]


def stft_distance(pred: SpecCache, target: SpecCache, resolutions, w=None) -> jax.Array:
    """Spectral convergence plus mean log-magnitude L1, averaged over ``resolutions``, over
    the rows of weight 1 (``w``; None: all). See :func:`jaxaudio.losses.original.stft_loss`."""
    sc_sum = 0.0
    lm_sum = 0.0
    for res in resolutions:
        mp, lp = pred.mag_logmag(res)
        mt, lt = target.mag_logmag(res)
        sc_sum = sc_sum + fro(rows(mp - mt, w)) / (fro(rows(mt, w)) + SC_EPS)
        lm_sum = lm_sum + mean_rows(magnitude(lp - lt), w)
    return (sc_sum + lm_sum) / len(resolutions)


def mel_distance(pred: SpecCache, target: SpecCache, mel_args: tuple, w=None) -> jax.Array:
    """Mean L1 of log mels, ``mel_args = (sample_rate, n_fft, n_mels, hop, fmin, fmax)``."""
    return mean_rows(magnitude(pred.logmel(*mel_args) - target.logmel(*mel_args)), w)
