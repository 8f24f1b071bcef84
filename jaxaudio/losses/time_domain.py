"""Time-domain losses of auraloss 0.4.0 (``auraloss/time.py``) as pure JAX functions.

Each is ``loss(prediction, target, *, options)``: audio ``[B, N]`` or ``[B, C, N]`` (any
number of channels), a per-signal value over the last axis (``[B]`` or ``[B, C]``), then
auraloss's ``reduction``: ``"mean"`` (default) or ``"sum"`` of those values, or ``"none"``
(the values themselves). ``valid`` (optional ``[B]`` bool) leaves padded rows out of the
reduction (with ``"none"`` their values are 0). Computed in float32 (float64 for float64
input). Options are static Python values: close over them (``functools.partial``) under
``jax.jit``.

Same formulas as auraloss, ``eps`` (default 1e-8) included, so values and gradients stay
finite on silence and on identical signals, as auraloss's do: every ratio has ``eps`` in its
denominator and every log an ``eps`` in its argument; only ``log_cosh_loss`` overflows
(``cosh`` of a difference beyond about 89 in float32), as auraloss's does. The SNR-type losses
return the negative ratio in dB (lower is better).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaudio.losses._common import check_pair, check_reduction, keep_rows, reduce, zero_rows

__all__ = ["esr_loss", "dc_loss", "log_cosh_loss", "snr_loss", "si_sdr_loss", "sd_sdr_loss"]


def _prepare(prediction, target, reduction, valid, fname, zero_mean=False):
    """The checked pair (rows left out by ``valid`` zeroed, so that nothing of theirs, not even
    a NaN, reaches the values or the gradients) and the ``[B]`` mask."""
    check_reduction(reduction, fname)
    p, t = check_pair(prediction, target, fname)
    keep = keep_rows(valid, p.shape[0], fname)
    p, t = zero_rows(p, keep), zero_rows(t, keep)
    if zero_mean:
        p = p - jnp.mean(p, axis=-1, keepdims=True)
        t = t - jnp.mean(t, axis=-1, keepdims=True)
    return p, t, keep


def esr_loss(prediction, target, *, eps: float = 1e-8, reduction: str = "mean",
             valid=None) -> jax.Array:
    """Error-to-signal ratio ``sum((t - p)**2) / (sum(t**2) + eps)`` per signal (auraloss's
    ``ESRLoss``; Wright & Valimaki 2019). Shapes and reduction: see the module.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.esr_loss(0.5 * target, target)), 3)  # |0.5 t|**2 / |t|**2
        0.25
        >>> losses.esr_loss(0.5 * target, target, reduction="none").shape  # one value per signal
        (2,)
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "esr_loss")
    per = jnp.sum((t - p) ** 2, axis=-1) / (jnp.sum(t**2, axis=-1) + eps)
    return reduce(per, reduction, keep)


def dc_loss(prediction, target, *, eps: float = 1e-8, reduction: str = "mean",
            valid=None) -> jax.Array:
    """DC error ``mean(t - p)**2 / (mean(t**2) + eps)`` per signal (auraloss's ``DCLoss``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.dc_loss(target + 0.1, target)), 3)  # 0.1**2 / mean(t**2)
        0.02
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "dc_loss")
    per = jnp.mean(t - p, axis=-1) ** 2 / (jnp.mean(t**2, axis=-1) + eps)
    return reduce(per, reduction, keep)


def log_cosh_loss(prediction, target, *, a: float = 1.0, eps: float = 1e-8,
                  reduction: str = "mean", valid=None) -> jax.Array:
    """``mean(log(cosh(a * (p - t)) + eps) / a)`` per signal (auraloss's ``LogCoshLoss``;
    ``a`` is the smoothness, smaller is smoother).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.log_cosh_loss(0.5 * target, target)), 3)
        0.061
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "log_cosh_loss")
    per = jnp.mean((1 / a) * jnp.log(jnp.cosh(a * (p - t)) + eps), axis=-1)
    return reduce(per, reduction, keep)


def _neg_db(signal_energy, residual_energy, eps) -> jax.Array:
    """``-10 log10(signal / (residual + eps) + eps)``: auraloss's SNR-type ratio, negated."""
    return -10 * jnp.log10(signal_energy / (residual_energy + eps) + eps)


def snr_loss(prediction, target, *, zero_mean: bool = True, eps: float = 1e-8,
             reduction: str = "mean", valid=None) -> jax.Array:
    """Negative SNR in dB, ``-10 log10(sum(t**2) / (sum((p - t)**2) + eps) + eps)`` per signal,
    after removing each signal's mean when ``zero_mean`` (auraloss's ``SNRLoss``).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> hum = 0.1 * jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4800) / 24000)  # 20 dB below
        >>> round(float(losses.snr_loss(target + hum, target)), 2)  # dB: an SNR of 20 dB, negated
        -20.0
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "snr_loss", zero_mean)
    per = _neg_db(jnp.sum(t**2, axis=-1), jnp.sum((p - t) ** 2, axis=-1), eps)
    return reduce(per, reduction, keep)


def _alpha(p, t, eps) -> jax.Array:
    """The optimal scale of the target, ``<p, t> / (|t|**2 + eps)``, ``[..., 1]``."""
    return (jnp.sum(p * t, axis=-1) / (jnp.sum(t**2, axis=-1) + eps))[..., None]


def si_sdr_loss(prediction, target, *, zero_mean: bool = True, eps: float = 1e-8,
                reduction: str = "mean", valid=None) -> jax.Array:
    """Negative scale-invariant SDR in dB (auraloss's ``SISDRLoss``; Le Roux et al. 2018):
    with ``s = alpha t``, ``alpha = <p, t> / (|t|**2 + eps)``, the value is
    ``-10 log10(|s|**2 / (|p - s|**2 + eps) + eps)`` per signal.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> hum = 0.1 * jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4800) / 24000)  # 20 dB below
        >>> round(float(losses.si_sdr_loss(0.5 * target + hum, target)), 2)  # dB, gain ignored
        -13.98
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "si_sdr_loss", zero_mean)
    s = t * _alpha(p, t, eps)
    per = _neg_db(jnp.sum(s**2, axis=-1), jnp.sum((p - s) ** 2, axis=-1), eps)
    return reduce(per, reduction, keep)


def sd_sdr_loss(prediction, target, *, zero_mean: bool = True, eps: float = 1e-8,
                reduction: str = "mean", valid=None) -> jax.Array:
    """Negative scale-dependent SDR in dB (auraloss's ``SDSDRLoss``): the scaled target's
    energy over the unscaled residual, ``-10 log10(|alpha t|**2 / (|p - t|**2 + eps) + eps)``.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> hum = 0.1 * jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4800) / 24000)  # 20 dB below
        >>> round(float(losses.sd_sdr_loss(0.5 * target + hum, target)), 2)  # dB, gain counted
        0.17
    """
    p, t, keep = _prepare(prediction, target, reduction, valid, "sd_sdr_loss", zero_mean)
    s = t * _alpha(p, t, eps)
    per = _neg_db(jnp.sum(s**2, axis=-1), jnp.sum((p - t) ** 2, axis=-1), eps)
    return reduce(per, reduction, keep)
