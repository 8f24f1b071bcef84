"""The original's penalties at their old path, with the original's signatures (they live in
:mod:`jaxaudio.losses.penalties`).

Here ``spectral_outlier_penalty`` also takes its options by position, and
``modulation_correlation_penalty`` keeps the original's ``(input, target, output)`` order;
:func:`jaxaudio.losses.modulation_correlation_penalty` takes the prediction first.
"""

from __future__ import annotations

from typing import Sequence

import jax

from jaxaudio.losses import penalties as _lib
from jaxaudio.losses.penalties import DEFAULT_BANDS  # noqa: F401
from jaxaudio.losses.penalties import \
    original_modulation_correlation_penalty as modulation_correlation_penalty  # noqa: F401

__all__ = ["spectral_outlier_penalty", "modulation_correlation_penalty"]


def spectral_outlier_penalty(
    audio: jax.Array,
    sample_rate: float = 24000,
    n_fft: int = 2048,
    hop_length: int = 512,
    freq_bands: Sequence[tuple[float, float]] = DEFAULT_BANDS,
    percentile: float = 90,
) -> jax.Array:
    """:func:`jaxaudio.losses.spectral_outlier_penalty` with the original's positional
    options."""
    return _lib.spectral_outlier_penalty(audio, sample_rate=sample_rate, n_fft=n_fft,
                                         hop_length=hop_length, freq_bands=freq_bands,
                                         percentile=percentile)
