"""SEANet encoder and decoder of EnCodec (channels-last), sized by an :class:`EncodecConfig`.

The layer lists mirror the reference's ``nn.Sequential`` index for index, activations
included (they hold no weights), so ``encoder.model.12.conv.conv.weight_v`` of the ``encodec``
package and ``encoder.layers.12.conv.weight_v`` of Hugging Face both land in our
``encoder.layers[12]``. With the 24 kHz defaults the encoder is::

    0 conv k7 | [resblock, ELU, conv k=2r stride r] for r in 2, 4, 5, 8 | LSTM | ELU | conv k7

(indices 1-3, 4-6, 7-9, 10-12, then 13, 14, 15) and the decoder mirrors it with transposed
convolutions for r in 8, 5, 4, 2.
"""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.codecs.encodec.config import EncodecConfig
from jaxaudio.codecs.encodec.conv import SConv1d, SConvTranspose1d
from jaxaudio.codecs.encodec.lstm import SLSTM

_ACTIVATIONS = {
    "ELU": lambda x, alpha=1.0: jax.nn.elu(x, alpha),
    "ReLU": lambda x: jax.nn.relu(x),
    "LeakyReLU": lambda x, negative_slope=0.01: jax.nn.leaky_relu(x, negative_slope),
    "Tanh": lambda x: jnp.tanh(x),
    "Sigmoid": lambda x: jax.nn.sigmoid(x),
    "Identity": lambda x: x,
}


class Activation(nnx.Module):
    """A weightless activation named as in ``torch.nn`` (``ELU``, ``ReLU``, ``Tanh``...)."""

    def __init__(self, name: str = "ELU", params: dict | None = None):
        if name not in _ACTIVATIONS:
            raise ValueError(f"activation {name!r} is not supported; expected one of {sorted(_ACTIVATIONS)}")
        self.name = name
        self.params = tuple(sorted((params or {}).items()))

    def __call__(self, x: jax.Array) -> jax.Array:
        return _ACTIVATIONS[self.name](x, **dict(self.params))


class ResnetBlock(nnx.Module):
    """``shortcut(x) + block(x)``, ``block = [act, conv k, act, conv 1]`` narrowing by ``compress``."""

    def __init__(
        self,
        dim: int,
        kernel_sizes: Sequence[int] = (3, 1),
        dilations: Sequence[int] = (1, 1),
        *,
        activation: str = "ELU",
        activation_params: dict | None = None,
        causal: bool = False,
        pad_mode: str = "reflect",
        compress: int = 2,
        true_skip: bool = True,
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        if len(kernel_sizes) != len(dilations):
            raise ValueError("ResnetBlock: kernel_sizes and dilations must have the same length")
        hidden = dim // compress
        if hidden < 1:
            raise ValueError(f"ResnetBlock: dim {dim} // compress {compress} leaves no hidden channels")
        conv_kw = dict(causal=causal, pad_mode=pad_mode, precision=precision, rngs=rngs)
        block: list[nnx.Module] = []
        for i, (k, d) in enumerate(zip(kernel_sizes, dilations)):
            in_chs = dim if i == 0 else hidden
            out_chs = dim if i == len(kernel_sizes) - 1 else hidden
            block += [Activation(activation, activation_params), SConv1d(in_chs, out_chs, k, dilation=d, **conv_kw)]
        self.block = nnx.List(block)
        self.shortcut = None if true_skip else SConv1d(dim, dim, 1, **conv_kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x
        for layer in self.block:
            y = layer(y)
        return (x if self.shortcut is None else self.shortcut(x)) + y


def _conv_kw(cfg: EncodecConfig, precision: str | None, rngs: nnx.Rngs) -> dict:
    return dict(causal=cfg.causal, pad_mode=cfg.pad_mode, precision=precision, rngs=rngs)


def _activation(cfg: EncodecConfig) -> Activation:
    return Activation(cfg.activation, dict(cfg.activation_params))


def _residual_blocks(cfg: EncodecConfig, width: int, conv_kw: dict) -> list[nnx.Module]:
    """The ``n_residual_layers`` blocks of one resolution, dilations ``dilation_base ** j``."""
    return [
        ResnetBlock(width, (cfg.residual_kernel_size, 1), (cfg.dilation_base**j, 1), compress=cfg.compress,
                    true_skip=cfg.true_skip, activation=cfg.activation,
                    activation_params=dict(cfg.activation_params), **conv_kw)
        for j in range(cfg.n_residual_layers)
    ]


class SEANetEncoder(nnx.Module):
    """Audio ``[B, N, channels]`` to latents ``[B, ceil(N / prod(ratios)), dimension]``."""

    def __init__(self, cfg: EncodecConfig, *, precision: str | None = None,
                 rngs: nnx.Rngs):
        conv_kw = _conv_kw(cfg, precision, rngs)
        layers: list[nnx.Module] = [SConv1d(cfg.channels, cfg.n_filters, cfg.kernel_size, **conv_kw)]
        mult = 1
        for ratio in reversed(cfg.ratios):  # the encoder downsamples in the decoder's reverse order
            width = mult * cfg.n_filters
            layers += _residual_blocks(cfg, width, conv_kw)
            layers.append(_activation(cfg))
            layers.append(SConv1d(width, 2 * width, 2 * ratio, stride=ratio, **conv_kw))
            mult *= 2
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm, precision=precision, rngs=rngs))
        layers.append(_activation(cfg))
        layers.append(SConv1d(mult * cfg.n_filters, cfg.dimension, cfg.last_kernel_size, **conv_kw))
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.layers:
            x = layer(x)
        return x


class SEANetDecoder(nnx.Module):
    """Latents ``[B, T, dimension]`` to audio ``[B, T * prod(ratios), channels]``."""

    def __init__(self, cfg: EncodecConfig, *, precision: str | None = None,
                 rngs: nnx.Rngs):
        conv_kw = _conv_kw(cfg, precision, rngs)
        mult = 2 ** len(cfg.ratios)
        layers: list[nnx.Module] = [SConv1d(cfg.dimension, mult * cfg.n_filters, cfg.kernel_size, **conv_kw)]
        if cfg.lstm:
            layers.append(SLSTM(mult * cfg.n_filters, cfg.lstm, precision=precision, rngs=rngs))
        for ratio in cfg.ratios:
            width = mult * cfg.n_filters
            layers.append(_activation(cfg))
            layers.append(SConvTranspose1d(width, width // 2, 2 * ratio, stride=ratio, causal=cfg.causal,
                                           trim_right_ratio=cfg.trim_right_ratio, precision=precision,
                                           rngs=rngs))
            layers += _residual_blocks(cfg, width // 2, conv_kw)
            mult //= 2
        # the last activation, convolution and final activation run in float32 whatever the
        # input's dtype: a bf16 decode's audio is not rounded to bfloat16 (2^-9 relative)
        self.float32_from = len(layers)
        layers.append(_activation(cfg))
        layers.append(SConv1d(cfg.n_filters, cfg.channels, cfg.last_kernel_size, **conv_kw))
        if cfg.final_activation is not None:
            layers.append(Activation(cfg.final_activation, dict(cfg.final_activation_params)))
        self.layers = nnx.List(layers)

    def __call__(self, z: jax.Array) -> jax.Array:
        return self._run(z, 0)

    def _run(self, z: jax.Array, start: int) -> jax.Array:
        """Layers ``start:`` on ``z``, in ``z``'s dtype up to the float32 tail."""
        for i in range(start, len(self.layers)):
            if i == self.float32_from:
                z = z.astype(jnp.float32)
            z = self.layers[i](z)
        return z

    def pair(self, z: jax.Array, z_ref: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(self(z), self(z_ref))``, the LSTM run once over both batches (``z_ref`` without a
        gradient), each batch's other layers in its own dtype. The LSTM is latency-bound:
        ``2B`` sequences take about as long as ``B`` (experiments/README.md), while the
        audio-rate layers run on each batch alone, so the backward keeps no activations of
        ``z_ref``'s."""
        z_ref = jax.lax.stop_gradient(z_ref)
        at = next((i for i, layer in enumerate(self.layers) if isinstance(layer, SLSTM)), None)
        if at is None:
            return self(z), self(z_ref)
        for layer in self.layers[:at]:
            z, z_ref = layer(z), layer(z_ref)
        dtype = z.dtype  # z's layers may run in bfloat16, the reference's in its own dtype
        # Rows interleaved ([z0, ref0, z1, ref1, ...]), not concatenated: a batch sharded over
        # devices keeps each device's rows of both on that device. The LSTM runs in float32,
        # its products too (the rows share them; a bf16 decode's own LSTM call has bf16 ones).
        both = jnp.stack([z.astype(jnp.float32), z_ref.astype(jnp.float32)], axis=1)
        both = self.layers[at](both.reshape(2 * z.shape[0], *z.shape[1:]))
        both = both.reshape(z.shape[0], 2, *z.shape[1:])
        # The LSTM's output carries z's tangent as a whole: cut the reference's half off it,
        # or its audio-rate layers would keep activations for a backward that yields zeros.
        z, z_ref = both[:, 0].astype(dtype), jax.lax.stop_gradient(both[:, 1].astype(z_ref.dtype))
        # The reference's audio-rate layers first, finished before the output's begin: the
        # output's activations are kept for the backward, so running the reference's beside
        # them would raise the peak by the reference's (about 1 GiB at the headline shapes).
        z_ref = self._run(z_ref, at + 1)
        z, z_ref = jax.lax.optimization_barrier((z, z_ref))
        return self._run(z, at + 1), z_ref
