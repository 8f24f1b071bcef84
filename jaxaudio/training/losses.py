"""The original's training losses at their old path: they live in :mod:`jaxaudio.losses`
(:mod:`jaxaudio.losses.original`), imported from there so that ``import jaxaudio.losses`` never
loads the trainer. Same functions, same signatures; ``modulation_correlation_penalty`` keeps the
original's ``(input, target, output)`` order here.
"""

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
    combined_loss,
    evaluate_terms,
    mean_rows,
    mel_distance,
    mel_loss,
    modulation_correlation_penalty,
    resolutions,
    rms_loss,
    row_weights,
    rows,
    spectral_outlier_penalty,
    static_weight,
    stft_distance,
    stft_loss,
    weighted_total,
)
from jaxaudio.losses.original import __all__  # noqa: F401
