"""The training objective as named terms: one registry, weights keyed by the same names.

Each term is a pure function of a :class:`LossInputs` (the decoded output, the audio it is
compared with, the output latents) returning a scalar. The total is ``sum(weight[name] *
term[name])`` over the config's ``{name: weight}`` mapping (see
:meth:`jaxaudio.training.config.TrainConfig.loss_weights`); every term is logged under its
name. Terms that come from elsewhere (an agent's losses, the GAN's generator loss) are added by
name the same way, so the weights of all of them live in one mapping.

Adding a term is one function and one :func:`register_loss` call; its weight is then set with
``--loss_weights NAME=W`` (and, for a default other than 0, one entry in the config's default
weights). The audio terms are the original's (:func:`jaxaudio.training.losses.combined_loss`
gives the same numbers) plus its fixed 0.01 spectral outlier penalty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from jaxaudio.dsp import as_mono_batch
from jaxaudio.training import losses as L
from jaxaudio.training.penalties import modulation_correlation_penalty, spectral_outlier_penalty


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
    _specs: dict = field(default_factory=dict, repr=False)

    @classmethod
    def from_audio(cls, output, input, target, *, output_latent=None, valid=None) -> "LossInputs":
        out = as_mono_batch(output, "output")
        n = min(out.shape[-1], input.shape[-1], target.shape[-1])
        return cls(out[..., :n].astype(jnp.float32),
                   as_mono_batch(input, "input")[..., :n].astype(jnp.float32),
                   as_mono_batch(target, "target")[..., :n].astype(jnp.float32),
                   output_latent, valid)

    def spec(self, which: str) -> "L._SpecCache":
        if which not in self._specs:
            self._specs[which] = L._SpecCache(getattr(self, which))
        return self._specs[which]


@dataclass(frozen=True)
class LossTerm:
    """``fn(inputs) -> scalar``; ``validation``: part of the validation loss (the original's
    validation loss is its combined audio loss, without the outlier penalty)."""

    name: str
    fn: Callable[[LossInputs], jax.Array]
    doc: str
    validation: bool = True


LOSS_TERMS: dict[str, LossTerm] = {}
# Terms computed outside this module and added by name (their weights live in the same
# mapping): the GAN's here, every agent's in its registry entry (``AgentSpec.loss_names``).
EXTERNAL_TERMS: dict[str, str] = {"gan_loss": "the latent GAN's generator loss"}


def register_loss(name: str, fn: Callable[[LossInputs], jax.Array], doc: str, *,
                  validation: bool = True) -> LossTerm:
    if name in known_terms():
        raise ValueError(f"a loss term named {name!r} exists already")
    LOSS_TERMS[name] = LossTerm(name, fn, doc, validation)
    return LOSS_TERMS[name]


def known_terms() -> tuple[str, ...]:
    """Every name a loss weight may have: registered terms, the GAN's, the agents' losses."""
    from jaxaudio.agents.registry import agents

    names = list(LOSS_TERMS) + list(EXTERNAL_TERMS)
    for spec in agents().values():
        names += [n for n in spec.loss_names if n not in names]
    return tuple(names)


_RES = L._resolutions(L.DEFAULT_FFT_SIZES, L.DEFAULT_HOP_SIZES, L.DEFAULT_WIN_SIZES)
_MEL = (24000, 1024, 80, 256, 0.0, 8000.0)


def _rows(x: LossInputs):
    return None if x.valid is None else L._weights(x.valid, x.output.shape[0])


register_loss("rms_input", lambda x: L.rms_loss(x.output, x.input, valid=_rows(x)),
              "RMS of (output - input)")
register_loss("rms_target", lambda x: L.rms_loss(x.output, x.target, valid=_rows(x)),
              "RMS of (output - target)")
register_loss("spectral", lambda x: 0.5 * (
    L._stft_distance(x.spec("output"), x.spec("input"), _RES, _rows(x))
    + L._stft_distance(x.spec("output"), x.spec("target"), _RES, _rows(x))),
    "multi-resolution STFT loss against input and target, averaged")
register_loss("mel", lambda x: 0.5 * (
    L._mel_distance(x.spec("output"), x.spec("input"), _MEL, _rows(x))
    + L._mel_distance(x.spec("output"), x.spec("target"), _MEL, _rows(x))),
    "log-mel L1 against input and target, averaged")
register_loss("corr_penalty", lambda x: modulation_correlation_penalty(
    x.input, x.target, x.output, m_parts=250, valid=_rows(x)),
    "anti-modulation envelope-correlation penalty")
register_loss("spectral_penalty", lambda x: spectral_outlier_penalty(x.output),
              "spectral outlier penalty (the original's fixed weight 0.01)", validation=False)


def _static(w) -> float | None:
    return L._static_weight(w)


def compute_terms(inputs: LossInputs, weights: Mapping[str, float], *,
                  names: tuple[str, ...] | None = None) -> dict[str, jax.Array]:
    """Each registered term (of ``names``, default all) whose weight is not a static 0; the
    others are 0 (not computed), as the original reports a switched-off component."""
    out = {}
    for name in (tuple(LOSS_TERMS) if names is None else [n for n in names if n in LOSS_TERMS]):
        w = weights.get(name, 0.0)
        s = _static(w)
        out[name] = (jnp.zeros((), jnp.float32) if s is not None and not s > 0
                     else LOSS_TERMS[name].fn(inputs).astype(jnp.float32))
    return out


def weighted_total(terms: Mapping[str, jax.Array], weights: Mapping[str, float]) -> jax.Array:
    """``sum(weights[name] * terms[name])`` over the terms present (a term without a weight
    counts 0; a static weight 0 adds nothing, so a NaN in a switched-off term cannot leak)."""
    total = jnp.zeros((), jnp.float32)
    for name, value in terms.items():
        w = weights.get(name, 0.0)
        s = _static(w)
        if s is not None:
            if s > 0:
                total = total + s * value
        else:
            total = total + jnp.where(w > 0, w * value, 0.0)
    return total


def validation_terms() -> tuple[str, ...]:
    return tuple(n for n, t in LOSS_TERMS.items() if t.validation)
