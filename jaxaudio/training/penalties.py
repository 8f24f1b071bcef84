"""The original's penalties at their old path (they live in :mod:`jaxaudio.losses.penalties`).

``modulation_correlation_penalty`` keeps the original's ``(input, target, output)`` order here;
:func:`jaxaudio.losses.modulation_correlation_penalty` takes the prediction first.
"""

from jaxaudio.losses.penalties import (  # noqa: F401
    DEFAULT_BANDS,
    spectral_outlier_penalty,
)
from jaxaudio.losses.penalties import \
    original_modulation_correlation_penalty as modulation_correlation_penalty  # noqa: F401

__all__ = ["spectral_outlier_penalty", "modulation_correlation_penalty"]
