"""Training: the original's losses as pure functions (more to come: step, trainer, metrics)."""

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
