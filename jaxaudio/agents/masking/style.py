"""The style discriminator of the masking agent and its adversarial loss.

::

    pattern [B, D, T] --encoder (3 x conv k4 s2 p1 + LeakyReLU 0.2)--> features [B, H, T // 8]
    features --classifier (time mean, flatten, linear, sigmoid)--> real_fake_score [B, 1]
    concat(time mean, time std) [B, 2H] --style_matcher, sigmoid--> style_score [B, 1]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import (
    AdaptiveAvgPool1d,
    Conv1d,
    Flatten,
    LeakyReLU,
    Linear,
    Sigmoid,
    run_layers,
    unbiased_std,
)

# torch's binary_cross_entropy clamps each log term at -100.
_BCE_LOG_FLOOR = -100.0


class StyleDiscriminator(nnx.Module):
    """Judges a ``[B, D, T]`` pattern: ``(real_fake_score, style_score)``, each ``[B, 1]``.

    Variables (NNX path joined with dots = torch name; torch layouts):
    ``encoder.{0,2,4}.{weight,bias}``, ``classifier.2.{weight,bias}``,
    ``style_matcher.{weight,bias}``. Needs ``T // 8 >= 2`` (the style statistics take a
    Bessel-corrected std over the encoded frames).
    """

    def __init__(self, encoding_dim: int, hidden_dim: int = 256, *, rngs: nnx.Rngs):
        self.encoding_dim = encoding_dim
        self.hidden_dim = hidden_dim
        self.encoder = nnx.List([
            Conv1d(encoding_dim, hidden_dim // 4, kernel_size=4, stride=2, padding=1, rngs=rngs),
            LeakyReLU(0.2),
            Conv1d(hidden_dim // 4, hidden_dim // 2, kernel_size=4, stride=2, padding=1,
                   rngs=rngs),
            LeakyReLU(0.2),
            Conv1d(hidden_dim // 2, hidden_dim, kernel_size=4, stride=2, padding=1, rngs=rngs),
            LeakyReLU(0.2),
        ])
        self.classifier = nnx.List([
            AdaptiveAvgPool1d(), Flatten(), Linear(hidden_dim, 1, rngs=rngs), Sigmoid(),
        ])
        self.style_matcher = Linear(hidden_dim * 2, 1, rngs=rngs)

    def logits(self, encoded_pattern: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Pre-sigmoid ``(real_fake_logit, style_logit)``, each ``[B, 1]``."""
        if encoded_pattern.ndim != 3 or encoded_pattern.shape[1] != self.encoding_dim:
            raise ValueError(f"StyleDiscriminator: expected [B, {self.encoding_dim}, T], got "
                             f"{encoded_pattern.shape}")
        if encoded_pattern.shape[2] // 8 < 2:
            raise ValueError(f"StyleDiscriminator: needs T >= 16 frames (T // 8 >= 2 for the "
                             f"style std), got shape {encoded_pattern.shape}")
        features = run_layers(self.encoder, encoded_pattern)  # [B, H, T // 8]
        real_fake_logit = run_layers(self.classifier, features, stop=3)
        stats = jnp.concatenate([jnp.mean(features, axis=2), unbiased_std(features, axis=2)],
                                axis=1)
        return real_fake_logit, self.style_matcher(stats)

    def __call__(self, encoded_pattern: jax.Array) -> tuple[jax.Array, jax.Array]:
        real_fake_logit, style_logit = self.logits(encoded_pattern)
        return self.classifier[3](real_fake_logit), jax.nn.sigmoid(style_logit)


def _bce_mean(logits: jax.Array, target_is_one: bool) -> jax.Array:
    # log(sigmoid(z)) and log(1 - sigmoid(z)) from the logits: the original's values without
    # the float32 cancellation of 1 - sigmoid(z) near 1.
    log_p = jax.nn.log_sigmoid(logits if target_is_one else -logits)
    return -jnp.mean(jnp.maximum(log_p, _BCE_LOG_FLOOR))


def adversarial_losses(fake_logits: jax.Array, real_logits: jax.Array
                       ) -> tuple[jax.Array, jax.Array]:
    """The original's GAN losses from real/fake classifier logits ``[B, 1]``.

    Returns ``(generator_loss, discriminator_loss)``: ``BCE(fake, 1)`` and
    ``BCE(real, 1) + BCE(fake, 0)``, each a batch mean, as ``F.binary_cross_entropy`` on the
    sigmoid scores (log terms floored at -100).
    """
    generator_loss = _bce_mean(fake_logits, True)
    discriminator_loss = _bce_mean(real_logits, True) + _bce_mean(fake_logits, False)
    return generator_loss, discriminator_loss
