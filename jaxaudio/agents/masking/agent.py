"""The masking creative agent: learned complementary masks plus an optional style discriminator.

Torch names of the variables
----------------------------
Every parameter sits at the NNX path that, joined with dots, is the original's torch
``state_dict`` name, in torch's layout (nothing to transpose): for each ``(path, variable)``
of ``nnx.iter_graph(agent)`` (or ``nnx.to_flat_state(nnx.state(agent, nnx.Param))``) with an
``nnx.Param``, the torch name is ``".".join(map(str, path))``. The original's ``nn.Sequential``
indices are the integer keys of ``nnx.List`` containers (the parameter-free activations hold
the other indices). Under ``SimpleTransformer`` every name gains the prefix ``creative_agent.``.
Example: the path ``('mask_generator', 'input_analyzer', 0, 'weight')`` is
``mask_generator.input_analyzer.0.weight``. All names, with H the hidden width (256 in the
original) and D the encoding dim::

    mask_generator.input_analyzer.0.weight           [H, D, 3]      .bias [H]
    mask_generator.input_analyzer.2.weight           [H, H, 3]      .bias [H]
    mask_generator.target_analyzer.{0,2}.*           as input_analyzer
    mask_generator.cross_attention.in_proj_weight    [3H, H]  (q, k, v stacked)
    mask_generator.cross_attention.in_proj_bias      [3H]
    mask_generator.cross_attention.out_proj.weight   [H, H]         .bias [H]
    mask_generator.input_mask_generator.0.weight     [H/2, H, 3]    .bias [H/2]
    mask_generator.input_mask_generator.2.weight     [D, H/2, 1]    .bias [D]
    mask_generator.target_mask_generator.{0,2}.*     as input_mask_generator
    discriminator.encoder.0.weight                   [H/4, D, 4]    .bias [H/4]
    discriminator.encoder.2.weight                   [H/2, H/4, 4]  .bias [H/2]
    discriminator.encoder.4.weight                   [H, H/2, 4]    .bias [H]
    discriminator.classifier.2.weight                [1, H]         .bias [1]
    discriminator.style_matcher.weight               [1, 2H]        .bias [1]

The agent has no buffers; all its variables are ``nnx.Param``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
from flax import nnx

from jaxaudio.agents.masking.generator import AttentionMaskGenerator
from jaxaudio.agents.contract import AgentOutput
from jaxaudio.agents.masking.style import StyleDiscriminator, adversarial_losses
from jaxaudio.nn import RMS_EPS, sample_rms


class MaskingOutput(NamedTuple):
    """``masked_input``, ``masked_target`` ``[B, D, T]``; scalar ``reg_loss`` and
    ``balance_loss``; ``stats``: scalar statistics of the masks (see
    :func:`~jaxaudio.agents.masking.generator.mask_regularisers`)."""

    masked_input: jax.Array
    masked_target: jax.Array
    reg_loss: jax.Array
    balance_loss: jax.Array
    stats: dict[str, jax.Array]


def restore_rms(masked: jax.Array, reference: jax.Array, eps: float = RMS_EPS) -> jax.Array:
    """Rescale each sample of ``masked`` to the RMS of the same sample of ``reference``.

    ``[B, ...]`` arrays (``[B, D, T]`` in the cascade). The RMS of sample b is
    ``sqrt(mean(x[b]^2) + eps)`` over every axis but the first, as the original's cascade
    computes it after masking (masking removes about half of the energy).
    """
    return masked * (sample_rms(reference, eps) / sample_rms(masked, eps))


class CreativeAgent(nnx.Module):
    """Attention mask generator and (optionally) style discriminator.

    Args:
        encoding_dim: D of the ``[B, D, T]`` latents.
        use_discriminator: build the ``StyleDiscriminator`` (else ``discriminator`` is None).
        attention_dropout: rate on the mask generator's attention probabilities in training
            (the original hard-codes 0.1); ``mask_generator.cross_attention.dropout`` holds it.
        gate: ``"learned"`` (the original's masks), ``"energy"`` (masks that follow the two
            parts' time-frequency energy) or ``"onset"`` (that, and the input's hits); see
            :mod:`jaxaudio.agents.masking.generator`.
    """

    def __init__(self, encoding_dim: int = 128, use_discriminator: bool = True, *,
                 attention_dropout: float = 0.1, gate: str = "learned", rngs: nnx.Rngs):
        self.encoding_dim = encoding_dim
        self.use_discriminator = use_discriminator
        self.mask_generator = AttentionMaskGenerator(
            encoding_dim, attention_dropout=attention_dropout, gate=gate, rngs=rngs)
        self.discriminator = StyleDiscriminator(encoding_dim, rngs=rngs) if use_discriminator \
            else None

    def generate_creative_masks(self, encoded_input: jax.Array, encoded_target: jax.Array,
                                hard: bool = False, *, train: bool = False,
                                rngs: nnx.Rngs | None = None) -> MaskingOutput:
        """Mask ``encoded_input`` and ``encoded_target`` ``[B, D, T]`` with learned masks.

        One mask-generator call gives the masked encodings, the regularisation loss, the
        balance loss and ``stats`` (mask means, overlap, each regulariser part).
        ``hard=True``: Gumbel hard masks (``rngs`` stream ``noise``); ``train=True``: attention
        dropout (``rngs`` stream ``dropout``). No RMS restore here: see :func:`restore_rms`.
        """
        masks = self.mask_generator(encoded_input, encoded_target, hard, train=train, rngs=rngs)
        return MaskingOutput(encoded_input * masks.input_mask, encoded_target * masks.target_mask,
                             masks.reg_loss, masks.balance_loss, masks.stats)

    def process(self, encoded_input: jax.Array, encoded_target: jax.Array, *, train: bool = False,
                rngs: nnx.Rngs | None = None, hard: bool = False) -> AgentOutput:
        """The agent contract (:mod:`jaxaudio.agents.registry`): masked encodings with each
        sample's RMS restored (masking removes about half the energy; the original's cascade
        restores it), losses ``mask_reg_loss`` and ``balance_loss``, the mask statistics."""
        masks = self.generate_creative_masks(encoded_input, encoded_target, hard=hard,
                                             train=train, rngs=rngs)
        stats = {k: v for k, v in masks.stats.items() if k != "balance"}
        return AgentOutput(restore_rms(masks.masked_input, encoded_input),
                           restore_rms(masks.masked_target, encoded_target),
                           {"mask_reg_loss": masks.reg_loss, "balance_loss": masks.balance_loss},
                           stats)

    def _require_discriminator(self) -> StyleDiscriminator:
        if self.discriminator is None:
            raise ValueError("CreativeAgent: the style discriminator is not built; construct "
                             "the agent with use_discriminator=True")
        return self.discriminator

    def judge_quality(self, encoded_pattern: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(real_fake_score, style_score)`` ``[B, 1]`` probabilities for ``[B, D, T]``."""
        return self._require_discriminator()(encoded_pattern)

    def adversarial_loss(self, fake_pattern: jax.Array, real_pattern: jax.Array
                         ) -> tuple[jax.Array, jax.Array]:
        """``(generator_loss, discriminator_loss)`` for generated and real ``[B, D, T]``.

        ``generator_loss = BCE(D(fake), 1)``; ``discriminator_loss = BCE(D(real), 1) +
        BCE(D(fake), 0)``. Gradients reach both the discriminator and the fake pattern; stop
        them on either side as the training step needs.
        """
        discriminator = self._require_discriminator()
        fake_logits, _ = discriminator.logits(fake_pattern)
        real_logits, _ = discriminator.logits(real_pattern)
        return adversarial_losses(fake_logits, real_logits)
