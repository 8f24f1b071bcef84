"""Torch-layout building blocks of the masking agent.

Every parameter is stored exactly as the original's PyTorch ``state_dict`` holds it, under the
same attribute name, so a torch name is the NNX path joined with dots and no weight is
transposed on load:

==========================  ==============================================  ==================
layer                       NNX variables (torch names)                     layout
==========================  ==============================================  ==================
:class:`Conv1d`             ``weight``, ``bias``                            ``[out, in, k]``
:class:`Linear`             ``weight``, ``bias``                            ``[out, in]``
:class:`MultiheadAttention` ``in_proj_weight``, ``in_proj_bias``,           ``[3E, E]``, ``[3E]``
                            ``out_proj.weight``, ``out_proj.bias``          ``[E, E]``, ``[E]``
==========================  ==============================================  ==================

Parameter-free layers (:class:`ReLU`, :class:`LeakyReLU`, :class:`Sigmoid`,
:class:`AdaptiveAvgPool1d`, :class:`Flatten`) exist so that an ``nnx.List`` of layers has the
same indices as the original's ``nn.Sequential`` (``input_analyzer.0`` and ``.2`` are the convs,
``.1`` and ``.3`` the ReLUs). Initialisation follows torch's defaults.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def _uniform(rngs: nnx.Rngs, shape: Sequence[int], bound: float) -> jax.Array:
    return jax.random.uniform(rngs.params(), tuple(shape), jnp.float32, -bound, bound)


class Conv1d(nnx.Module):
    """``torch.nn.Conv1d`` on ``[B, C_in, T]`` with zero padding; weight ``[out, in, k]``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, *, rngs: nnx.Rngs):
        self.stride = stride
        self.padding = padding
        # torch's kaiming_uniform(a=sqrt(5)) reduces to U(+-1/sqrt(fan_in)) for weight and bias.
        bound = 1.0 / math.sqrt(in_channels * kernel_size)
        self.weight = nnx.Param(_uniform(rngs, (out_channels, in_channels, kernel_size), bound))
        self.bias = nnx.Param(_uniform(rngs, (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, self.weight[...], window_strides=(self.stride,),
            padding=[(self.padding, self.padding)], dimension_numbers=("NCH", "OIH", "NCH"))
        return y + self.bias[...][None, :, None]


class Linear(nnx.Module):
    """``torch.nn.Linear`` over the last axis; weight ``[out, in]``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs,
                 zero_bias: bool = False):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nnx.Param(_uniform(rngs, (out_features, in_features), bound))
        bias = jnp.zeros((out_features,), jnp.float32) if zero_bias else _uniform(
            rngs, (out_features,), bound)
        self.bias = nnx.Param(bias)

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight[...].T + self.bias[...]


class MultiheadAttention(nnx.Module):
    """``torch.nn.MultiheadAttention`` (packed q/k/v projection), used batch-first here.

    ``dropout`` is torch's attribute of the same name: the rate applied to the attention
    probabilities in training (set it to 0.0 to make a training forward deterministic).
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, *, rngs: nnx.Rngs):
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim={embed_dim} is not divisible by "
                             f"num_heads={num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform on [3E, E]
        self.in_proj_weight = nnx.Param(_uniform(rngs, (3 * embed_dim, embed_dim), bound))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), jnp.float32))
        self.out_proj = Linear(embed_dim, embed_dim, rngs=rngs, zero_bias=True)

    def __call__(self, query: jax.Array, key: jax.Array, value: jax.Array, *,
                 train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        """``query [B, Tq, E]``, ``key``/``value [B, Tk, E]`` -> ``[B, Tq, E]``."""
        E, H = self.embed_dim, self.num_heads
        w, b = self.in_proj_weight[...], self.in_proj_bias[...]
        q = query @ w[:E].T + b[:E]
        k = key @ w[E:2 * E].T + b[E:2 * E]
        v = value @ w[2 * E:].T + b[2 * E:]

        def heads(t):  # [B, T, E] -> [B, H, T, E/H]
            return t.reshape(t.shape[0], t.shape[1], H, E // H).transpose(0, 2, 1, 3)

        # torch scales q before the product; same order keeps the round-off alike.
        q = heads(q) * math.sqrt(1.0 / (E // H))
        weights = jax.nn.softmax(jnp.einsum("bhqd,bhkd->bhqk", q, heads(k)), axis=-1)
        if train and self.dropout > 0.0:
            if rngs is None:
                raise ValueError(
                    f"MultiheadAttention: train=True with dropout={self.dropout} needs the "
                    f"`rngs` argument (stream 'dropout'); pass rngs or set dropout to 0.0")
            keep = jax.random.bernoulli(rngs.dropout(), 1.0 - self.dropout, weights.shape)
            weights = jnp.where(keep, weights / (1.0 - self.dropout), 0.0)
        out = jnp.einsum("bhqk,bhkd->bhqd", weights, heads(v))
        out = out.transpose(0, 2, 1, 3).reshape(query.shape[0], query.shape[1], E)
        return self.out_proj(out)


class ReLU(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class LeakyReLU(nnx.Module):
    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.where(x >= 0, x, self.negative_slope * x)


class Sigmoid(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(x)


class AdaptiveAvgPool1d(nnx.Module):
    """Only ``output_size=1`` (all the original uses): mean over the last axis, kept."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=-1, keepdims=True)


class Flatten(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1)


def run_layers(layers: nnx.List, x: jax.Array, stop: int | None = None) -> jax.Array:
    """Apply ``layers[0:stop]`` in order (an ``nn.Sequential`` forward, optionally cut short)."""
    n = len(layers) if stop is None else stop
    for i in range(n):
        x = layers[i](x)
    return x


def safe_sqrt(x: jax.Array) -> jax.Array:
    """``sqrt`` with a zero gradient at 0 (torch's std/sqrt give inf or NaN there)."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def unbiased_std(x: jax.Array, axis) -> jax.Array:
    """``torch.std`` (Bessel-corrected) along ``axis``, gradient-safe at zero spread."""
    return safe_sqrt(jnp.var(x, axis=axis, ddof=1))
