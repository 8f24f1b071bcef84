"""Flash attention with dropout on the probabilities, a Pallas (Triton) kernel for CUDA GPUs.

The float32 training route of :mod:`jaxaudio.nn.attention` on a GPU (cuDNN's fused attention
takes only bf16/fp16): ``softmax(q k^T / sqrt(d))``, dropout on the probabilities (rate ``p``,
kept entries scaled by ``1/(1-p)``, torch's semantics), ``@ v``, without materialising the
``[B, H, Tq, Tk]`` probabilities in the forward or the backward (FlashAttention-2: an online
softmax over key blocks, the log-sum-exp kept for the backward, which recomputes each tile).

**Dropout masks** are a function of the call's key, not a stream: every query row ``(b, h, i)``
gets a random 32-bit row key (``jax.random.bits`` of the call's key), and entry ``(i, j)`` is
kept when the top 24 bits of ``mix32(row_key ^ (j * 0x9E3779B9))`` are at least
``round(p * 2^24)``, ``mix32`` being the "lowbias32" integer hash (a bijection of 32-bit words
with a low avalanche bias). The forward and backward kernels evaluate the same hash, so the
backward replays the forward's mask exactly, and :func:`dropout_keep` evaluates it in plain XLA
for the float32 route on other backends: both routes draw the same masks from the same key,
which is what lets the tests compare them with dropout on, and what makes a resumed run replay
its masks.

Matrix products run at the step's matmul precision: XLA's default (TF32 on this GPU, the same
as the float32 route's products) or full float32 under ``jax_default_matmul_precision
= "highest"``. Softmax statistics and accumulators are float32.

Shapes: ``[B, T, H, d]`` (batch, frames, heads, head width ``d`` in [1, 96],
:data:`MAX_WIDTH`). The kernels (:mod:`jaxaudio.nn.flash_kernels`) take a head as chunks whose
widths are powers of two from 16 (:func:`head_chunks`): width 48 runs as 32 + 16 (zero-padding
it to 64 was slower); the softmax scale stays ``1/sqrt(d)``. The backward computes dQ from
per-key-block partial sums (one pass over the tiles) for chunks up to 32 wide and up to 32 key
blocks (their buffer grows with the square of the frames), where they were faster, and
recomputes the tiles for it otherwise (:func:`dq_form`); both are deterministic.
Frames are padded to a multiple of the block size; padded keys are masked out and padded
queries dropped. Under a multi-device mesh (:func:`batch_sharded`) the kernels run per device
on its rows of the batch through ``shard_map``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import PartitionSpec as P

from jaxaudio.nn import flash_kernels as kernels

# (frames per tile, warps per program, pipeline stages) by pass ("fwd" or "bwd") and the width
# the kernels run (the sum of the head's chunks). 64 frames, 4 warps and 2 stages were the
# fastest measured at width 16 on one H200 for both passes (12 calls [8, 1200, 8, 16]
# forward+backward: 7.7 ms, against 8.4 for 32/2 and 9.3-28 for the others tried), and at
# widths 32 and 64 within 1.2 %. A (pass, width) missing here takes DEFAULT_TILES.
TILES: dict[tuple[str, int], tuple[int, int, int]] = {}
DEFAULT_TILES = (64, 4, 2)
PASSES = ("fwd", "bwd")
# dQ partial sums when no chunk is wider than this. On one H200 (12 calls with dropout,
# forward+backward) partials gained at width 32 (10.38 against 10.79 ms) and at 48 as 32 + 16
# (13.97 against 14.88), and lost at 64 (23.17 against 18.69 ms): a 64-wide tile's dQ share
# beside its dK and dV accumulators, and twice the buffer.
PARTIALS_MAX_CHUNK = 32
# ... and when the buffer has at most this many key-block slots (frames / block). The buffer
# holds one copy of q per slot, so it grows with the square of the frames: 32 slots of 64
# frames (2048 frames, 27 s of EnCodec latents) keep it under 32 copies of q; longer sequences
# recompute, whose memory stays linear. The headline step's 1200 frames take 19.
PARTIALS_MAX_SLOTS = 32
# The widest head the kernels take: the widest they have run on a GPU (96 = 64 + 32, the
# musical recipe's second stage at 4 heads). At width 256 (the composer's 512 at 2 heads) the
# forward's two-stage pipeline of 64-frame key and value tiles asked for 2 x 2 x 64 x 256 x 4 B
# = 256 KiB of shared memory on an H100, which has 227 KiB (RESOURCE_EXHAUSTED at the first
# step); wider heads take the explicit route (jaxaudio.nn.attention).
MAX_WIDTH = 96


def tiles(d: int, kind: str = "fwd") -> tuple[int, int, int]:
    """``(block, num_warps, num_stages)`` of pass ``kind`` for head width ``d``."""
    if kind not in PASSES:
        raise ValueError(f"tiles: kind must be one of {PASSES}, got {kind!r}")
    return TILES.get((kind, d), DEFAULT_TILES)


def row_keys(key: jax.Array, batch: int, heads: int, frames: int) -> jax.Array:
    """The random int32 row keys ``[B, H, Tq]`` of one attention call."""
    return lax.bitcast_convert_type(jax.random.bits(key, (batch, heads, frames), jnp.uint32),
                                    jnp.int32)


def dropout_keep(key: jax.Array, shape: tuple[int, int, int, int], rate: float) -> jax.Array:
    """The keep mask ``[B, H, Tq, Tk]`` (bool) that the kernels draw from ``key``."""
    b, h, tq, tk = shape
    rk = row_keys(key, b, h, tq)[..., None]
    return kernels.keep(rk, jnp.arange(tk, dtype=jnp.int32)[None, :], rate)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _flash(qs, ks, vs, rk, static, interpret):
    return _forward(qs, ks, vs, rk, static, interpret)[0]


def _forward(qs, ks, vs, rk, static, interpret):
    rate, tk, dim, _, fwd_tiles, _ = static
    return kernels.forward(qs, ks, vs, rk, rate=rate, tk=tk, dim=dim, interpret=interpret,
                           tiles=fwd_tiles)


def _flash_fwd(qs, ks, vs, rk, static, interpret):
    outs, lse = _forward(qs, ks, vs, rk, static, interpret)
    return outs, (qs, ks, vs, rk, outs, lse)


def _flash_bwd(static, interpret, res, dos):
    qs, ks, vs, rk, outs, lse = res
    rate, tk, dim, dq_form, _, bwd_tiles = static
    dqs, dks, dvs = kernels.backward(qs, ks, vs, rk, outs, lse, dos, rate=rate, tk=tk, dim=dim,
                                     tiles=bwd_tiles, dq_form=dq_form, interpret=interpret)
    return dqs, dks, dvs, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def head_chunks(d: int) -> tuple[int, ...]:
    """The widths, powers of two from 16, that the kernels run a head of width ``d`` as: ``d``
    rounded up to a multiple of 16, then taken apart into its binary digits (48 -> 32 + 16,
    12 -> 16)."""
    w = -(-d // 16) * 16
    return tuple(1 << b for b in reversed(range(w.bit_length())) if w >> b & 1)


def dq_form(chunks: tuple[int, ...], slots: int) -> str:
    """The backward's dQ form for a head run as ``chunks`` over ``slots`` key blocks: partial
    sums when no chunk is wider than :data:`PARTIALS_MAX_CHUNK` and there are at most
    :data:`PARTIALS_MAX_SLOTS` key blocks, and recomputing otherwise."""
    narrow = max(chunks) <= PARTIALS_MAX_CHUNK and slots <= PARTIALS_MAX_SLOTS
    return "partials" if narrow else "recompute"


def supported_head_dim(d: int) -> bool:
    """Head widths the kernels take: 1 to :data:`MAX_WIDTH`."""
    return 1 <= d <= MAX_WIDTH


_MESH: contextvars.ContextVar = contextvars.ContextVar("jaxaudio_flash_mesh", default=None)


@contextlib.contextmanager
def batch_sharded(mesh, axis: str = "data"):
    """While tracing under this context, :func:`flash_attention` runs per device on the rows of
    the batch that ``mesh``'s ``axis`` gives it (``shard_map``): a Pallas call is opaque to
    XLA's partitioner, which would otherwise gather the whole batch on every device."""
    token = _MESH.set((mesh, axis))
    try:
        yield
    finally:
        _MESH.reset(token)


def current_batch_mesh():
    """``(mesh, axis)`` while tracing under :func:`batch_sharded`, else ``None``."""
    return _MESH.get()


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, rate: float = 0.0,
                    key: jax.Array | None = None, interpret: bool = False) -> jax.Array:
    """``softmax(q k^T / sqrt(d))`` with dropout ``rate`` on the probabilities, ``@ v``.

    ``q [B, Tq, H, d]``, ``k, v [B, Tk, H, d]`` (float32) -> ``[B, Tq, H, d]``. ``key``
    draws the dropout masks (required when ``rate > 0``; :func:`dropout_keep` gives the same
    masks in XLA). ``interpret=True`` runs the kernels in Pallas's interpreter (any backend).
    """
    b, tq, h, d = q.shape
    tk = k.shape[1]
    if k.shape != (b, tk, h, d) or v.shape != k.shape:
        raise ValueError(f"flash_attention: q {q.shape}, k {k.shape}, v {v.shape}: expected "
                         f"[B, T, H, d] with k and v alike and the same B, H, d as q")
    if not supported_head_dim(d):
        raise ValueError(f"flash_attention: head width {d} must be in [1, {MAX_WIDTH}]")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"flash_attention: rate must be in [0, 1), got {rate}")
    if rate > 0.0 and key is None:
        raise ValueError("flash_attention: rate > 0 needs the dropout key")
    rk = (row_keys(key, b, h, tq) if rate > 0.0 else jnp.zeros((b, h, tq), jnp.int32))
    chunks = head_chunks(d)
    fwd_tiles, bwd_tiles = (tiles(sum(chunks), kind) for kind in PASSES)  # keyed by the width
    block = max(fwd_tiles[0], bwd_tiles[0])  # powers of two: both divide it
    t = -(-max(tq, tk) // block) * block
    # everything the kernels are built from, resolved once
    static = (float(rate), tk, d, dq_form(chunks, t // bwd_tiles[0]), fwd_tiles, bwd_tiles)
    offsets = [sum(chunks[:i]) for i in range(len(chunks))]

    def split(x):
        """Each chunk sliced, then padded (frames to ``t``, the last chunk's width to its
        power of two): no padded copy of the whole head shared by the chunks' slices. (On an
        H200 this moved about 0.3 ms of copies from the forward into the backward's gradient
        sums rather than saving it; experiments/README.md.)"""
        parts = []
        for o, w in zip(offsets, chunks):
            part = x[..., o:min(o + w, d)]
            parts.append(jnp.pad(part, [(0, 0), (0, t - x.shape[1]), (0, 0),
                                        (0, w - part.shape[-1])]))
        return tuple(parts)

    def fn(q, k, v, rk):
        outs = _flash(split(q), split(k), split(v), jnp.pad(rk, [(0, 0), (0, 0), (0, t - tq)]),
                      static, interpret)
        out = outs[0] if len(outs) == 1 else jnp.concatenate(outs, axis=-1)
        return out[:, :tq, :, :d]

    ctx = _MESH.get()
    if ctx is not None:
        mesh, axis = ctx
        n = mesh.shape[axis]
        if n > 1 and b % n == 0:
            spec = P(axis)
            fn = jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, spec),
                               out_specs=spec, check_vma=False)
    return fn(q, k, v, rk)
