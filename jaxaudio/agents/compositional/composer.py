"""The component composer: a 512-wide post-norm transformer over the selected components.

``[B, 6 C, T]`` -> linear to ``d_model`` (512) -> + sinusoidal positions -> ``num_layers``
``torch.nn.TransformerEncoderLayer``s (post-norm, packed q/k/v attention, exact GELU, feed-forward
2048, LayerNorm eps 1e-5, dropout 0.1) -> ``Linear(512, 256), GELU, Dropout, Linear(256, D)`` ->
clamp to [-100, 100] -> ``[B, D, T]``.

Parameters keep torch's layout and names (``Linear.weight`` is ``[out, in]``;
``self_attn.in_proj_weight`` packs q, k, v as ``[3 E, E]``), so a torch state dict loads by
splitting names on ``.``. The positional table (torch's ``pos_encoder.pe`` buffer) is a constant
recomputed exactly as torch builds it, not NNX state.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from .extractors import torch_uniform

LN_EPS = 1e-5
COMPOSER_CLAMP = 100.0


class Linear(nnx.Module):
    """``torch.nn.Linear``: ``[..., in] -> [..., out]``; ``weight [out, in]``, ``bias [out]``."""

    def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
        bound = 1.0 / math.sqrt(in_features)
        self.weight = nnx.Param(torch_uniform(rngs.params(), (out_features, in_features), bound))
        self.bias = nnx.Param(torch_uniform(rngs.params(), (out_features,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight[...].T + self.bias[...]


class LayerNorm(nnx.Module):
    """``torch.nn.LayerNorm`` over the last axis (biased variance, eps inside the root)."""

    def __init__(self, normalized_shape: int, eps: float = LN_EPS):
        self.eps = eps
        self.weight = nnx.Param(jnp.ones((normalized_shape,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((normalized_shape,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.weight[...] + self.bias[...]


class GELU(nnx.Module):
    """``torch.nn.GELU()``: the exact (erf) form."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.gelu(x, approximate=False)


def _dropout(layer: nnx.Dropout, x: jax.Array, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
    return layer(x, deterministic=not train, rngs=rngs)


class MultiheadAttention(nnx.Module):
    """``torch.nn.MultiheadAttention`` (self-attention, ``batch_first``): ``[B, T, E]``.

    ``in_proj_weight [3 E, E]`` / ``in_proj_bias [3 E]`` pack q, k, v; ``out_proj`` is a Linear.
    Dropout acts on the attention weights, as in torch.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, *, rngs: nnx.Rngs):
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads "
                f"{num_heads}")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        # torch: xavier_uniform on the packed [3E, E] matrix, zero in/out biases.
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))
        self.in_proj_weight = nnx.Param(
            torch_uniform(rngs.params(), (3 * embed_dim, embed_dim), bound))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), jnp.float32))
        self.out_proj = Linear(embed_dim, embed_dim, rngs=rngs)
        self.out_proj.bias[...] = jnp.zeros((embed_dim,), jnp.float32)
        self.dropout = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        b, t, e = x.shape
        h = self.num_heads
        qkv = x @ self.in_proj_weight[...].T + self.in_proj_bias[...]  # [B, T, 3E]
        q, k, v = (a.reshape(b, t, h, e // h) for a in jnp.split(qkv, 3, axis=-1))
        scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) * (1.0 / math.sqrt(e // h))
        attn = _dropout(self.dropout, jax.nn.softmax(scores, axis=-1), train, rngs)
        out = jnp.einsum("bhqk,bkhd->bqhd", attn, v).reshape(b, t, e)
        return self.out_proj(out)


class TransformerEncoderLayer(nnx.Module):
    """``torch.nn.TransformerEncoderLayer(batch_first=True, activation='gelu')``, post-norm.

    ``x = norm1(x + dropout1(self_attn(x)))``;
    ``x = norm2(x + dropout2(linear2(dropout(gelu(linear1(x))))))``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, *, rngs: nnx.Rngs):
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, rngs=rngs)
        self.linear1 = Linear(d_model, dim_feedforward, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, rngs=rngs)
        self.norm1 = LayerNorm(d_model)
        self.norm2 = LayerNorm(d_model)
        self.dropout1 = nnx.Dropout(dropout)
        self.dropout2 = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        a = self.self_attn(x, train=train, rngs=rngs)
        x = self.norm1(x + _dropout(self.dropout1, a, train, rngs))
        f = jax.nn.gelu(self.linear1(x), approximate=False)
        f = self.linear2(_dropout(self.dropout, f, train, rngs))
        return self.norm2(x + _dropout(self.dropout2, f, train, rngs))


class TransformerEncoder(nnx.Module):
    """``torch.nn.TransformerEncoder`` without a final norm: ``layers`` applied in order.

    torch deep-copies one freshly initialised layer ``num_layers`` times, so all layers start
    from the same weights; we do the same to reproduce its initialisation.
    """

    def __init__(self, layer: TransformerEncoderLayer, num_layers: int):
        self.layers = nnx.List([layer] + [nnx.clone(layer) for _ in range(num_layers - 1)])

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        for layer in self.layers:
            x = layer(x, train=train, rngs=rngs)
        return x


@functools.lru_cache(maxsize=16)
def sinusoidal_table(length: int, d_model: int) -> np.ndarray:
    """torch's ``PositionalEncoding.pe[0, :length]``: ``[length, d_model]`` float32, read-only.

    torch builds it in float32: the exponent ``arange * (-ln(1e4) / d)`` and the phase
    ``position * div_term`` are rounded to float32, so we round them too (a float64 table would
    differ by up to 1e-4 at position 2000). ``exp``, ``sin`` and ``cos`` are evaluated in
    float64 and rounded once; torch's float32 ``exp`` differs from that by 1 ulp in a few
    ``div_term`` entries (5 of 256 for d = 512), which moves the phase at position p by up
    to p * 6e-8: the table matches torch's buffer to 2e-6 for T <= 48 and 6e-5 for T <= 2000.
    """
    exponent = (np.arange(0, d_model, 2, dtype=np.float32)
                * np.float32(-math.log(10000.0) / d_model))
    div_term = np.exp(exponent.astype(np.float64)).astype(np.float32)
    phase = (np.arange(length, dtype=np.float32)[:, None] * div_term).astype(np.float64)
    pe = np.zeros((length, d_model), np.float32)
    pe[:, 0::2] = np.sin(phase)
    pe[:, 1::2] = np.cos(phase[:, : d_model // 2])
    pe.setflags(write=False)
    return pe


class PositionalEncoding(nnx.Module):
    """Adds the sinusoidal table to ``[B, T, D]``, ``T <= max_len`` (torch's table has 2000 rows).

    No state: torch's ``pe`` buffer ``[1, max_len, D]`` is a deterministic constant, offered to
    the checkpoint converter through :meth:`torch_constants` (checked there, not stored).
    """

    def __init__(self, d_model: int, max_len: int = 2000):
        self.d_model = d_model
        self.max_len = max_len

    def torch_constants(self) -> dict[str, np.ndarray]:
        return {"pe": sinusoidal_table(self.max_len, self.d_model)[None]}

    def __call__(self, x: jax.Array) -> jax.Array:
        t = x.shape[1]
        if t > self.max_len:
            raise ValueError(
                f"ComponentComposer: {t} frames exceed the positional table's max_len "
                f"{self.max_len} (the original's limit)")
        return x + jnp.asarray(sinusoidal_table(self.max_len, self.d_model)[:t])[None]


def clamp(x: jax.Array, low: float, high: float) -> jax.Array:
    """``torch.clamp``: NaN passes through; gradient 1 on ``[low, high]`` (inclusive), 0 outside."""
    return jnp.where(x < low, low, jnp.where(x > high, high, x)).astype(x.dtype)


class ComponentComposer(nnx.Module):
    """Compose a new pattern from weighted components: ``[B, 6 C, T] -> [B, output_dim, T]``.

    Names as the original: ``component_projection``, ``pos_encoder``, ``composer.layers.i``,
    ``output_projection.0`` / ``.3`` (indices 1 and 2 are the GELU and the dropout).
    ``d_model``, ``dim_feedforward`` and ``dropout`` are the original's hard-coded 512, 2048 and
    0.1, exposed as keywords (e.g. ``dropout=0.0`` for a deterministic training forward).
    """

    def __init__(self, component_dim: int = 64, num_components: int = 6, nhead: int = 8,
                 num_layers: int = 4, output_dim: int = 128, *, d_model: int = 512,
                 dim_feedforward: int = 2048, dropout: float = 0.1, rngs: nnx.Rngs):
        self.component_dim = component_dim
        self.num_components = num_components
        self.total_dim = component_dim * num_components
        self.component_projection = Linear(self.total_dim, d_model, rngs=rngs)
        self.pos_encoder = PositionalEncoding(d_model)
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, rngs=rngs)
        self.composer = TransformerEncoder(layer, num_layers)
        hidden = d_model // 2
        self.output_projection = nnx.List([
            Linear(d_model, hidden, rngs=rngs),
            GELU(),
            nnx.Dropout(dropout),
            Linear(hidden, output_dim, rngs=rngs),
        ])

    def __call__(self, components: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        """``components [B, 6 C, T]`` -> ``[B, output_dim, T]``, clamped to [-100, 100]."""
        if components.shape[1] != self.total_dim:
            raise ValueError(
                f"ComponentComposer: expected {self.total_dim} component channels "
                f"(component_dim {self.component_dim} x {self.num_components}), got "
                f"{components.shape[1]}")
        x = self.component_projection(jnp.swapaxes(components, 1, 2))  # [B, T, d_model]
        x = self.pos_encoder(x)
        x = self.composer(x, train=train, rngs=rngs)
        proj_in, act, drop, proj_out = self.output_projection
        x = proj_out(_dropout(drop, act(proj_in(x)), train, rngs))
        return jnp.swapaxes(clamp(x, -COMPOSER_CLAMP, COMPOSER_CLAMP), 1, 2)
