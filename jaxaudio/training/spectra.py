"""What the original's spectral losses share, at its old path (it lives in
:mod:`jaxaudio.losses.original_spectra`)."""

from jaxaudio.losses.original_spectra import (  # noqa: F401
    LOG_EPS,
    SC_EPS,
    SpecCache,
    fro,
    mean_rows,
    mel_distance,
    resolutions,
    row_weights,
    rows,
    stft_distance,
)
