"""A linear layer under ``torch.nn.utils.spectral_norm``, with torch's semantics.

torch keeps the raw weight as the parameter ``weight_orig`` (``[out, in]``) and two buffers,
``weight_u`` (``[out]``) and ``weight_v`` (``[in]``). The weight used in the forward is
``weight_orig / sigma`` with ``sigma = u . (W v)``:

- eval: the stored ``u``, ``v`` are used as they are;
- train: first one power iteration, ``v = normalize(W^T u)``, ``u = normalize(W v)`` (each
  normalisation divides by ``max(||x||, 1e-12)``), stored back into the buffers; ``u`` and ``v``
  are constants for the gradient, which flows through ``sigma`` into ``weight_orig``.

Names and layouts are torch's, so a ``state_dict`` loads without conversion.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import fan_in_bound, torch_uniform


class SpectralNormBuffer(nnx.Variable):
    """The power-iteration vectors ``u`` / ``v``: state, never trained."""


def _normalize(x: jax.Array, eps: float) -> jax.Array:
    return x / jnp.maximum(jnp.linalg.norm(x), eps)


class SpectralNormLinear(nnx.Module):
    """``spectral_norm(nn.Linear(in_features, out_features))`` on ``[..., in] -> [..., out]``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        use_bias: bool = True,
        *,
        n_power_iterations: int = 1,
        eps: float = 1e-12,
        rngs: nnx.Rngs,
    ):
        if n_power_iterations < 0:
            raise ValueError(f"n_power_iterations must be >= 0, got {n_power_iterations}")
        bound = fan_in_bound(in_features)  # nn.Linear's default init
        self.n_power_iterations = n_power_iterations
        self.eps = eps
        self.weight_orig = nnx.Param(torch_uniform(rngs.params(), (out_features, in_features), bound))
        self.bias = nnx.Param(torch_uniform(rngs.params(), (out_features,), bound)) if use_bias else None
        # torch draws u and v from N(0, 1) and normalises them when spectral_norm is applied.
        self.weight_u = SpectralNormBuffer(_normalize(jax.random.normal(rngs.params(), (out_features,)), eps))
        self.weight_v = SpectralNormBuffer(_normalize(jax.random.normal(rngs.params(), (in_features,)), eps))

    def normalized_weight(self, *, train: bool = False) -> jax.Array:
        """``weight_orig / sigma`` (``[out, in]``); in training also advances ``u``, ``v``."""
        w = self.weight_orig[...]
        # u and v are constants for the gradient in both modes, as torch's buffers are.
        u = jax.lax.stop_gradient(self.weight_u[...])
        v = jax.lax.stop_gradient(self.weight_v[...])
        if train and self.n_power_iterations > 0:
            w_const = jax.lax.stop_gradient(w)
            for _ in range(self.n_power_iterations):
                v = _normalize(w_const.T @ u, self.eps)
                u = _normalize(w_const @ v, self.eps)
            self.weight_u[...] = u
            self.weight_v[...] = v
        sigma = jnp.dot(u, w @ v)
        # In the weight's dtype: under bf16 the float32 buffers would otherwise promote the
        # weight, and with it the layer's output and everything after it, to float32.
        return (w / sigma).astype(w.dtype)

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        y = x @ self.normalized_weight(train=train).T
        if self.bias is not None:
            y = y + self.bias[...]
        return y
