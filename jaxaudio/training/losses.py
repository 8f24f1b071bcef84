"""The original's training losses (``training/losses.py`` and ``correlation_penalty.py``) as pure
JAX functions; the two penalties live in :mod:`jaxaudio.training.penalties` and are re-exported.

Same formulas as the original, quirks included (they are what the fixtures measure): spectral
convergence is taken over the whole batch with ``+ 1e-6`` in the denominator, and the L1 terms
have derivative 0 where the two sides are equal (torch's ``abs``).

Audio is ``[B, N]`` or ``[B, 1, N]`` (mono); every loss returns a scalar computed in float32
(float64 for float64 input), whatever the input dtype. All work under ``jax.jit``, ``jax.grad``
and ``jax.vmap`` (over a leading axis of batches), and their gradients are finite on a silent
prediction, a silent target and identical inputs: square roots and ``|STFT|`` have derivative 0
at 0, as torch defines for ``abs`` and ``norm``.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxaudio.dsp import as_mono_batch, magnitude, mel_from_stft, safe_sqrt, stft_frames
from jaxaudio.training.penalties import modulation_correlation_penalty, spectral_outlier_penalty

__all__ = [
    "rms_loss",
    "stft_loss",
    "mel_loss",
    "spectral_outlier_penalty",
    "modulation_correlation_penalty",
    "combined_loss",
    "CombinedLoss",
]

LOG_EPS = 1e-5  # inside log(|X| + eps) and log(mel + eps)
SC_EPS = 1e-6  # spectral convergence denominator
DEFAULT_FFT_SIZES = (512, 1024, 2048)
DEFAULT_HOP_SIZES = (128, 256, 512)
DEFAULT_WIN_SIZES = (512, 1024, 2048)


def _pair(a, b, names: tuple[str, str]) -> tuple[jax.Array, jax.Array]:
    a, b = as_mono_batch(a, names[0]), as_mono_batch(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must have equal shapes")
    dt = jnp.promote_types(a.dtype, b.dtype)
    return a.astype(dt), b.astype(dt)


def _rows(x: jax.Array, w: jax.Array | None) -> jax.Array:
    """``x [B, ...]`` with the rows of weight 0 zeroed (no weights: ``x``)."""
    if w is None:
        return x
    keep = w.reshape((-1,) + (1,) * (x.ndim - 1)) > 0
    return jnp.where(keep, x, jnp.zeros((), x.dtype))


def _mean(x: jax.Array, w: jax.Array | None) -> jax.Array:
    """Mean over every element of the rows of weight 1 (``w`` is ``[B]`` of 0/1, or None)."""
    if w is None:
        return jnp.mean(x)
    per_row = x[0].size
    return jnp.sum(_rows(x, w)) / (jnp.maximum(jnp.sum(w), 1).astype(x.dtype) * per_row)


def _weights(valid, batch: int) -> jax.Array | None:
    if valid is None:
        return None
    w = jnp.asarray(valid)
    if w.shape != (batch,):
        raise ValueError(f"valid must be a [B] = [{batch}] array of 0/1 weights, got {w.shape}")
    return w


def _fro(x: jax.Array) -> jax.Array:
    return safe_sqrt(jnp.sum(x * x))


def rms_loss(output: jax.Array, target: jax.Array, *, valid: jax.Array | None = None) -> jax.Array:
    """``sqrt(mean((output - target)**2))`` over every element.

    Args:
        output, target: audio ``[B, N]`` or ``[B, 1, N]``.
        valid: optional ``[B]`` 0/1 weights; the loss is then that of the rows marked 1 alone
            (the losses of a padded last batch, as if it were not padded).

    Returns a scalar. Unlike torch (NaN), the gradient at ``output == target`` is 0.
    """
    o, t = _pair(output, target, ("output", "target"))
    d = o - t
    return safe_sqrt(_mean(d * d, _weights(valid, o.shape[0])))


# --- multi-resolution STFT ------------------------------------------------------------------


def _resolutions(fft_sizes, hop_sizes, win_sizes) -> tuple[tuple[int, int, int], ...]:
    fft_sizes, hop_sizes, win_sizes = tuple(fft_sizes), tuple(hop_sizes), tuple(win_sizes)
    if not (len(fft_sizes) == len(hop_sizes) == len(win_sizes)) or not fft_sizes:
        raise ValueError(
            "stft_loss: fft_sizes, hop_sizes and win_sizes must be non-empty and of equal length, "
            f"got {fft_sizes}, {hop_sizes}, {win_sizes}"
        )
    return tuple((int(f), int(h), int(w)) for f, h, w in zip(fft_sizes, hop_sizes, win_sizes))


class _SpecCache:
    """STFTs of one signal, computed once per (n_fft, hop, win) and shared between the
    STFT and mel losses (the mel default n_fft=1024, hop=256 is also an STFT resolution)."""

    def __init__(self, x: jax.Array):
        self.x = x
        self._stft: dict[tuple[int, int, int], jax.Array] = {}
        self._logmag: dict[tuple[int, int, int], tuple[jax.Array, jax.Array]] = {}
        self._logmel: dict[tuple, jax.Array] = {}

    def stft(self, res: tuple[int, int, int]) -> jax.Array:
        if res not in self._stft:
            self._stft[res] = stft_frames(self.x, res[0], res[1], res[2])
        return self._stft[res]

    def mag_logmag(self, res: tuple[int, int, int]) -> tuple[jax.Array, jax.Array]:
        if res not in self._logmag:
            mag = magnitude(self.stft(res))
            self._logmag[res] = (mag, jnp.log(mag + LOG_EPS))
        return self._logmag[res]

    def logmel(self, sample_rate, n_fft, n_mels, hop_length, fmin, fmax) -> jax.Array:
        key = (sample_rate, n_fft, n_mels, hop_length, fmin, fmax)
        if key not in self._logmel:
            z = self.stft((int(n_fft), int(hop_length), int(n_fft)))
            mel = mel_from_stft(z, sample_rate, n_fft, n_mels, fmin, fmax)
            self._logmel[key] = jnp.log(mel + LOG_EPS)
        return self._logmel[key]


def _stft_distance(pred: _SpecCache, target: _SpecCache, resolutions, w=None) -> jax.Array:
    sc_sum = 0.0
    lm_sum = 0.0
    for res in resolutions:
        mp, lp = pred.mag_logmag(res)
        mt, lt = target.mag_logmag(res)
        sc_sum = sc_sum + _fro(_rows(mp - mt, w)) / (_fro(_rows(mt, w)) + SC_EPS)
        lm_sum = lm_sum + _mean(magnitude(lp - lt), w)
    return (sc_sum + lm_sum) / len(resolutions)


def stft_loss(
    y_pred: jax.Array,
    y_target: jax.Array,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    hop_sizes: Sequence[int] = DEFAULT_HOP_SIZES,
    win_sizes: Sequence[int] = DEFAULT_WIN_SIZES,
    *,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Multi-resolution STFT loss: spectral convergence plus mean log-magnitude L1.

    Per resolution ``||P - T||_F / (||T||_F + 1e-6)`` over the whole batch ``[B, F, T]`` plus
    ``mean|log(P + 1e-5) - log(T + 1e-5)|``, averaged over resolutions (``P``, ``T`` are
    ``|STFT|`` with a periodic Hann window, centred, reflect padding). A silent target makes the
    convergence term huge (``||P||_F / 1e-6``), as in the original.

    Args:
        y_pred, y_target: audio ``[B, N]`` or ``[B, 1, N]``.
        valid: optional ``[B]`` 0/1 weights (see :func:`rms_loss`).
    """
    resolutions = _resolutions(fft_sizes, hop_sizes, win_sizes)
    p, t = _pair(y_pred, y_target, ("y_pred", "y_target"))
    return _stft_distance(_SpecCache(p), _SpecCache(t), resolutions, _weights(valid, p.shape[0]))


def _mel_distance(pred: _SpecCache, target: _SpecCache, mel_args: tuple, w=None) -> jax.Array:
    return _mean(magnitude(pred.logmel(*mel_args) - target.logmel(*mel_args)), w)


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
    """Mean L1 distance of log mel spectrograms, ``log(mel + 1e-5)``.

    The mel spectrogram is torchaudio's ``MelSpectrogram`` (power 2, ``win_length = n_fft``,
    HTK scale, no normalisation); ``fmax`` None means ``sample_rate / 2``.

    Args:
        y_pred, y_target: audio ``[B, N]`` or ``[B, 1, N]``.
        valid: optional ``[B]`` 0/1 weights (see :func:`rms_loss`).
    """
    p, t = _pair(y_pred, y_target, ("y_pred", "y_target"))
    mel_args = (sample_rate, n_fft, n_mels, hop_length, fmin, fmax)
    return _mel_distance(_SpecCache(p), _SpecCache(t), mel_args, _weights(valid, p.shape[0]))


# --- the training objective -------------------------------------------------------------------


class CombinedLoss(NamedTuple):
    """Scalars of :func:`combined_loss`, in the original's return order."""

    total: jax.Array
    rms_input: jax.Array
    rms_target: jax.Array
    spectral: jax.Array
    mel: jax.Array
    corr_penalty: jax.Array


def _static_weight(w) -> float | None:
    """The weight as a Python float when it is known at trace time, else None."""
    if isinstance(w, getattr(jax.core, "Tracer", ())):
        return None
    try:
        return float(w)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def combined_loss(
    output_audio: jax.Array,
    input_audio: jax.Array,
    target_audio: jax.Array,
    weight_input,
    weight_target,
    weight_spectral,
    weight_mel,
    weight_correlation=0.0,
    *,
    valid: jax.Array | None = None,
) -> CombinedLoss:
    """The original's training objective.

    ``total = w_in * RMS(out, in) + w_tg * RMS(out, tg) + w_spec * spectral + w_mel * mel
    + w_corr * corr_penalty`` where ``spectral = (stft_loss(out, in) + stft_loss(out, tg)) / 2``
    and ``mel = (mel_loss(out, in) + mel_loss(out, tg)) / 2`` (default options), and
    ``corr_penalty = modulation_correlation_penalty(in, tg, out, m_parts=250)``.

    A component whose weight is known at trace time (a Python number, NumPy or concrete JAX
    scalar) and not positive is not computed: its field is 0, as in the original. A weight
    passed as a traced array (a ``jit`` argument) is always computed; its field is the value
    where the weight is positive and 0 otherwise, so the numbers are the same. The output's
    STFTs are computed once and shared by the input and target comparisons and by the mel
    loss (whose STFT is the 1024/256 resolution).

    Args:
        output_audio, input_audio, target_audio: ``[B, 1, N]`` or ``[B, N]``.
        valid: optional ``[B]`` 0/1 weights: every component is then computed over the rows
            marked 1 alone, exactly as on a batch without the others (the validation's padded
            last batch).

    Returns:
        :class:`CombinedLoss` ``(total, rms_input, rms_target, spectral, mel, corr_penalty)``.
        ``total`` is NaN when the output holds a NaN or an infinity (``corr_penalty`` alone
        keeps the original's NaN-to-0 guard).
    """
    out = as_mono_batch(output_audio, "output_audio")
    inp = as_mono_batch(input_audio, "input_audio")
    tgt = as_mono_batch(target_audio, "target_audio")
    if not out.shape == inp.shape == tgt.shape:
        raise ValueError(
            f"combined_loss: output {out.shape}, input {inp.shape} and target {tgt.shape} "
            "must have equal shapes"
        )
    dt = jnp.promote_types(jnp.promote_types(out.dtype, inp.dtype), tgt.dtype)
    out, inp, tgt = out.astype(dt), inp.astype(dt), tgt.astype(dt)
    rows = _weights(valid, out.shape[0])
    spec_out, spec_in, spec_tg = _SpecCache(out), _SpecCache(inp), _SpecCache(tgt)
    resolutions = _resolutions(DEFAULT_FFT_SIZES, DEFAULT_HOP_SIZES, DEFAULT_WIN_SIZES)
    mel_args = (24000, 1024, 80, 256, 0.0, 8000.0)

    def spectral():
        return 0.5 * (
            _stft_distance(spec_out, spec_in, resolutions, rows)
            + _stft_distance(spec_out, spec_tg, resolutions, rows)
        )

    def mel():
        return 0.5 * (
            _mel_distance(spec_out, spec_in, mel_args, rows)
            + _mel_distance(spec_out, spec_tg, mel_args, rows)
        )

    components = {
        "rms_input": (weight_input, lambda: rms_loss(out, inp, valid=rows)),
        "rms_target": (weight_target, lambda: rms_loss(out, tgt, valid=rows)),
        "spectral": (weight_spectral, spectral),
        "mel": (weight_mel, mel),
        "corr_penalty": (
            weight_correlation,
            lambda: modulation_correlation_penalty(inp, tgt, out, m_parts=250, valid=rows),
        ),
    }
    fields = {}
    total = jnp.zeros((), dt)
    for name, (weight, compute) in components.items():
        static = _static_weight(weight)
        if static is not None and not static > 0:
            fields[name] = jnp.zeros((), dt)
            continue
        value = compute().astype(dt)
        if static is None:
            w = jnp.asarray(weight, dt)
            value = jnp.where(w > 0, value, 0)
            total = total + w * value
        else:
            total = total + static * value
        fields[name] = value
    # The correlation penalty reads a NaN output as 0 (the original's guard); the total must
    # not: a non-finite output (in the rows that count) makes it NaN whatever the weights.
    finite = jnp.all(jnp.isfinite(_rows(out, rows)))
    total = jnp.where(finite, total, jnp.asarray(jnp.nan, dt))
    return CombinedLoss(total=total, **fields)
