"""The interface every codec meets, and the variable type of frozen codec weights.

A codec maps mono audio ``[B, 1, N]`` at ``sample_rate`` to continuous latents ``[B, D, T]``
(``D = dim``, ``T = ceil(N / hop_length)`` frames at ``frame_rate`` per second) and back.
Both directions are pure and differentiable; training backpropagates the audio losses through
``decode`` into the latents. Codec weights are :class:`FrozenWeight`, not ``nnx.Param``, so
``nnx.split(codec, nnx.Param, ...)`` finds nothing to train and optimizers never see them.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import jax
from flax import nnx


class FrozenWeight(nnx.Variable):
    """A weight that is loaded, never trained (codec weights)."""


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    hop_length: int
    dim: int

    @property
    def frame_rate(self) -> float: ...

    def encode(self, audio: jax.Array) -> jax.Array:
        """``[B, 1, N]`` audio to ``[B, D, T]`` latents."""
        ...

    def decode(self, latents: jax.Array, *, dtype=None) -> jax.Array:
        """``[B, D, T]`` latents to ``[B, 1, N']`` audio. ``dtype``: the compute dtype the
        codec may use for its matrix work (None: the latents'); the audio is float32 for
        float32 latents whatever ``dtype`` is."""
        ...

    def identity(self) -> str:
        """A string that changes whenever the codec's output would (name, sizes, weights hash).

        The latent cache keys its entries with it.
        """
        ...


def decode(codec, latents: jax.Array, *, dtype=None) -> jax.Array:
    """``codec.decode(latents)``, with ``dtype`` passed only when it is set: codecs written
    before ``decode`` took a ``dtype`` still work."""
    return codec.decode(latents) if dtype is None else codec.decode(latents, dtype=dtype)


def decode_pair(codec, latents: jax.Array, reference: jax.Array, *,
                dtype=None) -> tuple[jax.Array, jax.Array]:
    """``(codec.decode(latents), codec.decode(reference))``, the second without a gradient,
    through the codec's own ``decode_pair`` where it has one (EnCodec: one LSTM call for both).
    ``dtype`` (the decode's compute dtype) applies to ``latents`` only: the reference is the
    losses' yardstick and decodes as the latent cache decodes it."""
    fn = getattr(codec, "decode_pair", None)
    if fn is not None:
        return fn(latents, reference) if dtype is None else fn(latents, reference, dtype=dtype)
    return decode(codec, latents, dtype=dtype), jax.lax.stop_gradient(codec.decode(reference))
