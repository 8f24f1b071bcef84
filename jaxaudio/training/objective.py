"""The training objective as named terms: one registry, weights keyed by the same names.

Each term is a pure function of a :class:`LossInputs` (the decoded output, the audio it is
compared with, the output latents) returning a scalar. The total is ``sum(weight[name] *
term[name])`` over the config's ``{name: weight}`` mapping (see
:meth:`jaxaudio.training.config.TrainConfig.loss_weights`); every term is logged under its
name. Terms that come from elsewhere (an agent's losses, the GAN's generator loss) are added by
name the same way, so the weights of all of them live in one mapping. The original's audio
terms and their weighted sum are :mod:`jaxaudio.training.losses`'
(:data:`~jaxaudio.training.losses.AUDIO_TERMS`), which
:func:`~jaxaudio.training.losses.combined_loss` sums the same way: one objective.

Adding a term is one function and one :func:`register_loss` call; its weight is then set with
``--loss_weights NAME=W`` (and, for a default other than 0, one entry in the config's default
weights). The audio terms are the original's (:func:`jaxaudio.training.losses.combined_loss`
gives the same numbers) plus its fixed 0.01 spectral outlier penalty.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import jax

from jaxaudio.training import losses as L
from jaxaudio.training.losses import LossInputs, weighted_total  # noqa: F401  (re-exported)
from jaxaudio.training.penalties import spectral_outlier_penalty


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


_DOCS = {
    "rms_input": "RMS of (output - input)",
    "rms_target": "RMS of (output - target)",
    "spectral": "multi-resolution STFT loss against input and target, averaged",
    "mel": "log-mel L1 against input and target, averaged",
    "corr_penalty": "anti-modulation envelope-correlation penalty",
}
for _name, _fn in L.AUDIO_TERMS.items():
    register_loss(_name, _fn, _DOCS[_name])
register_loss("spectral_penalty", lambda x: spectral_outlier_penalty(x.output),
              "spectral outlier penalty (the original's fixed weight 0.01)", validation=False)


def compute_terms(inputs: LossInputs, weights: Mapping[str, float], *,
                  names: tuple[str, ...] | None = None) -> dict[str, jax.Array]:
    """Each registered term (of ``names``, default all) whose weight is not a static 0; the
    others are 0 (not computed), as the original reports a switched-off component."""
    chosen = tuple(LOSS_TERMS) if names is None else [n for n in names if n in LOSS_TERMS]
    return L.evaluate_terms(inputs, {n: LOSS_TERMS[n].fn for n in chosen}, weights)


def validation_terms() -> tuple[str, ...]:
    return tuple(n for n, t in LOSS_TERMS.items() if t.validation)
