"""Training: config and CLI, setup, step, trainer, validator, metrics, checkpoint.

The package re-exports the original's losses (pure functions of arrays); the loop is
:func:`jaxaudio.training.trainer.fit`, run by ``python -m jaxaudio.train``.
"""

from jaxaudio.training.losses import (
    CombinedLoss,
    combined_loss,
    mel_loss,
    modulation_correlation_penalty,
    rms_loss,
    spectral_outlier_penalty,
    stft_loss,
)

__all__ = [
    "CombinedLoss",
    "combined_loss",
    "mel_loss",
    "modulation_correlation_penalty",
    "rms_loss",
    "spectral_outlier_penalty",
    "stft_loss",
]
