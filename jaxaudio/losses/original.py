"""The original's training losses (``training/losses.py`` and ``correlation_penalty.py``) as pure
JAX functions, and the objective built from them as named terms.

Same formulas as the original, quirks included (they are what the fixtures measure): spectral
convergence is taken over the whole batch with ``+ 1e-6`` in the denominator, and the L1 terms
have derivative 0 where the two sides are equal (torch's ``abs``). The two penalties live in
:mod:`jaxaudio.losses.penalties` and the spectra they share in
:mod:`jaxaudio.losses.original_spectra`; both are re-exported here.

Audio is ``[B, N]`` or ``[B, 1, N]`` (mono); every loss returns a scalar computed in float32
(float64 for float64 input), whatever the input dtype. All work under ``jax.jit``, ``jax.grad``
and ``jax.vmap`` (over a leading axis of batches), and their gradients are finite on a silent
prediction, a silent target and identical inputs: square roots and ``|STFT|`` have derivative 0
at 0, as torch defines for ``abs`` and ``norm``.

The objective is a set of named terms, each a function of one :class:`LossInputs` (the output,
input and target audio and their STFTs, computed once); :data:`AUDIO_TERMS` are the
original's. :func:`evaluate_terms` and :func:`weighted_total` compute and sum them with a
``{name: weight}`` mapping; :func:`combined_loss` (the original's objective) and the train step
(through :mod:`jaxaudio.training.objective`, which registers the terms by name) both use them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from jaxaudio.dsp import as_mono_batch, safe_sqrt
from jaxaudio.losses.penalties import spectral_outlier_penalty
from jaxaudio.losses.penalties import \
    original_modulation_correlation_penalty as modulation_correlation_penalty
from jaxaudio.losses.original_spectra import (  # noqa: F401
    LOG_EPS,
    SC_EPS,
    SpecCache,
    mean_rows,
    mel_distance,
    resolutions,
    row_weights,
    rows,
    stft_distance,
)

__all__ = [
    "rms_loss",
    "stft_loss",
    "mel_loss",
    "spectral_outlier_penalty",
    "modulation_correlation_penalty",
    "combined_loss",
    "CombinedLoss",
    "LossInputs",
    "AUDIO_TERMS",
    "evaluate_terms",
    "weighted_total",
]

DEFAULT_FFT_SIZES = (512, 1024, 2048)
DEFAULT_HOP_SIZES = (128, 256, 512)
DEFAULT_WIN_SIZES = (512, 1024, 2048)
DEFAULT_MEL = (24000, 1024, 80, 256, 0.0, 8000.0)  # sample rate, n_fft, mels, hop, fmin, fmax


def _pair(a, b, names: tuple[str, str]) -> tuple[jax.Array, jax.Array]:
    a, b = as_mono_batch(a, names[0]), as_mono_batch(b, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} {a.shape} and {names[1]} {b.shape} must have equal shapes")
    dt = jnp.promote_types(a.dtype, b.dtype)
    return a.astype(dt), b.astype(dt)


def rms_loss(output: jax.Array, target: jax.Array, *, valid: jax.Array | None = None) -> jax.Array:
    """``sqrt(mean((output - target)**2))`` over every element.

    Args:
        output, target: audio ``[B, N]`` or ``[B, 1, N]``.
        valid: optional ``[B]`` 0/1 weights; the loss is then that of the rows marked 1 alone
            (the losses of a padded last batch, as if it were not padded).

    Returns a scalar. Unlike torch (NaN), the gradient at ``output == target`` is 0.

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.rms_loss(0.5 * target, target)), 3)  # 0.5 / sqrt(2)
        0.354
    """
    o, t = _pair(output, target, ("output", "target"))
    d = o - t
    return safe_sqrt(mean_rows(d * d, row_weights(valid, o.shape[0])))


# --- multi-resolution STFT and mel -------------------------------------------------------


def stft_loss(
    y_pred: jax.Array,
    y_target: jax.Array,
    *,
    fft_sizes: Sequence[int] = DEFAULT_FFT_SIZES,
    hop_sizes: Sequence[int] = DEFAULT_HOP_SIZES,
    win_sizes: Sequence[int] = DEFAULT_WIN_SIZES,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Multi-resolution STFT loss: spectral convergence plus mean log-magnitude L1.

    Per resolution ``||P - T||_F / (||T||_F + 1e-6)`` over the whole batch ``[B, F, T]`` plus
    ``mean|log(P + 1e-5) - log(T + 1e-5)|``, averaged over resolutions (``P``, ``T`` are
    ``|STFT|`` with a periodic Hann window, centred, reflect padding). A silent target makes the
    convergence term huge (``||P||_F / 1e-6``), as in the original.

    Args:
        y_pred, y_target: audio ``[B, N]`` or ``[B, 1, N]``.
        fft_sizes, hop_sizes, win_sizes: static; samples, an int each or equal-length tuples
            (default ``(512, 1024, 2048)``, ``(128, 256, 512)``, ``(512, 1024, 2048)``).
        valid: optional ``[B]`` 0/1 weights (see :func:`rms_loss`).

    Options are keyword-only here; ``jaxaudio.training.losses.stft_loss`` also takes them by
    position (the original's signature).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.stft_loss(0.5 * target, target)), 3)
        1.084
    """
    res = resolutions(fft_sizes, hop_sizes, win_sizes)
    p, t = _pair(y_pred, y_target, ("y_pred", "y_target"))
    return stft_distance(SpecCache(p), SpecCache(t), res, row_weights(valid, p.shape[0]))


def mel_loss(
    y_pred: jax.Array,
    y_target: jax.Array,
    *,
    sample_rate: float = 24000,
    n_fft: int = 1024,
    n_mels: int = 80,
    hop_length: int = 256,
    fmin: float = 0.0,
    fmax: float | None = 8000.0,
    valid: jax.Array | None = None,
) -> jax.Array:
    """Mean L1 distance of log mel spectrograms, ``log(mel + 1e-5)``.

    The mel spectrogram is torchaudio's ``MelSpectrogram`` (power 2, ``win_length = n_fft``,
    HTK scale, no normalisation); ``fmax`` None means ``sample_rate / 2``.

    Args:
        y_pred, y_target: audio ``[B, N]`` or ``[B, 1, N]``.
        sample_rate, n_fft, n_mels, hop_length, fmin, fmax: static options (``sample_rate``,
            ``fmin`` and ``fmax`` in Hz), keyword-only here
            (``jaxaudio.training.losses.mel_loss`` takes them by position too).
        valid: optional ``[B]`` 0/1 weights (see :func:`rms_loss`).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> round(float(losses.mel_loss(0.5 * target, target)), 3)  # 24 kHz, 80 bands up to 8 kHz
        0.676
    """
    p, t = _pair(y_pred, y_target, ("y_pred", "y_target"))
    mel_args = (sample_rate, n_fft, n_mels, hop_length, fmin, fmax)
    return mel_distance(SpecCache(p), SpecCache(t), mel_args, row_weights(valid, p.shape[0]))


# --- the objective as named terms ---------------------------------------------------------


@dataclass
class LossInputs:
    """What the terms see: ``output``, ``input``, ``target`` audio ``[B, N]`` (equal lengths),
    ``output_latent [B, D, T]``, ``valid`` (``[B]`` 0/1 row weights, or None). STFTs are
    computed once per signal and resolution and shared by every term."""

    output: jax.Array
    input: jax.Array
    target: jax.Array
    output_latent: jax.Array | None = None
    valid: jax.Array | None = None
    sample_rate: float = DEFAULT_MEL[0]
    _specs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_audio(cls, output, input, target, *, output_latent=None, valid=None) -> "LossInputs":
        """float32 mono audio cut to the shortest of the three (a codec's decode may be a few
        samples longer than the clip)."""
        out = as_mono_batch(output, "output")
        n = min(out.shape[-1], input.shape[-1], target.shape[-1])
        return cls(out[..., :n].astype(jnp.float32),
                   as_mono_batch(input, "input")[..., :n].astype(jnp.float32),
                   as_mono_batch(target, "target")[..., :n].astype(jnp.float32),
                   output_latent, valid)

    def spec(self, which: str) -> SpecCache:
        if which not in self._specs:
            self._specs[which] = SpecCache(getattr(self, which))
        return self._specs[which]

    def rows(self) -> jax.Array | None:
        return None if self.valid is None else row_weights(self.valid, self.output.shape[0])


_RES = resolutions(DEFAULT_FFT_SIZES, DEFAULT_HOP_SIZES, DEFAULT_WIN_SIZES)


def _both(distance, x: LossInputs, args) -> jax.Array:
    """The average of ``distance`` between the output and the input and the target."""
    w = x.rows()
    return 0.5 * (distance(x.spec("output"), x.spec("input"), args, w)
                  + distance(x.spec("output"), x.spec("target"), args, w))


#: The original's audio terms by name (:func:`combined_loss`'s components, in its order).
AUDIO_TERMS: dict[str, Callable[[LossInputs], jax.Array]] = {
    "rms_input": lambda x: rms_loss(x.output, x.input, valid=x.rows()),
    "rms_target": lambda x: rms_loss(x.output, x.target, valid=x.rows()),
    "spectral": lambda x: _both(stft_distance, x, _RES),
    "mel": lambda x: _both(mel_distance, x, (x.sample_rate,) + DEFAULT_MEL[1:]),
    "corr_penalty": lambda x: modulation_correlation_penalty(
        x.input, x.target, x.output, m_parts=250, valid=x.rows()),
}


def static_weight(w) -> float | None:
    """The weight as a Python float when it is known at trace time, else None."""
    if isinstance(w, getattr(jax.core, "Tracer", ())):
        return None
    try:
        return float(w)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def evaluate_terms(inputs: LossInputs, terms: Mapping[str, Callable[[LossInputs], jax.Array]],
                   weights: Mapping[str, float], dtype=jnp.float32) -> dict[str, jax.Array]:
    """Each of ``terms`` whose weight is not known to be <= 0 at trace time (a Python number,
    NumPy or concrete JAX scalar); the others are 0, not computed, as the original reports a
    switched-off component. A traced weight is always computed."""
    out = {}
    for name, fn in terms.items():
        s = static_weight(weights.get(name, 0.0))
        out[name] = (jnp.zeros((), dtype) if s is not None and not s > 0
                     else fn(inputs).astype(dtype))
    return out


def weighted_total(terms: Mapping[str, jax.Array], weights: Mapping[str, float],
                   dtype=jnp.float32) -> jax.Array:
    """``sum(weights[name] * terms[name])`` over the terms present (a term without a weight
    counts 0; a static weight <= 0 adds nothing, so a NaN in a switched-off term cannot leak;
    a traced weight <= 0 adds 0)."""
    total = jnp.zeros((), dtype)
    for name, value in terms.items():
        w = weights.get(name, 0.0)
        s = static_weight(w)
        if s is not None:
            if s > 0:
                total = total + s * value
        else:
            total = total + jnp.where(w > 0, w * value, 0.0)
    return total


class CombinedLoss(NamedTuple):
    """Scalars of :func:`combined_loss`, in the original's return order.

    Examples:
        >>> from jaxaudio import losses
        >>> losses.CombinedLoss._fields
        ('total', 'rms_input', 'rms_target', 'spectral', 'mel', 'corr_penalty')
    """

    total: jax.Array
    rms_input: jax.Array
    rms_target: jax.Array
    spectral: jax.Array
    mel: jax.Array
    corr_penalty: jax.Array


def _combined_inputs(output_audio, input_audio, target_audio, valid, sample_rate):
    """The three signals as ``[B, N]`` of one dtype, checked, in a :class:`LossInputs`."""
    out = as_mono_batch(output_audio, "output_audio")
    inp = as_mono_batch(input_audio, "input_audio")
    tgt = as_mono_batch(target_audio, "target_audio")
    if not out.shape == inp.shape == tgt.shape:
        raise ValueError(
            f"combined_loss: output {out.shape}, input {inp.shape} and target {tgt.shape} "
            "must have equal shapes"
        )
    dt = jnp.promote_types(jnp.promote_types(out.dtype, inp.dtype), tgt.dtype)
    return LossInputs(out.astype(dt), inp.astype(dt), tgt.astype(dt),
                      valid=row_weights(valid, out.shape[0]), sample_rate=sample_rate), dt


def combined_loss(
    output_audio: jax.Array, input_audio: jax.Array, target_audio: jax.Array,
    weight_input, weight_target, weight_spectral, weight_mel, weight_correlation=0.0,
    *,
    valid: jax.Array | None = None,
    sample_rate: float = DEFAULT_MEL[0],
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
        sample_rate: static; Hz, which places the mel term's bands (default 24000, the
            original's; its ``fmax``, 8000 Hz, must not exceed ``sample_rate / 2``).

    Returns:
        :class:`CombinedLoss` ``(total, rms_input, rms_target, spectral, mel, corr_penalty)``.
        ``total`` is NaN when the output holds a NaN or an infinity (``corr_penalty`` alone
        keeps the original's NaN-to-0 guard).

    Examples:
        >>> import jax.numpy as jnp
        >>> from jaxaudio import losses
        >>> hz = jnp.array([[440.0], [660.0]])
        >>> target = jnp.sin(2 * jnp.pi * hz * jnp.arange(4800) / 24000)  # [B, N]: 0.2 s at 24 kHz
        >>> hum = 0.1 * jnp.sin(2 * jnp.pi * 1000 * jnp.arange(4800) / 24000)  # 20 dB below
        >>> out = losses.combined_loss(0.5 * target, target + hum, target, 1.0, 1.0, 0.5, 0.5, 0.1)
        >>> round(float(out.total), 3), round(float(out.rms_target), 3)
        (1.928, 0.354)
    """
    inputs, dt = _combined_inputs(output_audio, input_audio, target_audio, valid, sample_rate)
    weights = dict(zip(AUDIO_TERMS, (weight_input, weight_target, weight_spectral, weight_mel,
                                     weight_correlation)))
    fields = evaluate_terms(inputs, AUDIO_TERMS, weights, dt)
    total = weighted_total(fields, weights, dt)
    # a traced weight <= 0 reports its computed component as 0, as a static one does
    fields = {k: v if static_weight(weights[k]) is not None
              else jnp.where(jnp.asarray(weights[k], dt) > 0, v, 0) for k, v in fields.items()}
    # The correlation penalty reads a NaN output as 0 (the original's guard); the total must
    # not: a non-finite output (in the rows that count) makes it NaN whatever the weights.
    finite = jnp.all(jnp.isfinite(rows(inputs.output, inputs.valid)))
    total = jnp.where(finite, total, jnp.asarray(jnp.nan, dt))
    return CombinedLoss(total=total, **fields)
