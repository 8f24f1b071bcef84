"""Building blocks with PyTorch's semantics and parameter layout.

The original is built from ``torch.nn`` layers; these are their NNX counterparts, written so a
torch ``state_dict`` maps onto them name for name (see :mod:`jaxaudio.convert`):

- :class:`MultiheadAttention` keeps torch's packed ``in_proj_weight`` ``[3E, E]`` (rows q, k, v)
  and ``in_proj_bias``, and an ``out_proj`` linear layer.
- :class:`TransformerEncoderLayer` is torch's post-norm layer (``norm_first=False``):
  ``x = norm1(x + dropout1(attn(x)))``, ``x = norm2(x + dropout2(linear2(dropout(act(linear1(x))))))``
  with exact (erf) GELU, LayerNorm eps 1e-5 and the same four dropout sites.
- :class:`TransformerEncoder` stacks them under ``layers.<i>`` (no final norm, as the original).
- :class:`PositionalEncoding` is the sinusoidal table (``max_len`` 2000) plus dropout.

Initialisation follows torch's defaults (``Linear``: uniform in +-1/sqrt(fan_in); attention:
Xavier-uniform packed projection, zero biases). Unlike ``nn.TransformerEncoder``, which deep-copies
one layer so every layer starts with identical weights, each layer here is drawn independently.

Modes are call arguments: ``train`` switches dropout on, and dropout keys come from the ``rngs``
argument (stream ``dropout``). Shapes: ``B`` batch, ``T`` sequence (frames), ``E`` model width.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

LAYER_NORM_EPS = 1e-5


def torch_uniform_init(fan_in: int):
    """torch's default Linear/Conv init: uniform in ``+-1/sqrt(fan_in)`` (kaiming_uniform, a=sqrt(5))."""
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def linear(in_features: int, out_features: int, *, use_bias: bool = True, rngs: nnx.Rngs) -> nnx.Linear:
    """An ``nnx.Linear`` (kernel ``[in, out]``) initialised as ``torch.nn.Linear``."""
    init = torch_uniform_init(in_features)
    return nnx.Linear(
        in_features, out_features, use_bias=use_bias, kernel_init=init, bias_init=init, rngs=rngs
    )


def layer_norm(num_features: int, eps: float = LAYER_NORM_EPS, *, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """``torch.nn.LayerNorm``: two-pass variance (flax's fast variance loses digits on offsets)."""
    return nnx.LayerNorm(num_features, epsilon=eps, use_fast_variance=False, rngs=rngs)


def _activation(name: str):
    if name == "gelu":
        return functools.partial(jax.nn.gelu, approximate=False)
    if name == "relu":
        return jax.nn.relu
    raise ValueError(f"activation must be 'gelu' or 'relu' (as torch accepts), got {name!r}")


def attention_weights(q: jax.Array, k: jax.Array) -> jax.Array:
    """Softmax attention probabilities ``[B, H, Tq, Tk]`` from ``q [B, Tq, H, d]``, ``k [B, Tk, H, d]``."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * scale, k)
    return jax.nn.softmax(logits, axis=-1)


class MultiheadAttention(nnx.Module):
    """``torch.nn.MultiheadAttention`` (``kdim = vdim = embed_dim``), packed-projection layout.

    ``__call__(query, key, value)`` returns ``(output, weights)`` like torch, where ``weights``
    (``[B, Tq, Tk]``, averaged over heads) is only computed with ``need_weights=True`` (torch's
    default is True; here False, so the fused attention kernel can be used). Inputs are
    ``[B, T, E]`` with ``batch_first=True``, else ``[T, B, E]`` (torch's default).
    Attention-probability dropout (``dropout``) is applied in training, as torch does.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = False,
        *,
        rngs: nnx.Rngs,
    ):
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.batch_first = batch_first
        xavier = nnx.initializers.xavier_uniform()
        self.in_proj_weight = nnx.Param(xavier(rngs.params(), (3 * embed_dim, embed_dim), jnp.float32))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), jnp.float32)) if bias else None
        self.out_proj = nnx.Linear(
            embed_dim,
            embed_dim,
            use_bias=bias,
            kernel_init=torch_uniform_init(embed_dim),
            bias_init=nnx.initializers.zeros,
            rngs=rngs,
        )
        self.attn_dropout = nnx.Dropout(dropout)

    def _project(self, x: jax.Array, index: int) -> jax.Array:
        e = self.embed_dim
        w = self.in_proj_weight[index * e:(index + 1) * e]
        y = x @ w.T
        if self.in_proj_bias is not None:
            y = y + self.in_proj_bias[index * e:(index + 1) * e]
        return y.reshape(*x.shape[:-1], self.num_heads, e // self.num_heads)

    def __call__(
        self,
        query: jax.Array,
        key: jax.Array,
        value: jax.Array,
        *,
        need_weights: bool = False,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
    ) -> tuple[jax.Array, jax.Array | None]:
        if not self.batch_first:
            query, key, value = (jnp.swapaxes(a, 0, 1) for a in (query, key, value))
        q = self._project(query, 0)
        k = self._project(key, 1)
        v = self._project(value, 2)
        use_dropout = train and self.attn_dropout.rate > 0.0
        weights = None
        if use_dropout or need_weights:
            probs = attention_weights(q, k)
            if need_weights:
                weights = probs.mean(axis=1)  # torch averages over heads before dropout
            probs = self.attn_dropout(probs, deterministic=not train, rngs=rngs)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        else:
            out = jax.nn.dot_product_attention(q, k, v)
        out = self.out_proj(out.reshape(*out.shape[:-2], self.embed_dim))
        if not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights


class TransformerEncoderLayer(nnx.Module):
    """``torch.nn.TransformerEncoderLayer`` with ``norm_first=False`` (post-norm).

    Sub-module names match torch (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``).
    Constructor defaults are torch's (``dim_feedforward=2048``, ``dropout=0.1``, ``relu``,
    ``batch_first=False``); the original passes ``4 * d_model``, ``gelu`` and ``batch_first=True``.
    """

    def __init__(
        self,
        d_model: int,
        nhead: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = LAYER_NORM_EPS,
        batch_first: bool = False,
        *,
        rngs: nnx.Rngs,
    ):
        _activation(activation)  # validate early
        self.activation = activation
        self.batch_first = batch_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=True, rngs=rngs)
        self.linear1 = linear(d_model, dim_feedforward, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.linear2 = linear(dim_feedforward, d_model, rngs=rngs)
        self.norm1 = layer_norm(d_model, layer_norm_eps, rngs=rngs)
        self.norm2 = layer_norm(d_model, layer_norm_eps, rngs=rngs)
        self.dropout1 = nnx.Dropout(dropout)
        self.dropout2 = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        det = not train
        attn, _ = self.self_attn(x, x, x, train=train, rngs=rngs)
        x = self.norm1(x + self.dropout1(attn, deterministic=det, rngs=rngs))
        h = self.dropout(_activation(self.activation)(self.linear1(x)), deterministic=det, rngs=rngs)
        x = self.norm2(x + self.dropout2(self.linear2(h), deterministic=det, rngs=rngs))
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        return x


class TransformerEncoder(nnx.Module):
    """``torch.nn.TransformerEncoder(layer, num_layers)`` without a final norm: ``layers.<i>``."""

    def __init__(
        self,
        d_model: int,
        nhead: int,
        num_layers: int,
        dim_feedforward: int = 2048,
        dropout: float = 0.1,
        activation: str = "relu",
        layer_norm_eps: float = LAYER_NORM_EPS,
        batch_first: bool = False,
        *,
        rngs: nnx.Rngs,
    ):
        self.layers = nnx.List(
            [
                TransformerEncoderLayer(
                    d_model,
                    nhead,
                    dim_feedforward,
                    dropout,
                    activation,
                    layer_norm_eps,
                    batch_first,
                    rngs=rngs,
                )
                for _ in range(num_layers)
            ]
        )

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        for layer in self.layers:
            x = layer(x, train=train, rngs=rngs)
        return x


@functools.lru_cache(maxsize=None)
def sinusoidal_table(max_len: int, d_model: int) -> np.ndarray:
    """The original's table ``[max_len, d_model]``: sin on even, cos on odd channels (float32).

    The arguments are formed in float32 as torch does; exp/sin/cos are evaluated in float64 and
    rounded, which lands within 1e-4 of torch's float32 table at position 2000 (torch's own
    vectorised exp/sin are not correctly rounded, so bit-equality is not available).
    """
    position = np.arange(max_len, dtype=np.float32)[:, None]
    exponent = np.arange(0, d_model, 2, dtype=np.float32) * np.float32(-math.log(10000.0) / d_model)
    div_term = np.exp(exponent.astype(np.float64)).astype(np.float32)
    angles = (position * div_term).astype(np.float64)
    pe = np.zeros((max_len, d_model), np.float32)
    pe[:, 0::2] = np.sin(angles)
    pe[:, 1::2] = np.cos(angles[:, : d_model // 2])
    pe.setflags(write=False)
    return pe


class PositionalEncoding(nnx.Module):
    """``x + pe[:T]`` then dropout, on ``[B, T, E]``.

    The table is a constant, not a variable. torch stores it as the buffer ``pe``
    (``[1, max_len, E]``); :func:`torch_constants` lets the converter check and consume it.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 2000, *, rngs: nnx.Rngs | None = None):
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nnx.Dropout(dropout)

    def torch_constants(self) -> dict[str, np.ndarray]:
        return {"pe": sinusoidal_table(self.max_len, self.d_model)[None]}

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        t = x.shape[-2]
        if t > self.max_len:
            raise ValueError(f"sequence of {t} frames exceeds the positional table's max_len {self.max_len}")
        x = x + jnp.asarray(sinusoidal_table(self.max_len, self.d_model)[:t], x.dtype)
        return self.dropout(x, deterministic=not train, rngs=rngs)
