"""Where the models' torch-compatible layers used to live; they are now in :mod:`jaxaudio.nn`.

Kept so that ``from jaxaudio.models.layers import MultiheadAttention`` (and the other names
below) keeps working; new code imports from :mod:`jaxaudio.nn`.
"""

from jaxaudio.nn import (
    LayerNorm,
    Linear,
    MultiheadAttention,
    PositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    attention_weights,
    sinusoidal_table,
)

__all__ = [
    "LayerNorm",
    "Linear",
    "MultiheadAttention",
    "PositionalEncoding",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "attention_weights",
    "sinusoidal_table",
]
