"""GPU parity and timing of the two kernels the headline step changed (one H200):

1. attention: cuDNN fused attention (bf16, in-kernel dropout) against the explicit route
   (``jaxaudio.nn.attention``): output and gradients with dropout off, forward/backward mask
   agreement with dropout on, masks changing between executions, and forward+backward time of
   12 attention calls (the cascade's 2 x 6 layers) at the training shape ``[8, 1200, 8, 16]``;
2. EnCodec LSTM: ``lstm_scan`` with ``unroll`` 1/4/8, forward and forward+backward over
   ``[1200, 8, 512]`` (the codec's LSTM at 16 s), and the unrolled result against the rolled.

    python experiments/bench_kernels.py --out results/h200_kernels.jsonl
    python experiments/bench_kernels.py --small          # CPU smoke test (LSTM part only)

Relative errors are ||a - b|| / ||b||; times are medians of `--repeat` after 3 warm-ups.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import kernel_bench_args, make_emit, median_ms  # noqa: E402


def main() -> None:
    a = kernel_bench_args(__doc__)

    import jax
    import jax.numpy as jnp

    from jaxaudio.codecs.encodec.lstm import lstm_scan
    from jaxaudio.nn import attention as att

    emit = make_emit(a.out)
    timeit = functools.partial(median_ms, repeat=a.repeat)

    rel = lambda x, y: float(jnp.linalg.norm((jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)).ravel())
                             / jnp.linalg.norm(jnp.asarray(y, jnp.float32).ravel()))
    key = jax.random.key(0)
    normal = lambda i, shape, dt=jnp.float32: jax.random.normal(jax.random.fold_in(key, i), shape).astype(dt)

    # --- EnCodec LSTM unroll -------------------------------------------------------------
    t, b, h = (50, 2, 16) if a.small else (1200, 8, 512)
    x = normal(1, (t, b, h))
    layers = [tuple(0.05 * normal(10 * l + j, shp) for j, shp in
                    enumerate(((4 * h, h), (4 * h, h), (4 * h,), (4 * h,)))) for l in range(2)]
    g = normal(2, (t, b, h))
    ref = None
    for unroll in (1, 4, 8):
        fwd = jax.jit(lambda x, u=unroll: lstm_scan(x, layers, None, u))
        fb = jax.jit(jax.grad(lambda x, u=unroll: jnp.sum(lstm_scan(x, layers, None, u) * g)))
        y = fwd(x)
        ref = y if ref is None else ref
        emit(case="lstm_scan_unroll", unroll=unroll, shape=[t, b, h], forward_ms=timeit(fwd, x),
             forward_backward_ms=timeit(fb, x), rel_vs_unroll1=rel(y, ref))

    if not att.cudnn_attention_available():
        emit(case="attention", skipped="no CUDA GPU: the cuDNN route does not exist here")
        return

    # --- attention parity ------------------------------------------------------------------
    def reference(q, k, v):  # the explicit route, float32 arithmetic on the same bf16 inputs
        q, k, v = (z.astype(jnp.float32) for z in (q, k, v))
        return jnp.einsum("bhqk,bkhd->bqhd", att.attention_weights(q, k), v)

    for shape in ((8, 1200, 8, 16), (8, 1200, 4, 64)):  # cascade layers, masking agent
        q, k, v, go = (normal(20 + i, shape, jnp.bfloat16) for i in range(4))
        loss = lambda fn: (lambda q, k, v: jnp.sum(fn(q, k, v).astype(jnp.float32) * go))
        out_c = jax.jit(lambda q, k, v: att._attend_cudnn(q, k, v, 0.0))(q, k, v)
        out_r = jax.jit(reference)(q, k, v)
        gc = jax.jit(jax.grad(loss(lambda q, k, v: att._attend_cudnn(q, k, v, 0.0)), (0, 1, 2)))(q, k, v)
        gr = jax.jit(jax.grad(loss(reference), (0, 1, 2)))(q, k, v)
        # Dropout on: sum(out * go) is linear in v for a fixed mask, so its value must equal
        # <dv, v> exactly when the backward replays the forward's mask.
        vg = jax.jit(jax.value_and_grad(loss(lambda q, k, v: att._attend_cudnn(q, k, v, 0.1)), 2))
        agree = []
        for _ in range(3):
            val, dv = vg(q, k, v)
            agree.append(abs(float(val) - float(jnp.sum(dv.astype(jnp.float32) * v.astype(jnp.float32))))
                         / abs(float(val)))
        drop = jax.jit(lambda q, k, v: att._attend_cudnn(q, k, v, 0.1))
        o1, o2 = drop(q, k, v), drop(q, k, v)
        ones = jnp.ones_like(v)
        emit(case="attention_parity", shape=list(shape), rel_out=rel(out_c, out_r),
             rel_dq=rel(gc[0], gr[0]), rel_dk=rel(gc[1], gr[1]), rel_dv=rel(gc[2], gr[2]),
             dropout_fwd_bwd_mismatch=agree, dropout_rel_between_executions=rel(o1, o2),
             dropout_rel_vs_no_dropout=rel(o1, out_c),
             dropout_mean_kept_mass=float(jnp.mean(drop(q, k, ones).astype(jnp.float32))))

    # --- attention timing: 12 calls forward+backward, training (dropout 0.1) -----------------
    shape = (8, 1200, 8, 16)
    key_d = jax.random.key(1)

    def stack(route, dtype):
        def f(q, k, v):
            tot = 0.0
            for i in range(12):
                if route == "cudnn":
                    o = att._attend_cudnn(q, k, v, 0.1)
                else:
                    o = att._attend_with_dropout(q, k, v, 0.1, jax.random.fold_in(key_d, i))
                tot = tot + jnp.sum(o.astype(jnp.float32) * go32.astype(o.dtype))
            return tot
        return jax.jit(jax.grad(f, (0, 1, 2)))

    go32 = normal(30, shape)
    for route, dtype in (("xla_remat", jnp.float32), ("xla_remat", jnp.bfloat16), ("cudnn", jnp.bfloat16)):
        q, k, v = (normal(40 + i, shape, dtype) for i in range(3))
        emit(case="attention_12_calls_fwd_bwd", route=route, dtype=jnp.dtype(dtype).name,
             shape=list(shape), ms=timeit(stack(route, dtype), q, k, v))


if __name__ == "__main__":
    main()
