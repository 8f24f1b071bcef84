"""Small torch-semantics array functions shared by the models and the agents.

Each one is a pure function, safe under ``jit``, ``grad`` and ``vmap``, with torch's gradient
conventions at the kinks so that gradients stay finite on silence and on identical inputs
(a plain ``jnp.sqrt`` of 0 has an infinite derivative, and ``jnp.abs`` has derivative 1 at 0
where torch's is 0). :func:`safe_sqrt` is :func:`jaxaudio.dsp.safe_sqrt`, re-exported.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaudio.dsp import safe_sqrt

NORMALIZE_EPS = 1e-12  # F.normalize's default
RMS_EPS = 1e-8  # the original's epsilon inside every per-sample RMS

__all__ = [
    "NORMALIZE_EPS",
    "RMS_EPS",
    "clamp",
    "l2_normalize",
    "safe_sqrt",
    "sample_rms",
    "torch_abs",
    "unbiased_std",
]


def unbiased_std(x: jax.Array, axis=None) -> jax.Array:
    """``torch.std`` (Bessel-corrected, ``n - 1``) along ``axis`` (``None``: every element).

    The gradient on constant input is 0 (torch's is NaN there), so silence trains.
    """
    return safe_sqrt(jnp.var(x, axis=axis, ddof=1))


def sample_rms(x: jax.Array, eps: float = RMS_EPS) -> jax.Array:
    """Per-sample RMS ``sqrt(mean(x^2) + eps)`` over every axis but the first, kept.

    ``[B, ...] -> [B, 1, ...]`` (``[B, D, T] -> [B, 1, 1]``), as the original's cascade computes
    its levels; the ``eps`` keeps the gradient finite on silence.
    """
    axes = tuple(range(1, x.ndim))
    dtype, x = x.dtype, x.astype(jnp.float32)  # the level in float32, also under bf16
    return jnp.sqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + eps).astype(dtype)


def torch_abs(x: jax.Array) -> jax.Array:
    """``|x|`` whose gradient at 0 is 0, as torch's (``jnp.abs`` gives 1 there)."""
    return x * jax.lax.stop_gradient(jnp.sign(x))


def l2_normalize(x: jax.Array, axis: int = 1, eps: float = NORMALIZE_EPS) -> jax.Array:
    """``F.normalize(x, p=2, dim=axis)``: ``x / max(||x||, eps)``, finite gradient at 0."""
    norm = safe_sqrt(jnp.sum(jnp.square(x), axis=axis, keepdims=True))
    # torch's clamp_min passes the gradient only where norm >= eps.
    return x / jnp.where(norm >= eps, norm, eps)


def clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """``torch.clamp``: NaN passes through; gradient 1 on ``[low, high]`` (inclusive), 0 outside."""
    return jnp.where(x < low, low, jnp.where(x > high, high, x)).astype(x.dtype)
