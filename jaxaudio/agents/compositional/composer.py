"""The component composer: a 512-wide post-norm transformer over the selected components.

``[B, 6 C, T]`` -> linear to ``d_model`` (512) -> + sinusoidal positions -> ``num_layers``
``torch.nn.TransformerEncoderLayer``s (post-norm, packed q/k/v attention, exact GELU, feed-forward
2048, LayerNorm eps 1e-5, dropout 0.1) -> ``Linear(512, 256), GELU, Dropout, Linear(256, D)`` ->
clamp to [-100, 100] -> ``[B, D, T]``.

The layers are :mod:`jaxaudio.nn`'s, which keep torch's layout and names (``Linear.weight`` is
``[out, in]``; ``self_attn.in_proj_weight`` packs q, k, v as ``[3 E, E]``), so a torch state
dict loads by splitting names on ``.``. The positional table (torch's ``pos_encoder.pe``
buffer) is a constant recomputed exactly as torch builds it, not NNX state. As
``nn.TransformerEncoder`` does, the ``num_layers`` encoder layers start from one layer's
weights, deep-copied.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# TransformerEncoder, TransformerEncoderLayer and sinusoidal_table are re-exported: callers
# import them from here.
from jaxaudio.nn import (
    GELU,
    Linear,
    PositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    clamp,
    run_layers,
    sinusoidal_table,
)

__all__ = [
    "COMPOSER_CLAMP", "ComponentComposer", "TransformerEncoder", "TransformerEncoderLayer",
    "sinusoidal_table",
]

COMPOSER_CLAMP = 100.0


class ComponentComposer(nnx.Module):
    """Compose a new pattern from weighted components: ``[B, 6 C, T] -> [B, output_dim, T]``.

    Names as the original: ``component_projection``, ``pos_encoder``, ``composer.layers.i``,
    ``output_projection.0`` / ``.3`` (indices 1 and 2 are the GELU and the dropout).
    ``d_model``, ``dim_feedforward`` and ``dropout`` are the original's hard-coded 512, 2048 and
    0.1, exposed as keywords (e.g. ``dropout=0.0`` for a deterministic training forward).
    """

    def __init__(self, component_dim: int = 64, num_components: int = 6, nhead: int = 8,
                 num_layers: int = 4, output_dim: int = 128, *, d_model: int = 512,
                 dim_feedforward: int = 2048, dropout: float = 0.1, rngs: nnx.Rngs):
        self.component_dim = component_dim
        self.num_components = num_components
        self.total_dim = component_dim * num_components
        self.component_projection = Linear(self.total_dim, d_model, rngs=rngs)
        self.pos_encoder = PositionalEncoding(d_model, dropout=0.0)  # the original has none here
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, "gelu",
                                        batch_first=True, rngs=rngs)
        self.composer = TransformerEncoder(layer, num_layers)
        hidden = d_model // 2
        self.output_projection = nnx.List([
            Linear(d_model, hidden, rngs=rngs),
            GELU(),
            nnx.Dropout(dropout),
            Linear(hidden, output_dim, rngs=rngs),
        ])

    def __call__(self, components: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        """``components [B, 6 C, T]`` -> ``[B, output_dim, T]``, clamped to [-100, 100]."""
        if components.shape[1] != self.total_dim:
            raise ValueError(
                f"ComponentComposer: expected {self.total_dim} component channels "
                f"(component_dim {self.component_dim} x {self.num_components}), got "
                f"{components.shape[1]}")
        x = self.component_projection(jnp.swapaxes(components, 1, 2))  # [B, T, d_model]
        x = self.pos_encoder(x)
        x = self.composer(x, train=train, rngs=rngs)
        x = run_layers(self.output_projection, x, train=train, rngs=rngs)
        return jnp.swapaxes(clamp(x, -COMPOSER_CLAMP, COMPOSER_CLAMP), 1, 2)
