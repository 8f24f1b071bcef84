"""The Pallas (Triton) kernels of :mod:`jaxaudio.nn.flash_attention`: the dropout masks' hash,
the forward and the backward, and the ``pallas_call`` around each.

Every kernel takes a head as one or more **width chunks**: q, k, v and their gradients arrive
as tuples of ``[B, T, H, w]`` arrays whose widths ``w`` are powers of two from 16 (Triton's
products need such shapes). A width of 48 runs as 32 + 16: each tile's ``q . k`` is the sum of
the chunks' products and ``p @ v`` is computed chunk by chunk, so no zero feature is multiplied
(padded to 64, a quarter of the work would be zeros).

The backward has two forms (``dq``):

- ``"partials"``: one pass. The program of key block ``j`` walks every query block ``i``, adds
  its tile's share to ``dK_j`` and ``dV_j``, and writes the tile's share of ``dQ_i``,
  ``dS_ij K_j``, to a slot of its own, ``[j, i]``, of a ``[T / block, B, T, H, w]`` buffer; the
  slots are summed afterwards in a fixed order, so the result is deterministic (no atomics),
  and each tile's probabilities, mask and ``dS`` are computed once;
- ``"recompute"``: after ``dK_j`` and ``dV_j``, the same program computes ``dQ`` of query block
  ``j`` over every key block, which recomputes every tile's probabilities, mask and ``dS`` a
  second time (no buffer: the Triton tutorial's form).
"""

from __future__ import annotations

import functools
import math
import operator

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

_GOLDEN = -1640531527  # 0x9E3779B9 as int32
_M1 = 0x7FEB352D
_M2 = 0x846CA68B - (1 << 32)
_MASK_VALUE = -0.7 * float(jnp.finfo(jnp.float32).max)
_LOG2E = math.log2(math.e)
DQ_FORMS = ("partials", "recompute")


def mix32(x: jax.Array) -> jax.Array:
    """The "lowbias32" hash on int32 bits (logical shifts, wrapping products)."""
    x = x ^ lax.shift_right_logical(x, jnp.int32(16))
    x = x * jnp.int32(_M1)
    x = x ^ lax.shift_right_logical(x, jnp.int32(15))
    x = x * jnp.int32(_M2)
    return x ^ lax.shift_right_logical(x, jnp.int32(16))


def threshold(rate: float) -> int:
    return int(round(float(rate) * (1 << 24)))


def keep(row_keys: jax.Array, cols: jax.Array, rate: float) -> jax.Array:
    """Kept entries for row keys ``[..., Tq, 1]`` and key indices ``[1, Tk]`` (int32)."""
    bits = mix32(row_keys ^ (cols * jnp.int32(_GOLDEN)))
    return lax.shift_right_logical(bits, jnp.int32(8)) >= jnp.int32(threshold(rate))


def _dot(a, b, ca: int, cb: int, precision):
    """``a @ b`` contracting ``a``'s axis ``ca`` with ``b``'s axis ``cb`` (2-D tiles), float32."""
    return lax.dot_general(a, b, (((ca,), (cb,)), ((), ())), precision=precision,
                           preferred_element_type=jnp.float32)


def _dot_sum(xs, ys, ca: int, cb: int, precision):
    """The sum over width chunks of ``_dot(x, y)``: one product of the whole width."""
    return functools.reduce(operator.add, (_dot(x, y, ca, cb, precision) for x, y in zip(xs, ys)))


def _scores(qs, ks, start, tk: int, t: int, c: float, precision):
    """Logits of one tile in base-2 units; keys past ``tk`` (padding up to ``t``) masked out."""
    s = _dot_sum(qs, ks, 1, 1, precision) * c
    cols = start + jnp.arange(ks[0].shape[0], dtype=jnp.int32)
    if tk < t:
        s = jnp.where(cols[None, :] < tk, s, _MASK_VALUE)
    return s, cols


def _split(refs, n: int, groups: int):
    """``refs`` as ``groups`` runs of ``n`` (one ref per chunk), then the rest."""
    return [refs[i * n:(i + 1) * n] for i in range(groups)] + [refs[groups * n:]]


def _fwd_kernel(rk_ref, *refs, n, c, rate, tk, block, precision):
    q_refs, k_refs, v_refs, o_refs, (lse_ref,) = _split(refs, n, 4)
    qs = [r[...] for r in q_refs]
    bq = qs[0].shape[0]
    rk = rk_ref[...][:, None]
    t = k_refs[0].shape[0]

    def body(j, carry):
        accs, m, l = carry
        start = pl.multiple_of(j * block, block)
        s, cols = _scores(qs, [r[pl.ds(start, block), :] for r in k_refs], start, tk, t, c,
                          precision)
        m_new = jnp.maximum(m, jnp.max(s, axis=1))
        alpha = jnp.exp2(m - m_new)
        p = jnp.exp2(s - m_new[:, None])
        l = alpha * l + jnp.sum(p, axis=1)
        if rate > 0.0:
            p = jnp.where(keep(rk, cols[None, :], rate), p, 0.0)
        accs = tuple(alpha[:, None] * acc + _dot(p, r[pl.ds(start, block), :], 1, 0, precision)
                     for acc, r in zip(accs, v_refs))
        return accs, m_new, l

    init = (tuple(jnp.zeros((bq, q.shape[1]), jnp.float32) for q in qs),
            jnp.full((bq,), -jnp.inf, jnp.float32), jnp.zeros((bq,), jnp.float32))
    accs, m, l = lax.fori_loop(0, t // block, body, init)
    scale = 1.0 / (1.0 - rate) if rate > 0.0 else 1.0
    for o_ref, acc in zip(o_refs, accs):
        o_ref[...] = (acc * (scale / l)[:, None]).astype(o_ref.dtype)
    lse_ref[...] = m + jnp.log2(l)


def _tile_grads(qs, ks, vs, dos, lse, delta, rk, start, *, c, rate, tk, t, precision):
    """One tile's ``p`` (dropped and scaled) and ``dS`` (natural-log units, without ``scale``)."""
    s, cols = _scores(qs, ks, start, tk, t, c, precision)
    p = jnp.exp2(s - lse[:, None])
    dp = _dot_sum(dos, vs, 1, 1, precision)
    if rate > 0.0:
        kept = keep(rk, cols[None, :], rate)
        inv = 1.0 / (1.0 - rate)
        pd = jnp.where(kept, p * inv, 0.0)
        dp = jnp.where(kept, dp * inv, 0.0)
    else:
        pd = p
    return pd, p * (dp - delta[:, None])


def _bwd_kernel(rk_ref, *refs, n, c, scale, rate, tk, block, precision, dq_form):
    """One program: dK, dV of key block ``j`` over all query blocks, with each tile's share of
    dQ written to slot ``j`` (``"partials"``) or, after them, dQ of query block ``j`` over all
    key blocks (``"recompute"``)."""
    q_refs, k_refs, v_refs, do_refs, rest = _split(refs, n, 4)
    lse_ref, delta_ref = rest[:2]
    dq_refs, dk_refs, dv_refs, _ = _split(rest[2:], n, 3)
    j = pl.program_id(2)
    t = q_refs[0].shape[0]
    kw = dict(c=c, rate=rate, tk=tk, t=t, precision=precision)
    kstart = pl.multiple_of(j * block, block)
    ks = [r[pl.ds(kstart, block), :] for r in k_refs]
    vs = [r[pl.ds(kstart, block), :] for r in v_refs]
    partials = dq_form == "partials"

    def over_queries(i, carry):
        dks, dvs = carry
        qsl = pl.ds(pl.multiple_of(i * block, block), block)
        qs, dos = [r[qsl, :] for r in q_refs], [r[qsl, :] for r in do_refs]
        pd, ds = _tile_grads(qs, ks, vs, dos, lse_ref[qsl], delta_ref[qsl],
                             rk_ref[qsl][:, None], kstart, **kw)
        if partials:
            for r, k in zip(dq_refs, ks):
                r[qsl, :] = (_dot(ds, k, 1, 0, precision) * scale).astype(r.dtype)
        return (tuple(dk + _dot(ds, q, 0, 0, precision) for dk, q in zip(dks, qs)),
                tuple(dv + _dot(pd, do, 0, 0, precision) for dv, do in zip(dvs, dos)))

    zeros = tuple(jnp.zeros((block, r.shape[1]), jnp.float32) for r in q_refs)
    dks, dvs = lax.fori_loop(0, t // block, over_queries, (zeros, zeros))
    for r, dk in zip(dk_refs, dks):
        r[...] = (dk * scale).astype(r.dtype)
    for r, dv in zip(dv_refs, dvs):
        r[...] = dv.astype(r.dtype)
    if partials:
        return

    qsl = pl.ds(kstart, block)
    qs, dos = [r[qsl, :] for r in q_refs], [r[qsl, :] for r in do_refs]
    lse, delta, rk = lse_ref[qsl], delta_ref[qsl], rk_ref[qsl][:, None]

    def over_keys(i, dqs):
        start = pl.multiple_of(i * block, block)
        ksl = pl.ds(start, block)
        k_i = [r[ksl, :] for r in k_refs]
        _, ds = _tile_grads(qs, k_i, [r[ksl, :] for r in v_refs], dos, lse, delta, rk, start,
                            **kw)
        return tuple(dq + _dot(ds, k, 1, 0, precision) for dq, k in zip(dqs, k_i))

    dqs = lax.fori_loop(0, t // block, over_keys, zeros)
    for r, dq in zip(dq_refs, dqs):
        r[...] = (dq * scale).astype(r.dtype)


def _call(kernel, grid, in_specs, out_specs, out_shape, interpret, name, num_warps, num_stages):
    return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs,
                          out_shape=out_shape, interpret=interpret, name=name,
                          compiler_params=plgpu.CompilerParams(num_warps=num_warps,
                                                               num_stages=num_stages))


def matmul_precision():
    """The products' precision: the step's (TF32 by default, full float32 under 'highest')."""
    p = str(jax.config.jax_default_matmul_precision or "").lower()
    return lax.Precision.HIGHEST if p in ("highest", "float32", "fp32") else lax.Precision.DEFAULT


def forward(qs, ks, vs, rk, *, rate, tk, dim, tiles, interpret):
    """``(output chunks, lse [B, H, T])`` of chunks ``[B, T, H, w]`` with row keys ``rk``;
    ``tiles = (block, warps, stages)``, ``dim`` the head's width before any padding."""
    b, t, h, _ = qs[0].shape
    block, warps, stages = tiles
    kern = functools.partial(_fwd_kernel, n=len(qs), c=_LOG2E / math.sqrt(dim), rate=rate,
                             tk=tk, block=block, precision=matmul_precision())
    full = [pl.BlockSpec((None, t, None, x.shape[-1]), lambda i, bb, hh: (bb, 0, hh, 0))
            for x in qs]
    tile = [pl.BlockSpec((None, block, None, x.shape[-1]), lambda i, bb, hh: (bb, i, hh, 0))
            for x in qs]
    row = pl.BlockSpec((None, None, block), lambda i, bb, hh: (bb, hh, i))
    outs = _call(kern, (t // block, b, h), [row, *tile, *full, *full], [*tile, row],
                 [*(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in qs),
                  jax.ShapeDtypeStruct((b, h, t), jnp.float32)],
                 interpret, "flash_attention_fwd", warps, stages)(rk, *qs, *ks, *vs)
    return tuple(outs[:-1]), outs[-1]


def backward(qs, ks, vs, rk, outs, lse, dos, *, rate, tk, dim, tiles, dq_form, interpret):
    """``(dq, dk, dv)`` chunk tuples (see the module doc for ``dq_form``)."""
    b, t, h, _ = qs[0].shape
    n = len(qs)
    delta = functools.reduce(operator.add, (
        jnp.einsum("bthd,bthd->bht", o.astype(jnp.float32), do.astype(jnp.float32))
        for o, do in zip(outs, dos)))
    block, warps, stages = tiles
    kern = functools.partial(_bwd_kernel, n=n, c=_LOG2E / math.sqrt(dim),
                             scale=1.0 / math.sqrt(dim), rate=rate, tk=tk, block=block,
                             precision=matmul_precision(), dq_form=dq_form)
    full = [pl.BlockSpec((None, t, None, x.shape[-1]), lambda bb, hh, j: (bb, 0, hh, 0))
            for x in qs]
    row = pl.BlockSpec((None, None, t), lambda bb, hh, j: (bb, hh, 0))
    tile = [pl.BlockSpec((None, block, None, x.shape[-1]), lambda bb, hh, j: (bb, j, hh, 0))
            for x in qs]
    shape = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)
    if dq_form == "partials":
        slots = t // block
        dq_specs = [pl.BlockSpec((None, None, t, None, x.shape[-1]),
                                 lambda bb, hh, j: (j, bb, 0, hh, 0)) for x in qs]
        dq_shapes = [jax.ShapeDtypeStruct((slots, *x.shape), jnp.float32) for x in qs]
    else:
        dq_specs, dq_shapes = tile, [shape(x) for x in qs]
    grads = _call(kern, (b, h, t // block), [row, *full, *full, *full, *full, row, row],
                  [*dq_specs, *tile, *tile], [*dq_shapes, *map(shape, ks), *map(shape, vs)],
                  interpret, "flash_attention_bwd", warps, stages)(
        rk, *qs, *ks, *vs, *dos, lse, delta)
    dqs = grads[:n]
    if dq_form == "partials":  # a fixed-order sum over the key blocks' slots: deterministic
        dqs = [jnp.sum(p, axis=0).astype(q.dtype) for p, q in zip(dqs, qs)]
    return tuple(dqs), tuple(grads[n:2 * n]), tuple(grads[2 * n:])
