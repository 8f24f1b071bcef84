"""``torch.nn.TransformerEncoderLayer`` / ``TransformerEncoder`` and the sinusoidal positions.

- :class:`TransformerEncoderLayer` is torch's post-norm layer (``norm_first=False``)::

      x = norm1(x + dropout1(self_attn(x, x, x)))
      x = norm2(x + dropout2(linear2(dropout(activation(linear1(x))))))

  with torch's sub-module names (``self_attn``, ``linear1``, ``linear2``, ``norm1``, ``norm2``),
  exact (erf) GELU for ``activation="gelu"``, LayerNorm eps 1e-5 and the same four dropout
  sites (the attention-probability dropout inside ``self_attn``, then ``dropout1``,
  ``dropout``, ``dropout2``, drawn in that order).
- :class:`TransformerEncoder` holds the layers under ``layers.<i>`` and has no final norm (as
  the original uses it).
- :class:`PositionalEncoding` adds the original's sinusoidal table (``max_len`` 2000), then
  dropout. torch stores the table as the buffer ``pe [1, max_len, E]``; here it is a constant,
  offered to the converter through ``torch_constants()`` (checked there, not stored).

Modes are call arguments: ``train`` switches dropout on, with keys from the ``rngs`` argument
(stream ``dropout``). Shapes: ``B`` batch, ``T`` frames, ``E`` model width (``d_model``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.nn.attention import MultiheadAttention
from jaxaudio.nn.layers import Linear
from jaxaudio.nn.norm import LN_EPS, LayerNorm

_ACTIVATIONS = {
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
}


# The original's position table: sequences of at most this many frames.
MAX_POSITIONS = 2000

class TransformerEncoderLayer(nnx.Module):
    """``torch.nn.TransformerEncoderLayer`` with ``norm_first=False`` (post-norm).

    Constructor defaults are torch's (``dim_feedforward=2048``, ``dropout=0.1``, ``relu``,
    ``batch_first=False``); the original passes ``4 * d_model`` (SimpleTransformer) or 2048
    (the composer), ``gelu`` and ``batch_first=True``.
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048,
                 dropout: float = 0.1, activation: str = "relu", layer_norm_eps: float = LN_EPS,
                 batch_first: bool = False, *, rngs: nnx.Rngs):
        if activation not in _ACTIVATIONS:
            raise ValueError(f"TransformerEncoderLayer: activation must be one of "
                             f"{sorted(_ACTIVATIONS)} (as torch accepts), got {activation!r}")
        self.activation = activation
        self.batch_first = batch_first
        self.self_attn = MultiheadAttention(d_model, nhead, dropout, batch_first=True, rngs=rngs)
        self.linear1 = Linear(d_model, dim_feedforward, rngs=rngs)
        self.dropout = nnx.Dropout(dropout)
        self.linear2 = Linear(dim_feedforward, d_model, rngs=rngs)
        self.norm1 = LayerNorm(d_model, layer_norm_eps)
        self.norm2 = LayerNorm(d_model, layer_norm_eps)
        self.dropout1 = nnx.Dropout(dropout)
        self.dropout2 = nnx.Dropout(dropout)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        """``[B, T, E]`` (``batch_first``) or ``[T, B, E]`` -> the same shape."""
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        det = not train
        attn, _ = self.self_attn(x, x, x, train=train, rngs=rngs)
        x = self.norm1(x + self.dropout1(attn, deterministic=det, rngs=rngs))
        h = _ACTIVATIONS[self.activation](self.linear1(x))
        h = self.linear2(self.dropout(h, deterministic=det, rngs=rngs))
        x = self.norm2(x + self.dropout2(h, deterministic=det, rngs=rngs))
        if not self.batch_first:
            x = jnp.swapaxes(x, 0, 1)
        return x


def _deep_copy(module: nnx.Module) -> nnx.Module:
    """``copy.deepcopy`` as torch does it: a new module whose every array is a new buffer.

    ``nnx.clone`` copies the graph but keeps the arrays, so the copies' parameters would share
    device buffers with the original: a jitted step that donates its state then hands XLA the
    same buffer twice ("Attempt to donate the same buffer twice").
    """
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(lambda a: jnp.array(a, copy=True), state))


class TransformerEncoder(nnx.Module):
    """``torch.nn.TransformerEncoder(encoder_layer, num_layers)`` without a final norm.

    As torch, ``encoder_layer`` is deep-copied so that all ``num_layers`` layers start from the
    same weights (as separate arrays). Given a sequence of layers instead (and no
    ``num_layers``), those layers are used as they are, e.g. drawn independently.
    """

    def __init__(self, encoder_layer: TransformerEncoderLayer | Sequence[TransformerEncoderLayer],
                 num_layers: int | None = None):
        if isinstance(encoder_layer, TransformerEncoderLayer):
            if num_layers is None or num_layers < 1:
                raise ValueError(f"TransformerEncoder: num_layers must be >= 1 with one "
                                 f"encoder_layer to copy, got {num_layers}")
            layers = [encoder_layer] + [_deep_copy(encoder_layer) for _ in range(num_layers - 1)]
        else:
            layers = list(encoder_layer)
            if num_layers is not None and num_layers != len(layers):
                raise ValueError(f"TransformerEncoder: got {len(layers)} layers but "
                                 f"num_layers={num_layers}")
        self.layers = nnx.List(layers)

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        for layer in self.layers:
            x = layer(x, train=train, rngs=rngs)
        return x


@functools.lru_cache(maxsize=16)
def sinusoidal_table(length: int, d_model: int) -> np.ndarray:
    """torch's ``PositionalEncoding.pe[0, :length]``: ``[length, d_model]`` float32, read-only.

    Sin on even, cos on odd channels. torch builds it in float32: the exponent
    ``arange * (-ln(1e4) / d)`` and the phase ``position * div_term`` are rounded to float32, so
    we round them too (a float64 table would differ by up to 1e-4 at position 2000). ``exp``,
    ``sin`` and ``cos`` are evaluated in float64 and rounded once; torch's float32 ``exp``
    differs from that by 1 ulp in a few ``div_term`` entries (5 of 256 for d = 512), which moves
    the phase at position p by up to p * 6e-8: the table matches torch's buffer to 2e-6 for
    T <= 48 and 6e-5 for T <= 2000 (torch's vectorised exp/sin are not correctly rounded, so
    bit-equality is not available).
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
    """``x + pe[:T]`` then dropout, on ``[B, T, E]`` with ``T <= max_len``.

    The table is a constant, not a variable: torch's buffer ``pe [1, max_len, E]`` is offered
    to the checkpoint converter through :meth:`torch_constants`. ``dropout=0.0`` (the
    composer's positions, which have none) makes this a plain addition.
    """

    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = MAX_POSITIONS):
        self.d_model = d_model
        self.max_len = max_len
        self.dropout = nnx.Dropout(dropout)

    def torch_constants(self) -> dict[str, np.ndarray]:
        return {"pe": sinusoidal_table(self.max_len, self.d_model)[None]}

    def __call__(self, x: jax.Array, *, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> jax.Array:
        t = x.shape[-2]
        if t > self.max_len:
            raise ValueError(f"PositionalEncoding: {t} frames exceed the positional table's "
                             f"max_len {self.max_len} (the original's limit)")
        x = x + jnp.asarray(sinusoidal_table(self.max_len, self.d_model)[:t], x.dtype)
        return self.dropout(x, deterministic=not train, rngs=rngs)
