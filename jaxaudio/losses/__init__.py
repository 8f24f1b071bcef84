"""jaxaudio.losses: every loss of jaxaudio, as pure functions of arrays.

Two-signal losses are ``loss(prediction, target, *, options)``; three-signal ones
``loss(prediction, input, target, *, options)``. Options are keyword-only and static (hashable
Python values: ints or tuples of ints for STFT resolutions, strings, floats, bools), so a loss
is used under ``jax.jit`` with its options closed over::

    import functools, jax
    from jaxaudio import losses

    loss_fn = functools.partial(losses.multi_resolution_stft_loss, fft_sizes=(512, 1024),
                                hop_sizes=(128, 256), win_lengths=(512, 1024))
    value, grad = jax.jit(jax.value_and_grad(loss_fn))(prediction, target)

Every loss is safe under ``jax.jit``, ``jax.vmap`` and ``jax.grad``, with finite gradients on
silence and on identical signals, and accepts ``valid`` (optional ``[B]`` bool): rows marked
False (a padded batch) are left out of the reduction.

- :mod:`jaxaudio.losses.spectral`: auraloss 0.4.0's STFT losses (multi-resolution, mel- and
  chroma-scaled, A-weighted, sum-and-difference), audio ``[B, N]`` or ``[B, C, N]``.
- :mod:`jaxaudio.losses.time_domain`: auraloss's ESR, DC, log-cosh, SNR, SI-SDR and SD-SDR.
- :mod:`jaxaudio.losses.original`, :mod:`jaxaudio.losses.penalties`: the original system's
  losses (mono ``[B, N]`` or ``[B, 1, N]``; at their old paths in
  :mod:`jaxaudio.training.losses` and :mod:`jaxaudio.training.penalties` too), with
  :func:`modulation_correlation_penalty` here taking the prediction first.

Windows and filterbanks are NumPy constants of :mod:`jaxaudio.filterbanks`.
"""

from jaxaudio.losses.original import (
    CombinedLoss,
    combined_loss,
    mel_loss,
    rms_loss,
    spectral_outlier_penalty,
    stft_loss,
)
from jaxaudio.losses.penalties import modulation_correlation_penalty
from jaxaudio.losses.spectral import (
    STFTLossComponents,
    chroma_stft_loss,
    mel_stft_loss,
    multi_resolution_stft_loss,
    perceptual_weighting_filter,
    sum_and_difference_stft_loss,
)
from jaxaudio.losses.time_domain import (
    dc_loss,
    esr_loss,
    log_cosh_loss,
    sd_sdr_loss,
    si_sdr_loss,
    snr_loss,
)

__all__ = [
    # auraloss 0.4.0's set
    "multi_resolution_stft_loss",
    "mel_stft_loss",
    "chroma_stft_loss",
    "sum_and_difference_stft_loss",
    "perceptual_weighting_filter",
    "STFTLossComponents",
    "esr_loss",
    "dc_loss",
    "log_cosh_loss",
    "snr_loss",
    "si_sdr_loss",
    "sd_sdr_loss",
    # the original system's
    "rms_loss",
    "stft_loss",
    "mel_loss",
    "combined_loss",
    "CombinedLoss",
    "spectral_outlier_penalty",
    "modulation_correlation_penalty",
]
