"""The original's training losses at their old path, with the original's signatures.

They live in :mod:`jaxaudio.losses` (:mod:`jaxaudio.losses.original`) and are imported from
there, so that ``import jaxaudio.losses`` never loads the trainer. Here ``stft_loss`` and
``mel_loss`` also take their options by position, and ``modulation_correlation_penalty`` keeps
the original's ``(input, target, output)`` order.
"""

from __future__ import annotations

from typing import Sequence

import jax

from jaxaudio.losses import original as _lib
from jaxaudio.losses.original import (  # noqa: F401
    AUDIO_TERMS,
    DEFAULT_FFT_SIZES,
    DEFAULT_HOP_SIZES,
    DEFAULT_MEL,
    DEFAULT_WIN_SIZES,
    LOG_EPS,
    SC_EPS,
    CombinedLoss,
    LossInputs,
    SpecCache,
    __all__,
    combined_loss,
    evaluate_terms,
    mean_rows,
    mel_distance,
    modulation_correlation_penalty,
    resolutions,
    rms_loss,
    row_weights,
    rows,
    static_weight,
    stft_distance,
    weighted_total,
)
from jaxaudio.training.penalties import spectral_outlier_penalty  # noqa: F401


def stft_loss(
    y_pred: jax.Array,
    y_target: jax.Array,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    hop_sizes: Sequence[int] = DEFAULT_HOP_SIZES,
    win_sizes: Sequence[int] = DEFAULT_WIN_SIZES,
    *,
    valid: jax.Array | None = None,
) -> jax.Array:
    """:func:`jaxaudio.losses.stft_loss` with the original's positional options."""
    return _lib.stft_loss(y_pred, y_target, fft_sizes=fft_sizes, hop_sizes=hop_sizes,
                          win_sizes=win_sizes, valid=valid)


def mel_loss(
    y_pred: jax.Array,
    y_target: jax.Array,
    sample_rate: float = 24000,
    n_fft: int = 1024,
    n_mels: int = 80,
    hop_length: int = 256,
    fmin: float = 0.0,
    fmax: float | None = 8000.0,
    *,
    valid: jax.Array | None = None,
) -> jax.Array:
    """:func:`jaxaudio.losses.mel_loss` with the original's positional options."""
    return _lib.mel_loss(y_pred, y_target, sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels,
                         hop_length=hop_length, fmin=fmin, fmax=fmax, valid=valid)
