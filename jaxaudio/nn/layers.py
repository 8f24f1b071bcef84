"""``torch.nn`` basics in NNX: Linear, Conv1d, activations, pooling, and Sequential helpers.

Parameters are stored under torch's names and in torch's layout (``Linear.weight [out, in]``,
``Conv1d.weight [out, in, k]``), so a torch name is the NNX path joined with ``.`` and nothing
is transposed on load (see :mod:`jaxaudio.nn`). Initialisation follows torch's defaults:
``kaiming_uniform(a=sqrt(5))`` reduces to U(+-1/sqrt(fan_in)) for weights and biases alike.

The parameter-free layers are modules so that an ``nnx.List`` of layers keeps the indices of
the original's ``nn.Sequential`` (its parameters are at ``<name>.0``, ``<name>.2``, ...);
:func:`run_layers` is that Sequential's forward.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


def torch_uniform(key: jax.Array, shape: Sequence[int], bound: float) -> jax.Array:
    """U(-bound, bound) float32 of ``shape``: torch's default init for Linear/Conv parameters.

    Drawn flat and reshaped (the same values as a shaped draw): eager construction compiles one
    sampler per distinct shape, and 1-D samplers compile about twice as fast as 3-D ones.
    """
    shape = tuple(shape)
    flat = jax.random.uniform(key, (math.prod(shape),), jnp.float32, -bound, bound)
    return flat.reshape(shape)


def fan_in_bound(fan_in: int) -> float:
    """torch's default bound ``1 / sqrt(fan_in)`` (0 for an empty layer, as torch)."""
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


class Linear(nnx.Module):
    """``torch.nn.Linear`` over the last axis: ``[..., in] -> [..., out]``.

    ``weight [out, in]``, ``bias [out]`` (None with ``bias=False``). ``zero_bias=True`` starts
    the bias at 0 instead of drawing it (what ``nn.MultiheadAttention`` does to ``out_proj``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 rngs: nnx.Rngs, zero_bias: bool = False):
        bound = fan_in_bound(in_features)
        self.weight = nnx.Param(torch_uniform(rngs.params(), (out_features, in_features), bound))
        if not bias:
            self.bias = None
        elif zero_bias:
            self.bias = nnx.Param(jnp.zeros((out_features,), jnp.float32))
        else:
            self.bias = nnx.Param(torch_uniform(rngs.params(), (out_features,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = x @ self.weight[...].T
        return y if self.bias is None else y + self.bias[...]


class Conv1d(nnx.Module):
    """``torch.nn.Conv1d`` with symmetric zero padding: ``[B, C_in, T] -> [B, C_out, T']``.

    ``weight [C_out, C_in, k]``, ``bias [C_out]``; ``T' = (T + 2 padding - k) // stride + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, *, rngs: nnx.Rngs):
        self.stride = stride
        self.padding = padding
        bound = fan_in_bound(in_channels * kernel_size)
        self.weight = nnx.Param(
            torch_uniform(rngs.params(), (out_channels, in_channels, kernel_size), bound))
        self.bias = nnx.Param(torch_uniform(rngs.params(), (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, self.weight[...], window_strides=(self.stride,),
            padding=[(self.padding, self.padding)], dimension_numbers=("NCH", "OIH", "NCH"))
        return y + self.bias[...][None, :, None]


class ReLU(nnx.Module):
    """``torch.nn.ReLU`` (gradient 0 at 0, as torch)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class LeakyReLU(nnx.Module):
    """``torch.nn.LeakyReLU(negative_slope)``; torch's default slope is 0.01."""

    def __init__(self, negative_slope: float = 0.01):
        self.negative_slope = negative_slope

    def __call__(self, x: jax.Array) -> jax.Array:
        # `x > 0` (not >=) gives torch's gradient at exactly 0: the slope.
        return jnp.where(x > 0, x, self.negative_slope * x)


class Sigmoid(nnx.Module):
    """``torch.nn.Sigmoid``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.sigmoid(x)


class GELU(nnx.Module):
    """``torch.nn.GELU()``: the exact (erf) form."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.gelu(x, approximate=False)


class AdaptiveAvgPool1d(nnx.Module):
    """``torch.nn.AdaptiveAvgPool1d(1)`` (all the original uses): ``[B, C, T] -> [B, C, 1]``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=-1, keepdims=True)


class Flatten(nnx.Module):
    """``torch.nn.Flatten()``: ``[B, ...] -> [B, prod(...)]``."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1)


def run_layers(layers: nnx.List, x: jax.Array, stop: int | None = None, *, train: bool = False,
               rngs: nnx.Rngs | None = None) -> jax.Array:
    """Apply ``layers[0:stop]`` in order: an ``nn.Sequential`` forward, optionally cut short.

    ``nnx.Dropout`` layers act only with ``train=True`` (keys from ``rngs``, stream
    ``dropout``); every other layer is called on the array alone.
    """
    n = len(layers) if stop is None else stop
    for i in range(n):
        layer = layers[i]
        if isinstance(layer, nnx.Dropout):
            x = layer(x, deterministic=not train, rngs=rngs)
        else:
            x = layer(x)
    return x


def uses_dropout(module: nnx.Module) -> bool:
    """Whether a training forward of ``module`` draws dropout masks (so needs ``rngs``).

    Counts ``nnx.Dropout`` layers with a positive rate and modules that keep torch's float
    attribute ``dropout`` (e.g. :class:`~jaxaudio.nn.attention.MultiheadAttention`'s
    attention-probability dropout) when it is positive.
    """
    for _, node in nnx.iter_graph(module):
        if isinstance(node, nnx.Dropout) and node.rate > 0.0:
            return True
        if isinstance(node, nnx.Module) and isinstance(getattr(node, "dropout", None), float) \
                and node.dropout > 0.0:
            return True
    return False
