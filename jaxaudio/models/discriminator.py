"""The latent discriminator of the original's GAN training, and its losses.

``AudioDiscriminator`` judges codec latents ``[B, D, T]``: strided 1-D convolutions with growing
kernels (3, 5, 7, ...; stride 2 except the last; ``padding = k // 2``), each followed by
LeakyReLU(0.2) and Dropout(0.3) (``dropout``), a mean over time, then Linear -> LeakyReLU -> Dropout -> Linear
to one logit ``[B, 1]``. The layers are :mod:`jaxaudio.nn`'s (torch names and layouts: conv
``weight [out, in, k]``, linear ``weight [out, in]``) and sit at the torch ``nn.Sequential``
indices (``conv_layers.0``, ``conv_layers.3``, ...; ``classifier.0``, ``classifier.3``), so a
torch ``state_dict`` name is the NNX path joined with ``.``.

The losses are binary cross-entropy with logits (mean over the batch); accuracies are returned
as arrays, not pulled to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import Conv1d, LeakyReLU, Linear, run_layers

LEAKY_SLOPE = 0.2
DROPOUT = 0.3


class AudioDiscriminator(nnx.Module):
    """Real/fake logits ``[B, 1]`` for latents ``[B, D, T]``."""

    def __init__(self, encoding_dim: int = 128, hidden_dims: Sequence[int] = (256, 512, 512, 256),
                 dropout: float = DROPOUT, *, rngs: nnx.Rngs):
        hidden_dims = tuple(int(h) for h in hidden_dims)
        if not hidden_dims:
            raise ValueError("hidden_dims must name at least one convolution width")
        self.encoding_dim = encoding_dim
        layers = []
        in_dim = encoding_dim
        for i, out_dim in enumerate(hidden_dims):
            k = 3 + 2 * i
            stride = 2 if i < len(hidden_dims) - 1 else 1
            layers += [
                Conv1d(in_dim, out_dim, k, stride, k // 2, rngs=rngs),
                LeakyReLU(LEAKY_SLOPE),
                nnx.Dropout(dropout),
            ]
            in_dim = out_dim
        self.conv_layers = nnx.List(layers)
        self.classifier = nnx.List(
            [Linear(in_dim, 128, rngs=rngs), LeakyReLU(LEAKY_SLOPE), nnx.Dropout(dropout), Linear(128, 1, rngs=rngs)]
        )

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        if x.ndim != 3 or x.shape[1] != self.encoding_dim:
            raise ValueError(f"AudioDiscriminator expects [B, {self.encoding_dim}, T], got {tuple(x.shape)}")
        h = run_layers(self.conv_layers, x, train=train, rngs=rngs)
        h = jnp.mean(h, axis=2)  # AdaptiveAvgPool1d(1) + squeeze
        return run_layers(self.classifier, h, train=train, rngs=rngs)


def _bce_with_logits(logits: jax.Array, target: float) -> jax.Array:
    # torch's stable form: max(x, 0) - x * y + log(1 + exp(-|x|)), averaged
    return jnp.mean(jnp.maximum(logits, 0.0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits))))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(BCE(real, 1) + BCE(fake, 0), mean(sigmoid(real) > 0.5), mean(sigmoid(fake) < 0.5))``."""
    loss = _bce_with_logits(real_logits, 1.0) + _bce_with_logits(fake_logits, 0.0)
    real_acc = jnp.mean((jax.nn.sigmoid(real_logits) > 0.5).astype(jnp.float32))
    fake_acc = jnp.mean((jax.nn.sigmoid(fake_logits) < 0.5).astype(jnp.float32))
    return loss, real_acc, fake_acc


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """``BCE(fake, 1)``: the generator wants its output judged real."""
    return _bce_with_logits(fake_logits, 1.0)


def roll_targets(encoded_target: jax.Array) -> jax.Array:
    """Targets shifted by one along the batch (``torch.roll(x, 1, dims=0)``): 'real' examples."""
    return jnp.roll(encoded_target, 1, axis=0)
