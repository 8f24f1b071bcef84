"""Tried and not kept: EnCodec's two-layer LSTM with one fused GPU kernel per time step
(Pallas, Triton backend). On one H200 it ran slower than the XLA scan it was meant to replace
(experiments/README.md, results/h200_lstm_step_kernel.jsonl); kept here, with its custom VJP,
as the starting point of a persistent kernel. Not imported by the package.

The scan of :mod:`jaxaudio.codecs.encodec.lstm` is latency-bound on a GPU: each of its
``T + 1`` wavefront steps is a small matrix product (``M`` = batch = 8; two products when this
was written) and a fused elementwise kernel, and each product reads the recurrent weights
through a handful of thread blocks. Here one kernel does a whole step for both layers:
``2 * H / block_units`` programs each read the rows of the four gates of their units, take
tensor-core dots (TF32) over chunks of ``block_k`` inputs (the batch padded to 16 rows), apply
the cell and write ``h``, ``c`` and the gate activations the backward needs. The backward is a
reverse ``lax.scan`` of XLA products over those saved activations (:func:`_mid_bwd`), the
weights' gradient one product after it (dead code, dropped by XLA, when the weights are frozen,
as the codec's are). Pallas's Triton backend is deprecated in JAX 0.12 (Mosaic GPU replaces it).

The wavefront (layer ``l`` handles frame ``s - l`` at step ``s``) is the scan's. Its first and
last steps, where one layer is idle, run as plain XLA ops; the ``T - 1`` steps in between, where
both are busy, run the kernel. Two layers only (EnCodec's SEANet always has two).

``interpret=True`` runs the same kernel through Pallas's interpreter:
``python experiments/bench_lstm.py --small`` checks it against the scan on a CPU.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl

from jaxaudio.codecs.encodec.wavefront import _cell  # the scan's cell, for the edge steps

BLOCK_UNITS = 16  # hidden units per program (x 4 gates); Triton dots need >= 16
BLOCK_K = 64  # input rows per dot
MIN_BATCH = 16  # the dots' rows: the batch is padded up to this


def _step_kernel(u_ref, c_ref, xw_ref, b_ref, w_ref, h_out, c_out, act_out, *, hidden, bk):
    """One wavefront step for one layer's block of units (program ``(layer, block)``).

    ``u_ref [B, 2H]`` is ``[h0, h1]`` of the previous step, read whole by every program;
    layer 0 uses its first half (rows ``H..2H`` of its weights are never read), layer 1 all.
    The products are tensor-core dots (TF32 for float32, as XLA's default precision), one
    ``[B, bk] x [bk, units]`` per gate and chunk of ``bk`` inputs, software-pipelined by Triton.
    """
    layer = pl.program_id(0)
    first = layer == 0
    acc = tuple(jnp.where(first, xw_ref[:, g, :], b_ref[g, :][None, :]) for g in range(4))

    def body(kc, acc):
        k0 = pl.multiple_of(kc * bk, bk)
        u = u_ref[:, pl.ds(k0, bk)]  # [B, bk]
        return tuple(a + jnp.dot(u, w_ref[pl.ds(k0, bk), g, :], preferred_element_type=jnp.float32)
                     for g, a in enumerate(acc))

    n_k = (layer + 1) * (hidden // bk)  # layer 0 reads h0 only, layer 1 [h0, h1]
    i, f, g, o = jax.lax.fori_loop(0, n_k, body, acc)
    i, f, o, g = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jax.nn.sigmoid(o), jnp.tanh(g)
    c = f * c_ref[...] + i * g
    h_out[...] = o * jnp.tanh(c)
    c_out[...] = c
    for k, a in enumerate((i, f, g, o)):
        act_out[:, k, :] = a


def _step(xw, hcat, c, w, b1, opts):
    """``(hcat, c) -> (hcat', c', gate activations [L, B, 4, H])`` for one middle step."""
    interpret, num_warps, _, block_units, block_k = opts
    bsz, two_h = hcat.shape
    hidden = two_h // 2
    bu = min(block_units, hidden)
    nb = hidden // bu
    bk = min(block_k, hidden)
    kernel = functools.partial(_step_kernel, hidden=hidden, bk=bk)
    state_spec = pl.BlockSpec((bsz, bu), lambda l, j: (0, l * nb + j))
    params = None
    if not interpret and num_warps is not None:
        from jax.experimental.pallas import triton as plgpu

        params = plgpu.CompilerParams(num_warps=num_warps)
    return pl.pallas_call(
        kernel,
        grid=(2, nb),
        in_specs=[
            pl.BlockSpec((bsz, two_h), lambda l, j: (0, 0)),
            state_spec,
            pl.BlockSpec((bsz, 4, bu), lambda l, j: (0, 0, j)),
            pl.BlockSpec((4, bu), lambda l, j: (0, j)),
            pl.BlockSpec((None, two_h, 4, bu), lambda l, j: (l, 0, 0, j)),
        ],
        out_specs=[state_spec, state_spec,
                   pl.BlockSpec((None, bsz, 4, bu), lambda l, j: (l, 0, 0, j))],
        out_shape=[jax.ShapeDtypeStruct(hcat.shape, hcat.dtype),
                   jax.ShapeDtypeStruct(c.shape, c.dtype),
                   jax.ShapeDtypeStruct((2, bsz, 4, hidden), hcat.dtype)],
        interpret=interpret,
        compiler_params=params,
        name="encodec_lstm_step",
    )(hcat, c, xw, b1, w)


def _mid_fwd_scan(xw, hcat0, c0, w, b1, opts):
    unroll = opts[2]
    hidden = hcat0.shape[1] // 2

    def body(carry, xw_s):
        h, c = carry
        h, c, acts = _step(xw_s, h, c, w, b1, opts)
        return (h, c), (h, c, acts)

    xw4 = xw.reshape(xw.shape[0], xw.shape[1], 4, hidden)
    (h, c), (hs, cs, acts) = jax.lax.scan(body, (hcat0, c0), xw4, unroll=unroll)
    return (hs[:, :, hidden:], h, c), (hs, cs, acts)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _mid(xw, hcat0, c0, w, b1, opts):
    """The ``T - 1`` middle steps: ``(ys [S, B, H], hcat [B, 2H], c [B, 2H])``."""
    return _mid_fwd_scan(xw, hcat0, c0, w, b1, opts)[0]


def _mid_fwd(xw, hcat0, c0, w, b1, opts):
    out, (hs, cs, acts) = _mid_fwd_scan(xw, hcat0, c0, w, b1, opts)
    return out, (hcat0, c0, hs, cs, acts, w)


def _mid_bwd(opts, res, cot):
    hcat0, c0, hs, cs, acts, w = res
    dys, dh_last, dc_last = cot
    hidden = hcat0.shape[1] // 2
    # u_t (the step's input state) and c_prev_t, for every step t
    us = jnp.concatenate([hcat0[None], hs], axis=0)[:-1]
    c_prev = jnp.concatenate([c0[None], cs], axis=0)[:-1]
    w_t0 = w[0, :hidden].reshape(hidden, 4 * hidden).T  # [4H, H]
    w_t1 = w[1].reshape(2 * hidden, 4 * hidden).T  # [4H, 2H]

    def body(carry, inp):
        dh, dc = carry  # cotangents of the step's output state, [B, 2H]
        dy, act, c_new, c_old = inp
        dh = dh.at[:, hidden:].add(dy)
        i, f, g, o = (act[:, :, k, :] for k in range(4))  # [L, B, H]
        dh_l = jnp.stack([dh[:, :hidden], dh[:, hidden:]])
        dc_l = jnp.stack([dc[:, :hidden], dc[:, hidden:]])
        c_old_l = jnp.stack([c_old[:, :hidden], c_old[:, hidden:]])
        tc = jnp.tanh(jnp.stack([c_new[:, :hidden], c_new[:, hidden:]]))
        dct = dc_l + dh_l * o * (1.0 - tc * tc)
        dz = jnp.concatenate([dct * g * i * (1.0 - i), dct * c_old_l * f * (1.0 - f),
                              dct * i * (1.0 - g * g), dh_l * tc * o * (1.0 - o)], axis=-1)
        du = jnp.dot(dz[1], w_t1)
        du = du.at[:, :hidden].add(jnp.dot(dz[0], w_t0))
        dc_prev = (dct * f).transpose(1, 0, 2).reshape(dc.shape)
        return (du, dc_prev), dz

    (dh0, dc0), dz = jax.lax.scan(body, (dh_last, dc_last), (dys, acts, cs, c_prev), reverse=True,
                                  unroll=opts[2])
    # the weights' gradient, in the kernel's [L, 2H, 4, H] layout (layer 0 reads rows < H only)
    dw = jnp.einsum("tlbg,tbk->lkg", dz, us).reshape(w.shape)
    dw = dw.at[0, hidden:].set(0.0)
    db1 = dz[:, 1].sum(axis=(0, 1)).reshape(4, hidden)
    return dz[:, 0], dh0, dc0, dw, db1


_mid.defvjp(_mid_fwd, _mid_bwd)


def kernel_weights(layers):
    """torch's ``(W_ih, W_hh, b_ih, b_hh)`` x 2 -> the kernel's ``w [2, 2H, 4, H]``, ``b1 [4, H]``."""
    (w_ih0, w_hh0, _, _), (w_ih1, w_hh1, b_ih1, b_hh1) = layers
    hidden = w_hh0.shape[1]
    w0 = jnp.concatenate([w_hh0.T, jnp.zeros_like(w_hh0.T)], axis=0)  # [2H, 4H]
    w1 = jnp.concatenate([w_ih1.T, w_hh1.T], axis=0)  # [2H, 4H]
    w = jnp.stack([w0, w1]).reshape(2, 2 * hidden, 4, hidden)
    return w, (b_ih1 + b_hh1).reshape(4, hidden)


def lstm_pallas(x, layers, precision=None, *, interpret: bool = False, num_warps: int | None = 4,
                unroll: int = 8, block_units: int = BLOCK_UNITS, block_k: int = BLOCK_K):
    """Two-layer LSTM, time-major ``x [T, B, H_in] -> [T, B, H]``, the kernel per step.

    Same contract as :func:`jaxaudio.codecs.encodec.lstm.lstm_scan`; ``precision`` applies to the
    input projection and the edge steps (the kernel itself is full float32).
    """
    if len(layers) != 2:
        raise ValueError(f"lstm_pallas: EnCodec's LSTM has 2 layers, got {len(layers)}")
    (w_ih0, w_hh0, b_ih0, b_hh0), (w_ih1, w_hh1, b_ih1, b_hh1) = layers
    hidden = w_hh0.shape[1]
    if hidden & (hidden - 1) or hidden < BLOCK_UNITS:
        raise ValueError(f"lstm_pallas: hidden size must be a power of two >= {BLOCK_UNITS}, "
                         f"got {hidden}")
    t, bsz = x.shape[0], x.shape[1]
    bp = max(MIN_BATCH, 1 << max(bsz - 1, 0).bit_length())  # Triton blocks: powers of two
    if bp != bsz:
        x = jnp.pad(x, ((0, 0), (0, bp - bsz), (0, 0)))
    xw = jnp.einsum("tbi,gi->tbg", x, w_ih0, precision=precision) + (b_ih0 + b_hh0)
    # step 0: layer 0 on frame 0 from the zero state; layer 1 idle
    h0, c0 = _cell(xw[0], jnp.zeros((bp, hidden), x.dtype))
    zeros = jnp.zeros_like(h0)
    hcat, c = jnp.concatenate([h0, zeros], -1), jnp.concatenate([c0, zeros], -1)
    w, b1 = kernel_weights(layers)
    ys, hcat, c = _mid(xw[1:], hcat, c, w.astype(x.dtype), b1.astype(x.dtype),
                       (interpret, num_warps, unroll, block_units, block_k))
    # last step: layer 1 on frame T - 1; layer 0 idle
    gates = jnp.dot(hcat, jnp.concatenate([w_ih1.T, w_hh1.T], 0), precision=precision) + (b_ih1 + b_hh1)
    h_last, _ = _cell(gates, c[:, hidden:])
    y = jnp.concatenate([ys, h_last[None]], axis=0)
    return y[:, :bsz]
