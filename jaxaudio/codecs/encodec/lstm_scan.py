"""EnCodec's LSTM as one wavefront ``lax.scan`` (:func:`lstm_scan`), the one path on every
device.

The scan is latency-bound on a GPU (1201 dependent steps of small matmuls), so there it is
unrolled :data:`GPU_UNROLL` steps per loop iteration (:data:`GPU_UNROLL_LOW` when its products
take bfloat16 or float16 operands; :func:`scan_unroll`), which lets XLA fuse across steps and cuts
the per-iteration overhead; on the CPU it stays rolled. Same arithmetic; XLA fuses the unrolled
body differently, so results move by float32 round-off (5e-8 relative on the CPU).

The scan's gradient is its own (``custom_vjp``): the forward keeps only every step's states
``h, c`` (``[T + L - 1, B, L, H]`` each), and the backward recomputes all gates from them in
one product over all steps before running the reverse recurrence as a scan. Autodiff of the
unrolled scan kept each step's intermediates instead: on an H200 the cached train step's peak
fell from 7.61 to 7.31 GiB and the step ran 3 % faster (experiments/README.md). The tests check
this gradient against autodiff of a plain scan (``tests/lstm_reference.py``).

On a GPU at the default matmul precision (TF32 for float32), the recurrent products take
float16 operands (:func:`recurrent_products`): float16 keeps the 10 mantissa bits TF32 keeps,
so inside float16's normal range (6.1e-5 to 65504) rounding a value to either gives the same
precision, and below it float16's absolute error (3e-8) is TF32's at that floor. A step reads
half the bytes (the scan is latency-bound, and each step's product reads its whole weight
matrix): on an H200 the LSTM's forward+backward went from 23.0 to 15.4 ms, with the same error
against full float32 (experiments/README.md). The states ``h`` lie in (-1, 1). The weights are
the codec's: :class:`~jaxaudio.codecs.encodec.lstm.SLSTM` keeps float32 products for weights
outside float16's range (``float16_range``, checked when weights are loaded). The backward
scales each clip's cotangents by a power of two so that their largest lies in [0.5, 1) before
they meet float16 (exact in float32, undone after the reverse scan; per clip, so a batch sharded
over devices needs no reduction across them); a cotangent growing 65504-fold through the reverse
recurrence would overflow, and the train step's non-finite guard would skip that step. The
input projection, the states, the cell and every sum stay float32. Under ``highest``, and on
the CPU, the products stay float32.

Each forward step ends at an optimisation barrier on its states. Without it XLA's GPU fusion
recomputed the cells of all earlier steps of an unrolled iteration inside each step's cell
kernel, re-reading their products' outputs (split-K partials, 1 MiB a step at EnCodec's size):
step ``k`` of 8 read ``k`` of them.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

LSTM_PRODUCTS = ("float32", "float16")
F16_MAX = 65504.0
# H200 (experiments/README.md): unroll 8 took the LSTM's forward+backward from 50.6 to 31.0 ms;
# 16 is no faster in float32 (train step 91.2 vs 92.2 samples/s) but is with bfloat16 products
# (cached bf16 step 186.5 vs 178.5; 32: 180.8) and with float16 operands (the LSTM alone 15.4 vs
# 16.6 ms; cached fp32 step 139.1 vs 136.0).
GPU_UNROLL = 8
GPU_UNROLL_LOW = 16
_LOW_PRODUCTS = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))


def scan_unroll(products=None) -> int:
    """Steps per loop iteration of the scan: on a GPU 16 when ``products`` (the products'
    operand dtype) is bfloat16 or float16 and 8 otherwise, and 1 elsewhere."""
    if jax.default_backend() != "gpu":
        return 1
    low = products is not None and jnp.dtype(products) in _LOW_PRODUCTS
    return GPU_UNROLL_LOW if low else GPU_UNROLL


def _cell(gates: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    i, f, g, o = jnp.split(gates, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def recurrent_products(precision=None) -> str:
    """The recurrent products' operands for float32 weights, ``"float32"`` or ``"float16"``:
    ``"float16"`` on a GPU when the products run at TF32 (``precision``, else
    ``jax_default_matmul_precision``: unset, ``default``, ``bfloat16``, ``fastest`` or
    ``tensorfloat32``) and ``"float32"`` otherwise (the CPU, ``high``, ``highest``,
    ``float32``). Weights already in bfloat16 (a bf16 decode) keep their dtype whatever this
    says."""
    if jax.default_backend() != "gpu":
        return "float32"
    named = precision if precision is not None else jax.config.jax_default_matmul_precision
    name = "" if named is None else (named if isinstance(named, str) else str(named))
    name = name.lower().removeprefix("precision.")
    tf32 = ("", "default", "bfloat16", "fastest", "tensorfloat32")
    return "float16" if name in tf32 else "float32"


def lstm_scan(x: jax.Array, layers: list[tuple[jax.Array, ...]], precision=None,
              unroll: int | None = None, products: str | None = None) -> jax.Array:
    """Multi-layer LSTM, time-major: ``x [T, B, H_in] -> [T, B, H]``, as one ``lax.scan``.

    ``layers`` holds torch's ``(weight_ih [4H, H_in], weight_hh [4H, H], bias_ih, bias_hh)``.
    The layers run as a wavefront: at step ``s`` layer ``l`` handles frame ``s - l``, reading
    the previous layer's output from the carry, so ``T + L - 1`` sequential steps replace
    ``L * T``. Each step is one matrix product of every layer's state ``[B, L*H]`` with a
    block-bidiagonal ``[L*H, L*4H]`` matrix (layer ``l``'s gates take ``W_hh`` from its own
    state and ``W_ih`` from layer ``l - 1``'s; the other blocks are zero), so the step is one
    product and one elementwise kernel. Layer ``l`` stays at its zero initial state for its
    first ``l`` steps. ``unroll``: steps per loop iteration (None: :func:`scan_unroll`).

    The gradient keeps only the states ``h, c`` of every step and recomputes the gates from
    them in one product over all steps (:func:`_scan_bwd`), then runs the reverse recurrence
    as a scan, for the input and for every weight.

    ``products`` (None: :func:`recurrent_products` of ``precision``): ``"float16"`` gives float32
    weights' recurrent products float16 operands (the module doc says why that is TF32's
    precision). The weights' gradients are float32 either way.
    """
    if products is None:
        products = recurrent_products(precision)
    if products not in LSTM_PRODUCTS:
        raise ValueError(f"lstm_scan: products must be one of {LSTM_PRODUCTS}, got {products!r}")
    layers = tuple(tuple(layer) for layer in layers)
    # the recurrent products' operand dtype: float16 for float32 weights when asked, else the
    # weights' own (bfloat16 in a bf16 decode)
    low = products == "float16" and layers[0][1].dtype == jnp.float32
    operands = jnp.dtype(jnp.float16 if low else layers[0][1].dtype).name
    unroll = scan_unroll(operands) if unroll is None else int(unroll)
    return _scan_recompute(x, layers, precision, (unroll, operands))


def _block_matrix(layers, operands):
    """``W [L*H, L*4H]`` in dtype ``operands`` (row block r feeds column block l: ``W_hh_l^T``
    on the diagonal, ``W_ih_l^T`` above it) and the deeper layers' summed biases ``[L-1, 4H]``
    (or None)."""
    n_layers = len(layers)
    hidden = layers[0][1].shape[1]
    zero = jnp.zeros((hidden, 4 * hidden), operands)
    w_big = jnp.concatenate([
        jnp.concatenate([layers[l][1].T.astype(operands) if l == r else
                         layers[l][0].T.astype(operands) if l == r + 1 else zero
                         for l in range(n_layers)], axis=1)
        for r in range(n_layers)], axis=0)
    b_deep = jnp.stack([b_ih + b_hh for _, _, b_ih, b_hh in layers[1:]]) if n_layers > 1 else None
    return w_big, b_deep


def _prod(eq, a, w, precision):
    """``einsum(eq, a, w)`` with ``a`` in ``w``'s dtype, summed in float32: bfloat16 or float16
    weights make products of the float32 states rounded to that dtype (a bf16 decode; float16
    operands at TF32); float32 ones change nothing."""
    return jnp.einsum(eq, a.astype(w.dtype), w, precision=precision,
                      preferred_element_type=jnp.float32)


def _input_gates(x, layers, precision, n_layers):
    """The first layer's input half of every gate (state-free: one matmul up front), padded
    with ``L - 1`` zero steps for the wavefront's tail."""
    w_ih0, _, b_ih0, b_hh0 = layers[0]
    xw = _prod("tbi,gi->tbg", x, w_ih0, precision) + (b_ih0 + b_hh0)
    return jnp.pad(xw, ((0, n_layers - 1), (0, 0), (0, 0)))


def _scan_forward(x, layers, precision, form, *, keep_states):
    """``(ys [T, B, H], hs, cs)``; ``hs, cs [S, B, L, H]`` (every layer's state after each of
    the ``S = T + L - 1`` steps) when ``keep_states``, else None. ``form``: ``(unroll,
    operands)``."""
    unroll, operands = form
    n_layers = len(layers)
    hidden = layers[0][1].shape[1]
    bsz = x.shape[1]
    xw = _input_gates(x, layers, precision, n_layers)
    w_big, b_deep = _block_matrix(layers, operands)
    started = jnp.arange(n_layers)[None, :, None]
    # bf16 or f16 products: the step's cell also writes h in their dtype, the next product's
    # operand (a convert of its own was a kernel a step more on an H200)
    low = w_big.dtype != x.dtype

    def step(carry, inp):
        h, c = carry[:2]  # [B, L, H] each
        hq = carry[2] if low else h
        xw_s, s = inp
        gates = _prod("bk,kn->bn", hq.reshape(bsz, n_layers * hidden), w_big, precision)
        gates = gates.reshape(bsz, n_layers, 4 * hidden)
        add = xw_s[:, None] if b_deep is None else jnp.concatenate(
            [xw_s[:, None], jnp.broadcast_to(b_deep, (bsz, *b_deep.shape))], axis=1)
        h_new, c_new = _cell(gates + add, c)
        active = s >= started
        h, c = jnp.where(active, h_new, h), jnp.where(active, c_new, c)
        new = (h, c, h.astype(w_big.dtype)) if low else (h, c)
        # this step's h, c are read from memory, not recomputed by later steps (module doc)
        new = jax.lax.optimization_barrier(new)
        h, c = new[:2]
        return new, ((h, c) if keep_states else h[:, -1])

    zeros = jnp.zeros((bsz, n_layers, hidden), x.dtype)
    init = (zeros, zeros, zeros.astype(w_big.dtype)) if low else (zeros, zeros)
    steps = jnp.arange(xw.shape[0])
    _, out = jax.lax.scan(step, init, (xw, steps), unroll=unroll)
    if keep_states:
        hs, cs = out
        return hs[n_layers - 1 :, :, -1], hs, cs
    return out[n_layers - 1 :], None, None


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _scan_recompute(x, layers, precision, form):
    return _scan_forward(x, layers, precision, form, keep_states=False)[0]


def _scan_fwd(x, layers, precision, form):
    ys, hs, cs = _scan_forward(x, layers, precision, form, keep_states=True)
    return ys, (x, layers, hs, cs)


def _cell_bwd(carry, inp, w_t, precision):
    """One reverse step: the cell's backward from the cotangents ``(dh, dc)`` of the state after
    the step (``[B, L, H]``), then the product with ``W^T``; ``(carry, (dz of layer 0, dz of
    the deeper layers))``."""
    dh, dc = carry
    dy_s, z_s, cp, c, act = inp
    bsz, n_layers, hidden = dh.shape
    i, f, g, o = jnp.split(z_s, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    tc = jnp.tanh(c)
    dh = dh + dy_s
    dct = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate([dct * g * i * (1.0 - i), dct * cp * f * (1.0 - f),
                          dct * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
    dz = jnp.where(act, dz, 0.0)  # an idle layer holds its zero initial state
    du = _prod("bn,nk->bk", dz.reshape(bsz, n_layers * 4 * hidden), w_t, precision)
    dc_prev = jnp.where(act, dct * f, 0.0)
    return (du.reshape(bsz, n_layers, hidden), dc_prev), (dz[:, 0], dz[:, 1:])


def _weight_grads(x, layers, u, dz0, dz_deep, back, scaled, precision):
    """``(dx, per-layer (d_ih, d_hh, db_ih, db_hh))`` from the gates' gradients; ``back``
    undoes the cotangents' scaling (exact) on the smaller side of each product: the input's
    gradient after its product, the weights' through the states (or input) they multiply,
    the biases' as weights."""
    t = x.shape[0]
    dx = back(_prod("tbg,gi->tbi", dz0[:t], layers[0][0], precision)).astype(x.dtype)
    grads = []
    for l, (w_ih, w_hh, b_ih, b_hh) in enumerate(layers):
        dz_l = dz0 if l == 0 else dz_deep[:, :, l - 1]
        d_ih = (jnp.einsum("tbg,tbi->gi", dz0[:t], back(x), precision=precision) if l == 0 else
                jnp.einsum("sbg,sbh->gh", dz_l, back(u[:, :, l - 1]), precision=precision))
        d_hh = jnp.einsum("sbg,sbh->gh", dz_l, back(u[:, :, l]), precision=precision)
        db = back(dz_l.sum(axis=0)[None]).sum(axis=(0, 1)) if scaled else dz_l.sum(axis=(0, 1))
        grads.append((d_ih.astype(w_ih.dtype), d_hh.astype(w_hh.dtype), db.astype(b_ih.dtype),
                      db.astype(b_hh.dtype)))
    return dx, tuple(grads)


def _scan_bwd(precision, form, res, dys):
    """The reverse recurrence over the kept states: the gate activations of every step from
    one product ``[S*B, L*H] x [L*H, L*4H]`` (not saved by the forward), then one reverse scan
    whose step is the cell's backward and one product with ``W^T``.

    With float16 operands the recurrence runs on cotangents scaled per clip by ``2^-e_b``,
    ``e_b`` the binary exponent of clip ``b``'s ``max |dys|`` (so its largest lies in
    [0.5, 1)): clips do not interact and the recurrence is linear in the cotangents, the
    scaling is exact in float32, and the products over the scaled gate gradients are scaled
    back after the scan. Per clip, not over the batch: a batch sharded over devices needs no
    reduction across them."""
    unroll, operands = form
    x, layers, hs, cs = res
    n_layers = len(layers)
    hidden = layers[0][1].shape[1]
    steps, bsz = hs.shape[0], hs.shape[1]
    dtype = hs.dtype
    w_big, b_deep = _block_matrix(layers, operands)
    zeros = jnp.zeros((1, bsz, n_layers, hidden), dtype)
    u = jnp.concatenate([zeros, hs[:-1]])  # every layer's state before step s
    c_prev = jnp.concatenate([zeros, cs[:-1]])
    xw = _input_gates(x, layers, precision, n_layers)
    z = _prod("sbk,kn->sbn", u.reshape(steps, bsz, n_layers * hidden), w_big,
              precision).reshape(steps, bsz, n_layers, 4 * hidden)
    add = xw[:, :, None] if b_deep is None else jnp.concatenate(
        [xw[:, :, None], jnp.broadcast_to(b_deep, (steps, bsz, *b_deep.shape))], axis=2)
    z = z + add  # the gates' pre-activations; the activations are taken inside the scan's step
    active = (jnp.arange(steps)[:, None] >= jnp.arange(n_layers)[None, :])[:, None, :, None]
    dys = dys.astype(dtype)
    scaled = jnp.dtype(operands) == jnp.float16
    if scaled:  # e [B]: 0 for a clip whose cotangents are all zero or not finite
        _, e = jnp.frexp(jnp.max(jnp.abs(dys), axis=(0, 2)))
        e = jnp.where(jnp.isfinite(e), e, 0)
        dys = jnp.ldexp(dys, -e[None, :, None])
    dy = jnp.zeros((steps, bsz, n_layers, hidden), dtype)
    dy = dy.at[n_layers - 1 :, :, -1].set(dys)
    w_t = w_big.T
    carry = (jnp.zeros((bsz, n_layers, hidden), dtype),) * 2
    _, (dz0, dz_deep) = jax.lax.scan(lambda c, i: _cell_bwd(c, i, w_t, precision), carry,
                                     (dy, z, c_prev, cs, active), reverse=True, unroll=unroll)
    back = (lambda a: jnp.ldexp(a, e.reshape((1, -1) + (1,) * (a.ndim - 2)))) if scaled else (
        lambda a: a)
    return _weight_grads(x, layers, u, dz0, dz_deep, back, scaled, precision)


_scan_recompute.defvjp(_scan_fwd, _scan_bwd)
