"""``torch.nn.LayerNorm`` and ``torch.nn.BatchNorm1d`` with torch's names and semantics.

Variables carry torch's names: ``weight``, ``bias`` (``nnx.Param``); BatchNorm's
``running_mean``, ``running_var`` and ``num_batches_tracked`` are ``nnx.BatchStat``. flax's
own layers differ from torch in ways the parity tests see: ``nnx.BatchNorm`` uses the opposite
momentum convention and feeds the biased variance to the running estimate, and its default
fast variance (``E[x^2] - E[x]^2``) loses digits on offset inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# torch's defaults, which the original uses unchanged.
LN_EPS = 1e-5
BN_EPS = 1e-5
BN_MOMENTUM = 0.1


class LayerNorm(nnx.Module):
    """``torch.nn.LayerNorm(normalized_shape)`` over the last axis: ``[..., E] -> [..., E]``.

    Two-pass biased variance, ``eps`` inside the root; ``weight`` (ones) and ``bias`` (zeros)
    are ``[E]``.
    """

    def __init__(self, normalized_shape: int, eps: float = LN_EPS):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((normalized_shape,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((normalized_shape,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype, x = x.dtype, x.astype(jnp.float32)  # statistics in float32, also under bf16
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        w, b = self.weight[...].astype(jnp.float32), self.bias[...].astype(jnp.float32)
        return ((x - mean) * (jax.lax.rsqrt(var + self.eps) * w) + b).astype(dtype)


class BatchNorm1d(nnx.Module):
    """``torch.nn.BatchNorm1d`` on ``[B, C, T]`` with torch's exact semantics.

    Train: normalise with the batch mean and the *biased* batch variance over ``(B, T)``; update
    ``running_mean`` and ``running_var`` by ``r <- (1 - momentum) r + momentum s`` where the
    variance fed to the update is the *unbiased* one (``n / (n - 1)``), and add one to
    ``num_batches_tracked``. Eval: normalise with the running statistics, update nothing.
    """

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM):
        self.eps = eps
        self.momentum = momentum
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        # torch keeps an int64 counter; int32 is JAX's default integer (x64 off).
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        dtype, x = x.dtype, x.astype(jnp.float32)  # statistics in float32, also under bf16
        if train:
            n = x.shape[0] * x.shape[2]
            if n < 2:
                raise ValueError(
                    f"BatchNorm1d: training needs more than one value per channel, got input "
                    f"shape {x.shape} (batch * frames = {n})")
            mean = jnp.mean(x, axis=(0, 2))
            var = jnp.mean(jnp.square(x - mean[None, :, None]), axis=(0, 2))
            # Buffers carry no gradient in torch either.
            m = self.momentum
            batch_mean = jax.lax.stop_gradient(mean)
            batch_var_unbiased = jax.lax.stop_gradient(var) * (n / (n - 1))
            self.running_mean[...] = (1.0 - m) * self.running_mean[...] + m * batch_mean
            self.running_var[...] = (1.0 - m) * self.running_var[...] + m * batch_var_unbiased
            count = self.num_batches_tracked[...]
            self.num_batches_tracked[...] = count + jnp.ones((), count.dtype)
        else:
            mean = self.running_mean[...]
            var = self.running_var[...]
        inv = jax.lax.rsqrt(var + self.eps)
        w, b = self.weight[...].astype(jnp.float32), self.bias[...].astype(jnp.float32)
        return ((x - mean[None, :, None]) * (w * inv)[None, :, None] + b[None, :, None]).astype(dtype)
