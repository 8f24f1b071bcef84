"""The masking creative agent: learned complementary masks over codec latents.

``CreativeAgent.generate_creative_masks`` masks input and target ``[B, D, T]`` latents and
returns the regularisation and balance losses with mask statistics; ``restore_rms`` is the
cascade's per-sample RMS restore after masking; ``evaluate_rhythm_transfer`` measures how the
output's rhythm envelope follows input and target. Variable paths equal the original's torch
names (see :mod:`jaxaudio.agents.masking.agent`).
"""

from jaxaudio.agents.masking.agent import CreativeAgent, MaskingOutput, restore_rms
from jaxaudio.agents.masking.generator import (
    AttentionMaskGenerator,
    MaskGeneratorOutput,
    gumbel_hard_mask,
    mask_regularisers,
)
from jaxaudio.agents.masking.metrics import compute_rhythm_envelope, evaluate_rhythm_transfer
from jaxaudio.agents.masking.style import StyleDiscriminator, adversarial_losses

__all__ = [
    "AttentionMaskGenerator",
    "CreativeAgent",
    "MaskGeneratorOutput",
    "MaskingOutput",
    "StyleDiscriminator",
    "adversarial_losses",
    "compute_rhythm_envelope",
    "evaluate_rhythm_transfer",
    "gumbel_hard_mask",
    "mask_regularisers",
    "restore_rms",
]
