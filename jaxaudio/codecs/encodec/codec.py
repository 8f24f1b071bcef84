"""``EncodecCodec``: EnCodec's SEANet encoder and decoder as a frozen, differentiable codec.

The defaults are the published 24 kHz model: ``[B, 1, N] -> [B, 128, ceil(N / 320)]`` latents
at 75 frames a second, and ``[B, 128, T] -> [B, 1, T * 320]`` audio. It never quantises: the
latents are the encoder's continuous output, as the original system uses them. Every size is
a field of :class:`EncodecConfig`, so tiny configurations (tests, the built-in training run)
work the same way; :func:`random_encodec` builds one with seeded random frozen weights.
"""

from __future__ import annotations

import hashlib
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs.base import FrozenWeight
from jaxaudio.codecs.encodec.config import EncodecConfig
from jaxaudio.codecs.encodec.seanet import SEANetDecoder, SEANetEncoder


class EncodecCodec(nnx.Module):
    """EnCodec's SEANet as a codec: ``encode [B, C, N] -> [B, D, T]``, ``decode [B, D, T] -> [B, C, T * hop]``.

    ``T = ceil(N / hop)`` with ``hop = prod(ratios)``; inputs of any length are padded as the
    reference pads them. Weights are :class:`FrozenWeight` (never ``nnx.Param``), so
    ``nnx.state(codec, nnx.Param)`` is empty while gradients flow through ``decode`` to the
    latents. ``precision`` is passed to every convolution and matmul
    (``None``: XLA's default, which is TF32 on recent NVIDIA GPUs; ``"highest"``: full float32).
    Load published weights with :func:`jaxaudio.codecs.encodec.load_encodec`.
    """

    def __init__(self, config: EncodecConfig = EncodecConfig(), *,
                 precision: str | None = None, rngs: nnx.Rngs):
        self.config_json = config.to_json()
        self.channels = config.channels
        self.dim = config.dimension
        self.hop_length = config.hop_length
        self.sample_rate = config.sample_rate
        self.precision = precision
        self.encoder = SEANetEncoder(config, precision=precision, rngs=rngs)
        self.decoder = SEANetDecoder(config, precision=precision, rngs=rngs)

    @property
    def config(self) -> EncodecConfig:
        return EncodecConfig.from_dict(json.loads(self.config_json))

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def encode(self, audio: jax.Array) -> jax.Array:
        """``[B, C, N]`` audio to ``[B, D, ceil(N / hop)]`` continuous latents."""
        if audio.ndim != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"EncodecCodec.encode expects audio [B, {self.channels}, N], got shape {audio.shape}")
        if audio.shape[2] < 1:
            raise ValueError("EncodecCodec.encode needs at least one sample")
        z = self.encoder(jnp.swapaxes(audio, 1, 2))
        return jnp.swapaxes(z, 1, 2)

    def decode(self, latents: jax.Array, *, dtype=None) -> jax.Array:
        """``[B, D, T]`` latents to ``[B, C, T * hop]`` audio.

        ``dtype`` (None: the latents' own): the dtype of the decoder's convolutions and
        activations. ``jnp.bfloat16`` runs them in bfloat16 (about half the memory traffic
        and twice the matrix rate of TF32 on a GPU); the LSTM keeps float32 states and sums
        (its products take bfloat16 operands), the last convolution stays float32, and so does
        the audio returned (see ``--codec_precision``)."""
        if latents.ndim != 3 or latents.shape[1] != self.dim:
            raise ValueError(f"EncodecCodec.decode expects latents [B, {self.dim}, T], got shape {latents.shape}")
        y = self.decoder(jnp.swapaxes(_as(latents, dtype), 1, 2))
        return jnp.swapaxes(y, 1, 2)

    def decode_pair(self, latents: jax.Array, reference: jax.Array, *,
                    dtype=None) -> tuple[jax.Array, jax.Array]:
        """``(decode(latents), decode(reference))``, the second without a gradient, with one
        LSTM call over both (:meth:`SEANetDecoder.pair`): the raw-clip train step decodes its
        output and the input it is compared with this way. ``dtype`` as in :meth:`decode`,
        for ``latents`` only: the reference, the losses' yardstick, is decoded in its own
        dtype, as the latent cache decodes it."""
        for name, z in (("latents", latents), ("reference", reference)):
            if z.ndim != 3 or z.shape[1] != self.dim:
                raise ValueError(f"EncodecCodec.decode_pair expects {name} [B, {self.dim}, T], "
                                 f"got shape {z.shape}")
        y, y_ref = self.decoder.pair(jnp.swapaxes(_as(latents, dtype), 1, 2),
                                     jnp.swapaxes(reference, 1, 2))
        return jnp.swapaxes(y, 1, 2), jnp.swapaxes(y_ref, 1, 2)

    def weights(self) -> dict[str, np.ndarray]:
        """Every frozen weight as ``{"encoder.layers.0.weight": array}`` (jaxaudio's own names)."""
        flat = nnx.to_flat_state(nnx.state(self, FrozenWeight))
        return {".".join(str(p) for p in path): np.asarray(jax.device_get(v.get_value())) for path, v in flat}

    def identity(self) -> str:
        """Name, sizes and a SHA-256 of configuration and weights (the latent cache's key)."""
        h = hashlib.sha256(self.config_json.encode())
        for name, value in sorted(self.weights().items()):
            h.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        return f"encodec:d{self.dim}-hop{self.hop_length}-sr{self.sample_rate}:{h.hexdigest()[:20]}"


def _as(x: jax.Array, dtype) -> jax.Array:
    return x if dtype is None else x.astype(dtype)


def random_encodec(seed: int = 0, *, precision=None, **config) -> EncodecCodec:
    """An :class:`EncodecCodec` of any size with seeded random frozen weights (tests, smoke runs).

    ``random_encodec(0, n_filters=2, dimension=16, ratios=(4, 2), lstm=1)`` is a codec with a
    hop of 8 samples that runs in milliseconds on a CPU.
    """
    return EncodecCodec(EncodecConfig(**config), precision=precision, rngs=nnx.Rngs(seed))
