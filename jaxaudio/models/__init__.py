"""The original's models in Flax NNX: the cascade transformer, its latent discriminator and the
fixed complementary masks. The torch-compatible building blocks re-exported here live in
:mod:`jaxaudio.nn`."""

from jaxaudio.models.complementary_masking import apply_complementary_mask, get_mask_description
from jaxaudio.models.discriminator import AudioDiscriminator, discriminator_loss, generator_loss, roll_targets
from jaxaudio.models.spectral_norm import SpectralNormLinear
from jaxaudio.models.transformer import SimpleTransformer, TransformerOutput
from jaxaudio.nn import MultiheadAttention, PositionalEncoding, TransformerEncoder, TransformerEncoderLayer

__all__ = [
    "AudioDiscriminator",
    "MultiheadAttention",
    "PositionalEncoding",
    "SimpleTransformer",
    "SpectralNormLinear",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "TransformerOutput",
    "apply_complementary_mask",
    "discriminator_loss",
    "generator_loss",
    "get_mask_description",
    "roll_targets",
]
