"""Rhythm-transfer metrics of the masking agent: envelope correlations between latents."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaudio.nn import safe_sqrt, unbiased_std

# The original's threshold on |input/output envelope correlation| for "rhythm preserved".
RHYTHM_PRESERVED_THRESHOLD = 0.3


def compute_rhythm_envelope(audio_encoded: jax.Array, window_size: int = 50) -> jax.Array:
    """Temporal envelope of ``[B, D, T]`` latents: per-frame RMS over D, moving-averaged.

    The RMS ``[B, T]`` is reflect-padded by ``window_size // 2`` on both sides and averaged
    over ``window_size`` frames without further padding, as the original does; for an even
    window the envelope therefore has ``T + 1`` frames (``[B, T + 1]``), for an odd one ``T``.
    ``window_size <= 1`` returns the RMS itself. Reflect padding needs ``T > window_size // 2``.
    """
    rms = safe_sqrt(jnp.mean(audio_encoded ** 2, axis=1))  # [B, T]
    if window_size <= 1:
        return rms
    half = window_size // 2
    if half >= rms.shape[1]:
        raise ValueError(f"compute_rhythm_envelope: reflect padding by window_size // 2 = {half} "
                         f"needs more than {half} frames, got T = {rms.shape[1]}")
    padded = jnp.pad(rms, ((0, 0), (half, half)), mode="reflect")
    kernel = jnp.full((1, 1, window_size), 1.0 / window_size, rms.dtype)
    smoothed = jax.lax.conv_general_dilated(padded[:, None, :], kernel, window_strides=(1,),
                                            padding="VALID",
                                            dimension_numbers=("NCH", "OIH", "NCH"))
    return smoothed[:, 0, :]


def _correlation(x: jax.Array, y: jax.Array) -> jax.Array:
    """Batch mean of per-row Pearson-like correlation of ``[B, T]`` rows, as the original:
    biased covariance over Bessel-corrected stds (each + 1e-8)."""
    xc = x - jnp.mean(x, axis=1, keepdims=True)
    yc = y - jnp.mean(y, axis=1, keepdims=True)
    cov = jnp.mean(xc * yc, axis=1)
    std_x = unbiased_std(xc, axis=1) + 1e-8
    std_y = unbiased_std(yc, axis=1) + 1e-8
    return jnp.mean(cov / (std_x * std_y))


def evaluate_rhythm_transfer(encoded_input: jax.Array, encoded_target: jax.Array,
                             encoded_output: jax.Array, *, window_size: int = 50
                             ) -> dict[str, jax.Array]:
    """How much of the input's and the target's rhythm envelope the output follows.

    All three are ``[B, D, T]``. Returns scalar arrays (``rhythm_preserved`` a bool array):

    - ``input_rhythm_corr``, ``target_rhythm_corr``: batch-mean envelope correlation of the
      output with the input and with the target;
    - ``rhythm_balance``: ``|input_rhythm_corr| / (|target_rhythm_corr| + 1e-8)``;
    - ``input_rhythm_energy``, ``output_rhythm_energy``: Bessel-corrected std of the whole
      ``[B, T']`` envelope;
    - ``rhythm_preserved``: ``|input_rhythm_corr| > 0.3``.
    """
    input_envelope = compute_rhythm_envelope(encoded_input, window_size)
    target_envelope = compute_rhythm_envelope(encoded_target, window_size)
    output_envelope = compute_rhythm_envelope(encoded_output, window_size)
    input_corr = _correlation(input_envelope, output_envelope)
    target_corr = _correlation(target_envelope, output_envelope)
    return {
        "input_rhythm_corr": input_corr,
        "target_rhythm_corr": target_corr,
        "rhythm_balance": jnp.abs(input_corr) / (jnp.abs(target_corr) + 1e-8),
        "input_rhythm_energy": unbiased_std(input_envelope, axis=None),
        "output_rhythm_energy": unbiased_std(output_envelope, axis=None),
        "rhythm_preserved": jnp.abs(input_corr) > RHYTHM_PRESERVED_THRESHOLD,
    }
