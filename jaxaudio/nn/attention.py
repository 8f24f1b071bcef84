"""``torch.nn.MultiheadAttention`` (``kdim = vdim = embed_dim``) in torch's packed layout.

Variables (torch names): ``in_proj_weight [3E, E]`` (rows q, k, v), ``in_proj_bias [3E]``,
``out_proj.weight [E, E]``, ``out_proj.bias [E]``. Initialisation as torch: Xavier-uniform on
the packed ``[3E, E]`` matrix, zero in/out biases, ``out_proj.weight`` U(+-1/sqrt(E)).

The projections follow torch's ``_in_projection_packed``: self-attention (``query is key is
value``) is one ``[3E, E]`` product, cross-attention with ``key is value`` (the masking agent)
two. The attention itself takes one of torch's two routes:

- ``need_weights=True`` or training with attention dropout: the explicit route of
  ``F.multi_head_attention_forward`` (q scaled by ``1/sqrt(E/H)`` before ``q k^T``, softmax,
  dropout on the probabilities, then ``@ v``); the returned weights are averaged over heads
  after the dropout, as torch returns them;
- otherwise ``jax.nn.dot_product_attention`` (torch's ``scaled_dot_product_attention`` route,
  and a fused kernel where the backend has one).

Dropout masks come from :func:`jaxaudio.nn.flash_attention.dropout_keep`: one key of stream
``dropout`` per call, a random key per query row drawn from it, and an integer hash of (row
key, key frame) per entry. The explicit route evaluates it in XLA, the GPU kernel below in the
kernel, so both draw the same masks, and a resumed run replays them.

On a CUDA GPU, both routes go through a fused flash attention instead (:func:`attention_impl`),
which never materialises the ``[B, H, Tq, Tk]`` probabilities and drops them inside the kernel
(the original's semantics: rate ``dropout``, kept entries scaled by ``1/(1-p)``):

- float32 q, k, v: the Pallas (Triton) kernel of :mod:`jaxaudio.nn.flash_attention`, at the
  step's matmul precision (TF32 by default, as the explicit route's products), for head widths
  up to 96 (:data:`jaxaudio.nn.flash_attention.MAX_WIDTH`), run as power-of-two chunks
  from 16 (the cascade's second stage has 384 / 8 = 48, run as 32 + 16; see
  :func:`jaxaudio.nn.flash_attention.head_chunks`); wider heads take the explicit route;
- bf16/fp16 (``--precision bf16``): cuDNN's fused flash attention. Its masks come from cuDNN's
  Philox generator, not from ``rngs``: each call site has its own seed (numbered in trace
  order) and XLA advances the offset at every execution, so masks differ between layers and
  steps, forward and backward agree, but a resumed run draws other masks than an
  uninterrupted one. cuDNN's dropout state must stay out of XLA's command buffers: ``auto``
  takes cuDNN only when ``XLA_FLAGS`` sets ``--xla_gpu_enable_command_buffer`` without
  ``CUDNN`` (:func:`jaxaudio.runtime.configure_gpu_flags` does; a crash was seen without it).

``need_weights=True`` always takes the explicit route; everywhere else the route follows the
device and the dtype (:func:`attention_impl`) when a step is traced.

Shapes: ``B`` batch, ``Tq``/``Tk`` query/key frames, ``E`` embedding, ``H`` heads.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import flash_attention as flash
from jaxaudio.nn.layers import Linear, torch_uniform
from jaxaudio.runtime import cudnn_command_buffers_off


def attention_weights(q: jax.Array, k: jax.Array) -> jax.Array:
    """Softmax attention probabilities ``[B, H, Tq, Tk]`` from ``q [B, Tq, H, d]``, ``k [B, Tk, H, d]``."""
    # torch scales q before the product on this route; the same order keeps the round-off alike.
    logits = jnp.einsum("bqhd,bkhd->bhqk", q * math.sqrt(1.0 / q.shape[-1]), k)
    # The softmax's reductions in float32, also when q and k are bf16.
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(q.dtype)


def _dropout(probs: jax.Array, rate: float, key: jax.Array) -> jax.Array:
    """Inverted dropout on probabilities ``[B, H, Tq, Tk]``, the flash kernel's masks."""
    if rate >= 1.0:
        return jnp.zeros_like(probs)
    keep = flash.dropout_keep(key, probs.shape, rate)
    return jnp.where(keep, probs / (1.0 - rate), jnp.zeros_like(probs))


@functools.partial(jax.checkpoint, static_argnums=(3,))
def _attend_with_dropout(q: jax.Array, k: jax.Array, v: jax.Array, rate: float,
                         key: jax.Array) -> jax.Array:
    """The explicit route in training, rematerialised: the backward recomputes the
    ``[B, H, Tq, Tk]`` probabilities and the dropout mask (same key, same draw) instead of
    keeping them, so attention memory stays linear in ``Tk`` (12 layers over 1200 frames would
    otherwise hold gigabytes of probabilities and masks)."""
    probs = _dropout(attention_weights(q, k), rate, key)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


ATTENTION_IMPLS = ("xla", "pallas", "cudnn")
_LOW_PRECISION = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
# Static cuDNN dropout seeds, one per traced call site, so that layers draw different masks.
_cudnn_seeds = itertools.count(1)
_route_logs: list[list[tuple[str, int, str]]] = []


@contextlib.contextmanager
def record_routes():
    """Yields a list that collects ``(dtype name, head width, route)`` for every attention call
    traced inside the block: what q, k and v really are when the step runs, which a
    configuration's precision alone does not say (a float32 buffer can promote a bf16 layer)."""
    log: list[tuple[str, int, str]] = []
    _route_logs.append(log)
    try:
        yield log
    finally:
        _route_logs.remove(log)


def cudnn_attention_available() -> bool:
    """True when JAX's default backend is a CUDA GPU (cuDNN's fused attention exists there)."""
    if jax.default_backend() != "gpu":
        return False
    platform = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    return "rocm" not in platform


def attention_impl(dtype, *, head_dim: int, need_weights: bool = False) -> str:
    """The route for q, k, v of ``dtype`` with ``head_dim`` features per head: ``"cudnn"``,
    ``"pallas"`` or ``"xla"`` (see the module doc)."""
    if need_weights or not cudnn_attention_available():
        return "xla"
    if jnp.dtype(dtype) in _LOW_PRECISION:
        return "cudnn" if cudnn_command_buffers_off() else "xla"
    # Widths that are no power of two (the cascade's second stage: 384 / 8 = 48) included: on
    # an H200 the raw-clip step ran 84.6 samples/s with width 48 on the kernel (padded to 64)
    # against 80.0 on the explicit route, before the kernel ran it as 32 + 16
    # (experiments/README.md).
    return "pallas" if flash.supported_head_dim(head_dim) else "xla"


def _attend_cudnn(q: jax.Array, k: jax.Array, v: jax.Array, rate: float) -> jax.Array:
    """cuDNN flash attention on ``[B, T, H, d]``; ``rate > 0`` drops probabilities in-kernel."""
    from jax._src.cudnn.fused_attention_stablehlo import dot_product_attention

    kw = {"seed": next(_cudnn_seeds), "dropout_rate": float(rate)} if rate > 0 else {}
    return dot_product_attention(q, k, v, scale=1.0 / math.sqrt(q.shape[-1]),
                                 qkv_layout="BTNH", **kw)


class MultiheadAttention(nnx.Module):
    """``torch.nn.MultiheadAttention(embed_dim, num_heads, dropout, bias, batch_first)``.

    ``__call__(query, key, value)`` returns ``(output, weights)`` like torch: ``output`` has the
    query's shape; ``weights [B, Tq, Tk]`` (averaged over heads) only with ``need_weights=True``
    (torch's default is True; here False, so the fused attention route can be taken), else None.
    Inputs are ``[B, T, E]`` with ``batch_first=True``, else ``[T, B, E]`` (torch's default).

    ``dropout`` is torch's float attribute of the same name: the rate on the attention
    probabilities in training (keys from ``rngs``, stream ``dropout``); set it to 0.0 to make a
    training forward deterministic.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, *, rngs: nnx.Rngs):
        if embed_dim % num_heads:
            raise ValueError(f"MultiheadAttention: embed_dim ({embed_dim}) must be divisible by "
                             f"num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.dropout = float(dropout)
        self.batch_first = batch_first
        bound = math.sqrt(6.0 / (embed_dim + 3 * embed_dim))  # xavier_uniform on [3E, E]
        self.in_proj_weight = nnx.Param(
            torch_uniform(rngs.params(), (3 * embed_dim, embed_dim), bound))
        self.in_proj_bias = nnx.Param(jnp.zeros((3 * embed_dim,), jnp.float32)) if bias else None
        self.out_proj = Linear(embed_dim, embed_dim, bias, rngs=rngs, zero_bias=True)

    def _in_projection(self, query, key, value) -> tuple[jax.Array, jax.Array, jax.Array]:
        """q, k, v as ``[B, T, H, E/H]``, with as few products as torch's packed projection."""
        w = self.in_proj_weight[...]
        b = None if self.in_proj_bias is None else self.in_proj_bias[...]

        def project(x, rows: slice, parts: int):
            y = x @ w[rows].T
            if b is not None:
                y = y + b[rows]
            return jnp.split(y, parts, axis=-1) if parts > 1 else [y]

        e = self.embed_dim
        if query is key and key is value:
            q, k, v = project(query, slice(0, 3 * e), 3)
        elif key is value:
            (q,) = project(query, slice(0, e), 1)
            k, v = project(key, slice(e, 3 * e), 2)
        else:
            (q,) = project(query, slice(0, e), 1)
            (k,) = project(key, slice(e, 2 * e), 1)
            (v,) = project(value, slice(2 * e, 3 * e), 1)
        heads = (self.num_heads, e // self.num_heads)
        return tuple(a.reshape(*a.shape[:-1], *heads) for a in (q, k, v))

    def __call__(self, query: jax.Array, key: jax.Array, value: jax.Array, *,
                 need_weights: bool = False, train: bool = False,
                 rngs: nnx.Rngs | None = None) -> tuple[jax.Array, jax.Array | None]:
        use_dropout = train and self.dropout > 0.0
        if use_dropout and rngs is None:
            raise ValueError(
                f"MultiheadAttention: train=True with dropout={self.dropout} needs the `rngs` "
                f"argument (stream 'dropout'); pass rngs or set dropout to 0.0")
        if not self.batch_first:
            swapped = {id(a): jnp.swapaxes(a, 0, 1) for a in (query, key, value)}
            query, key, value = (swapped[id(a)] for a in (query, key, value))  # keeps `is`
        q, k, v = self._in_projection(query, key, value)
        weights = None
        impl = attention_impl(q.dtype, need_weights=need_weights, head_dim=q.shape[-1])
        for log in _route_logs:
            log.append((jnp.dtype(q.dtype).name, q.shape[-1], impl))
        if impl == "pallas":
            drop_key = rngs.dropout() if use_dropout else None
            out = flash.flash_attention(*(a.astype(jnp.float32) for a in (q, k, v)),
                                        rate=self.dropout if use_dropout else 0.0,
                                        key=drop_key).astype(q.dtype)
        elif impl == "cudnn":
            # The key is still drawn so that every later dropout sees the same stream either way.
            rate = self.dropout if use_dropout else 0.0
            if use_dropout:
                rngs.dropout()
            out = _attend_cudnn(q, k, v, rate)
        elif use_dropout and not need_weights:
            out = _attend_with_dropout(q, k, v, self.dropout, rngs.dropout())
        elif use_dropout or need_weights:
            probs = attention_weights(q, k)
            if use_dropout:
                probs = _dropout(probs, self.dropout, rngs.dropout())
            if need_weights:
                weights = probs.mean(axis=1)
            out = jnp.einsum("bhqk,bkhd->bqhd", probs, v)
        else:
            out = jax.nn.dot_product_attention(q, k, v)
        out = self.out_proj(out.reshape(*out.shape[:-2], self.embed_dim))
        if not self.batch_first:
            out = jnp.swapaxes(out, 0, 1)
        return out, weights
