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

Shapes: ``[B, T, H, d]`` (batch, frames, heads, head width ``d`` in [1, 256]). The kernel
runs widths that are powers of two from 16 as they are; other widths are zero-padded up to
the next such power (:func:`padded_head_dim`; zero features change neither ``q . k`` nor the
output's first ``d``), with the softmax scale kept at ``1/sqrt(d)``. Frames are padded to a
multiple of the block size; padded keys are masked out and padded queries dropped. Under a
multi-device mesh (:func:`batch_sharded`) the kernels run per device on its rows of the batch
through ``shard_map``.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import math
import os
import re

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu
from jax.sharding import PartitionSpec as P

_GOLDEN = -1640531527  # 0x9E3779B9 as int32
_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
_LOG2E = math.log2(math.e)
# (frames per tile, warps per program, pipeline stages) by pass ("fwd" or "bwd") and the width
# the kernel runs (after padding). 64 frames, 4 warps and 2 stages were the fastest measured at
# width 16 on one H200 for both passes (12 calls [8, 1200, 8, 16] forward+backward: 7.7 ms,
# against 8.4 for 32/2 and 9.3-28 for the others tried; experiments/README.md, "Flash
# attention"). A (pass, width) missing here takes DEFAULT_TILES; JAXAUDIO_FLASH_TILES
# (``fwd:64=128x4x2,bwd:32=32x2x1``) overrides entries when a step is traced.
TILES: dict[tuple[str, int], tuple[int, int, int]] = {}
DEFAULT_TILES = (64, 4, 2)
PASSES = ("fwd", "bwd")
TILES_ENV = "JAXAUDIO_FLASH_TILES"
_TILE_ENTRY = re.compile(r"(fwd|bwd):(\d+)=(\d+)x(\d+)x(\d+)")


def tile_overrides(raw: str | None = None) -> dict[tuple[str, int], tuple[int, int, int]]:
    """``JAXAUDIO_FLASH_TILES`` parsed: ``pass:width=block x warps x stages`` entries, comma
    separated; blocks are powers of two from 16, warps powers of two, stages at least 1."""
    raw = os.environ.get(TILES_ENV, "") if raw is None else raw
    out = {}
    for entry in filter(None, (e.strip() for e in raw.split(","))):
        m = _TILE_ENTRY.fullmatch(entry)
        vals = tuple(int(x) for x in m.groups()[2:]) if m else ()
        if not m or vals[0] < 16 or vals[0] & (vals[0] - 1) or vals[1] & (vals[1] - 1) \
                or not vals[1] or not vals[2]:
            raise ValueError(f"{TILES_ENV}: bad entry {entry!r}; expected pass:width=BxWxS, "
                             f"e.g. fwd:64=128x4x2 (pass fwd or bwd, block a power of two "
                             f">= 16, warps a power of two, stages >= 1)")
        out[(m.group(1), int(m.group(2)))] = vals
    return out


def tiles(d: int, kind: str = "fwd") -> tuple[int, int, int]:
    """``(block, num_warps, num_stages)`` of pass ``kind`` for head width ``d``."""
    if kind not in PASSES:
        raise ValueError(f"tiles: kind must be one of {PASSES}, got {kind!r}")
    return tile_overrides().get((kind, d), TILES.get((kind, d), DEFAULT_TILES))


def _mix32(x: jax.Array) -> jax.Array:
    """The "lowbias32" hash on int32 bits (logical shifts, wrapping products)."""
    x = x ^ lax.shift_right_logical(x, jnp.int32(16))
    x = x * jnp.int32(_M1)
    x = x ^ lax.shift_right_logical(x, jnp.int32(15))
    x = x * jnp.int32(_M2)
    return x ^ lax.shift_right_logical(x, jnp.int32(16))


def _threshold(rate: float) -> int:
    return int(round(float(rate) * (1 << 24)))


def _keep(row_keys: jax.Array, cols: jax.Array, rate: float) -> jax.Array:
    """Kept entries for row keys ``[..., Tq, 1]`` and key indices ``[1, Tk]`` (int32)."""
    bits = _mix32(row_keys ^ (cols * jnp.int32(_GOLDEN)))
    return lax.shift_right_logical(bits, jnp.int32(8)) >= jnp.int32(_threshold(rate))


def row_keys(key: jax.Array, batch: int, heads: int, frames: int) -> jax.Array:
    """The random int32 row keys ``[B, H, Tq]`` of one attention call."""
    return lax.bitcast_convert_type(jax.random.bits(key, (batch, heads, frames), jnp.uint32),
                                    jnp.int32)


def dropout_keep(key: jax.Array, shape: tuple[int, int, int, int], rate: float) -> jax.Array:
    """The keep mask ``[B, H, Tq, Tk]`` (bool) that the kernels draw from ``key``."""
    b, h, tq, tk = shape
    rk = row_keys(key, b, h, tq)[..., None]
    return _keep(rk, jnp.arange(tk, dtype=jnp.int32)[None, :], rate)


def matmul_precision():
    """The products' precision: the step's (TF32 by default, full float32 under 'highest')."""
    p = str(jax.config.jax_default_matmul_precision or "").lower()
    return lax.Precision.HIGHEST if p in ("highest", "float32", "fp32") else lax.Precision.DEFAULT


def _dot(a, b, ca: int, cb: int, precision):
    """``a @ b`` contracting ``a``'s axis ``ca`` with ``b``'s axis ``cb`` (2-D tiles), float32."""
    return lax.dot_general(a, b, (((ca,), (cb,)), ((), ())), precision=precision,
                           preferred_element_type=jnp.float32)


def _scores(q, k, start, tk: int, t: int, c: float, precision):
    """Logits of one tile in base-2 units; keys past ``tk`` (padding up to ``t``) masked out."""
    s = _dot(q, k, 1, 1, precision) * c
    cols = start + jnp.arange(k.shape[0], dtype=jnp.int32)
    if tk < t:
        s = jnp.where(cols[None, :] < tk, s, _MASK_VALUE)
    return s, cols


def _fwd_kernel(rk_ref, q_ref, k_ref, v_ref, o_ref, lse_ref, *, c, rate, tk, block, precision):
    q = q_ref[...]
    bq, d = q.shape
    rk = rk_ref[...][:, None]

    def body(j, carry):
        acc, m, l = carry
        start = pl.multiple_of(j * block, block)
        k = k_ref[pl.ds(start, block), :]
        v = v_ref[pl.ds(start, block), :]
        s, cols = _scores(q, k, start, tk, k_ref.shape[0], c, precision)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        alpha = jnp.exp2(m - m_new)
        p = jnp.exp2(s - m_new[:, None])
        l = alpha * l + jnp.sum(p, axis=1)
        if rate > 0.0:
            p = jnp.where(_keep(rk, cols[None, :], rate), p, 0.0)
        acc = alpha[:, None] * acc + _dot(p, v, 1, 0, precision)
        return acc, m_new, l

    init = (jnp.zeros((bq, d), jnp.float32), jnp.full((bq,), -jnp.inf, jnp.float32),
            jnp.zeros((bq,), jnp.float32))
    acc, m, l = lax.fori_loop(0, k_ref.shape[0] // block, body, init)
    scale = 1.0 / (1.0 - rate) if rate > 0.0 else 1.0
    o_ref[...] = (acc * (scale / l)[:, None]).astype(o_ref.dtype)
    lse_ref[...] = m + jnp.log2(l)


def _tile_grads(q, k, v, do, lse, delta, rk, start, *, c, rate, tk, t, precision):
    """One tile's ``p`` (dropped and scaled) and ``dS`` (natural-log units, without ``scale``)."""
    s, cols = _scores(q, k, start, tk, t, c, precision)
    p = jnp.exp2(s - lse[:, None])
    dp = _dot(do, v, 1, 1, precision)
    if rate > 0.0:
        keep = _keep(rk, cols[None, :], rate)
        inv = 1.0 / (1.0 - rate)
        pd = jnp.where(keep, p * inv, 0.0)
        dp = jnp.where(keep, dp * inv, 0.0)
    else:
        pd = p
    return pd, p * (dp - delta[:, None])


def _bwd_kernel(rk_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref, dq_ref, dk_ref, dv_ref,
                *, c, scale, rate, tk, block, precision):
    """One program: dK, dV of key block ``j`` (over all query blocks), then dQ of query block
    ``j`` (over all key blocks)."""
    j = pl.program_id(2)
    t = q_ref.shape[0]
    d = q_ref.shape[1]
    kw = dict(c=c, rate=rate, tk=tk, t=t, precision=precision)
    kstart = pl.multiple_of(j * block, block)
    k = k_ref[pl.ds(kstart, block), :]
    v = v_ref[pl.ds(kstart, block), :]

    def over_queries(i, carry):
        dk, dv = carry
        qs = pl.ds(pl.multiple_of(i * block, block), block)
        q, do = q_ref[qs, :], do_ref[qs, :]
        pd, ds = _tile_grads(q, k, v, do, lse_ref[qs], delta_ref[qs], rk_ref[qs][:, None],
                             kstart, **kw)
        return dk + _dot(ds, q, 0, 0, precision), dv + _dot(pd, do, 0, 0, precision)

    zeros = jnp.zeros((block, d), jnp.float32)
    dk, dv = lax.fori_loop(0, t // block, over_queries, (zeros, zeros))
    dk_ref[...] = (dk * scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)

    qs = pl.ds(kstart, block)
    q, do, lse, delta = q_ref[qs, :], do_ref[qs, :], lse_ref[qs], delta_ref[qs]
    rk = rk_ref[qs][:, None]

    def over_keys(i, dq):
        start = pl.multiple_of(i * block, block)
        ks = pl.ds(start, block)
        k_i = k_ref[ks, :]
        _, ds = _tile_grads(q, k_i, v_ref[ks, :], do, lse, delta, rk, start, **kw)
        return dq + _dot(ds, k_i, 1, 0, precision)

    dq = lax.fori_loop(0, t // block, over_keys, zeros)
    dq_ref[...] = (dq * scale).astype(dq_ref.dtype)


def _call(kernel, grid, in_specs, out_specs, out_shape, interpret, name, num_warps, num_stages):
    return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs,
                          out_shape=out_shape, interpret=interpret, name=name,
                          compiler_params=plgpu.CompilerParams(num_warps=num_warps,
                                                               num_stages=num_stages))


def _forward(q, k, v, rk, rate, tk, interpret, dim):
    b, t, h, d = q.shape
    block, warps, stages = tiles(d, "fwd")
    c = _LOG2E / math.sqrt(dim)
    kern = functools.partial(_fwd_kernel, c=c, rate=rate, tk=tk, block=block,
                             precision=matmul_precision())
    full = pl.BlockSpec((None, t, None, d), lambda i, bb, hh: (bb, 0, hh, 0))
    tile = pl.BlockSpec((None, block, None, d), lambda i, bb, hh: (bb, i, hh, 0))
    row = pl.BlockSpec((None, None, block), lambda i, bb, hh: (bb, hh, i))
    return _call(kern, (t // block, b, h), [row, tile, full, full], [tile, row],
                 [jax.ShapeDtypeStruct(q.shape, q.dtype),
                  jax.ShapeDtypeStruct((b, h, t), jnp.float32)],
                 interpret, "flash_attention_fwd", warps, stages)(rk, q, k, v)


def _backward(q, k, v, rk, out, lse, do, rate, tk, interpret, dim):
    b, t, h, d = q.shape
    delta = jnp.einsum("bthd,bthd->bht", out.astype(jnp.float32), do.astype(jnp.float32))
    block, warps, stages = tiles(d, "bwd")
    kern = functools.partial(_bwd_kernel, c=_LOG2E / math.sqrt(dim), scale=1.0 / math.sqrt(dim),
                             rate=rate, tk=tk, block=block, precision=matmul_precision())
    full = pl.BlockSpec((None, t, None, d), lambda bb, hh, j: (bb, 0, hh, 0))
    row = pl.BlockSpec((None, None, t), lambda bb, hh, j: (bb, hh, 0))
    tile = pl.BlockSpec((None, block, None, d), lambda bb, hh, j: (bb, j, hh, 0))
    shapes = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (q, k, v)]
    return _call(kern, (b, h, t // block), [row, full, full, full, full, row, row],
                 [tile, tile, tile], shapes, interpret, "flash_attention_bwd", warps, stages)(
        rk, q, k, v, do, lse, delta)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _flash(q, k, v, rk, rate, tk, interpret, dim):
    return _forward(q, k, v, rk, rate, tk, interpret, dim)[0]


def _flash_fwd(q, k, v, rk, rate, tk, interpret, dim):
    out, lse = _forward(q, k, v, rk, rate, tk, interpret, dim)
    return out, (q, k, v, rk, out, lse)


def _flash_bwd(rate, tk, interpret, dim, res, do):
    q, k, v, rk, out, lse = res
    dq, dk, dv = _backward(q, k, v, rk, out, lse, do, rate, tk, interpret, dim)
    return dq, dk, dv, None


_flash.defvjp(_flash_fwd, _flash_bwd)


def padded_head_dim(d: int) -> int:
    """The width the kernel computes a head of width ``d`` at: ``d`` zero-padded up to a power
    of two >= 16 (zero features change neither ``q . k`` nor the output's first ``d``)."""
    return max(16, 1 << max(d - 1, 0).bit_length())


def supported_head_dim(d: int) -> bool:
    """Head widths the kernel takes: 1 to 256; widths other than the powers of two from 16
    (Triton's smallest product) are zero-padded (:func:`padded_head_dim`)."""
    return 1 <= d <= 256


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
        raise ValueError(f"flash_attention: head width {d} must be in [1, 256]")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"flash_attention: rate must be in [0, 1), got {rate}")
    if rate > 0.0 and key is None:
        raise ValueError("flash_attention: rate > 0 needs the dropout key")
    rk = (row_keys(key, b, h, tq) if rate > 0.0 else jnp.zeros((b, h, tq), jnp.int32))
    dp = padded_head_dim(d)
    block = max(tiles(dp, kind)[0] for kind in PASSES)  # powers of two: both passes' divide it
    t = -(-max(tq, tk) // block) * block
    pad = lambda x, axis, n: jnp.pad(x, [(0, n - x.shape[axis]) if a == axis else (0, 0)
                                         for a in range(x.ndim)])
    q, k, v = (pad(pad(x, 1, t), 3, dp) for x in (q, k, v))
    rk = pad(rk, 2, t)
    fn = lambda q, k, v, rk: _flash(q, k, v, rk, float(rate), tk, interpret, d)
    ctx = _MESH.get()
    if ctx is not None:
        mesh, axis = ctx
        n = mesh.shape[axis]
        if n > 1 and b % n == 0:
            spec = P(axis)
            fn = jax.shard_map(fn, mesh=mesh, in_specs=(spec, spec, spec, spec),
                               out_specs=spec, check_vma=False)
    return fn(q, k, v, rk)[:, :tq, :, :d]
