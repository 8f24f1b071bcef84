"""GPU parity and timing of the attention kernels of the train step:

1. the float32 route: the Pallas flash kernel (``jaxaudio.nn.flash_attention``) against the
   explicit route on the same inputs and the same dropout masks, at full float32 and at default
   precision (TF32), output and gradients, dropout off and on (0.1);
2. the bf16 route: cuDNN fused attention (in-kernel dropout) against the explicit route:
   output and gradients with dropout off, forward/backward mask agreement with dropout on,
   masks changing between executions;
3. forward+backward time of 12 attention calls with dropout 0.1 at each of the headline
   step's shapes: ``[8, 1200, 8, 32]`` and ``[8, 1200, 8, 48]`` (the cascade's two stages of 6
   layers; width 48 run as 32 + 16 by the kernel) and ``[8, 1200, 4, 64]`` (the masking
   agent's): the explicit route (rematerialised) at fp32 and bf16, cuDNN at bf16, the flash
   kernel at fp32.

    python experiments/bench_kernels.py --out results/kernels.jsonl [--parts parity timing]

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
    def flags(p):
        p.add_argument("--widths", type=int, nargs="+", default=None,
                       help="only the shapes of these head widths (32 48 64)")

    a = kernel_bench_args(__doc__, parts=("parity", "timing"), extra=flags)

    import jax
    import jax.numpy as jnp

    from jaxaudio.nn import attention as att
    from jaxaudio.nn import flash_attention as flash

    emit = make_emit(a.out)
    timeit = functools.partial(median_ms, repeat=a.repeat)

    rel = lambda x, y: float(jnp.linalg.norm((jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)).ravel())
                             / jnp.linalg.norm(jnp.asarray(y, jnp.float32).ravel()))
    key = jax.random.key(0)
    normal = lambda i, shape, dt=jnp.float32: jax.random.normal(jax.random.fold_in(key, i), shape).astype(dt)

    # the headline step's calls: the cascade's stages (d_model 256 and 384 over 8 heads: widths
    # 32 and 48, the latter run as 32 + 16 by the kernel) and the masking agent's (width 64)
    shapes = (((2, 100, 2, 32), (2, 100, 2, 48), (2, 100, 1, 64)) if a.small else
              ((8, 1200, 8, 32), (8, 1200, 8, 48), (8, 1200, 4, 64)))
    if a.widths:
        shapes = tuple(s for s in shapes if s[-1] in a.widths)
    if not att.cudnn_attention_available():
        emit(case="attention", skipped="no CUDA GPU: the fused routes do not exist here")
        return

    if "parity" in a.parts:
        attention_parity(a, normal, emit, rel, shapes, att, flash)
    if "timing" in a.parts:
        attention_timing(a, normal, emit, timeit, shapes, att, flash)


def attention_parity(a, normal, emit, rel, shapes, att, flash):
    """The float32 flash kernel against the explicit route (same masks), then cuDNN's."""
    import jax
    import jax.numpy as jnp

    def explicit(q, k, v, rate, key):
        probs = att.attention_weights(q, k)
        if rate > 0:
            probs = att._dropout(probs, rate, key)
        return jnp.einsum("bhqk,bkhd->bqhd", probs, v)

    key_m = jax.random.key(2)
    for shape in shapes:
        q, k, v, go = (normal(50 + i, shape) for i in range(4))
        for precision in ("highest", "default"):
            for rate in (0.0, 0.1):
                with jax.default_matmul_precision(precision):
                    f_fl = lambda q, k, v: flash.flash_attention(q, k, v, rate=rate, key=key_m)
                    f_ex = lambda q, k, v: explicit(q, k, v, rate, key_m)
                    loss = lambda fn: (lambda q, k, v: jnp.sum(fn(q, k, v) * go))
                    o_fl, o_ex = jax.jit(f_fl)(q, k, v), jax.jit(f_ex)(q, k, v)
                    g_fl = jax.jit(jax.grad(loss(f_fl), (0, 1, 2)))(q, k, v)
                    with jax.default_matmul_precision("highest"):
                        g_hi = jax.jit(jax.grad(loss(f_ex), (0, 1, 2)))(q, k, v)
                        o_hi = jax.jit(f_ex)(q, k, v)
                    g_ex = jax.jit(jax.grad(loss(f_ex), (0, 1, 2)))(q, k, v)
                emit(case="flash_parity", shape=list(shape), precision=precision, rate=rate,
                     rel_out=rel(o_fl, o_ex), rel_dq=rel(g_fl[0], g_ex[0]),
                     rel_dk=rel(g_fl[1], g_ex[1]), rel_dv=rel(g_fl[2], g_ex[2]),
                     explicit_rel_out_vs_highest=rel(o_ex, o_hi),
                     flash_rel_out_vs_highest=rel(o_fl, o_hi),
                     flash_rel_dq_vs_highest=rel(g_fl[0], g_hi[0]),
                     explicit_rel_dq_vs_highest=rel(g_ex[0], g_hi[0]))
    cudnn_parity(att, normal, emit, rel, shapes)



def twelve_calls(att, flash, route, go, interpret=False):
    """``(forward+backward, forward)``, jitted, of 12 attention calls with dropout 0.1 (the
    cascade's 2 x 6 layers) on one route, summed against ``go``; ``interpret`` runs the flash
    kernel in Pallas's interpreter (no GPU)."""
    import jax
    import jax.numpy as jnp

    key_d = jax.random.key(1)

    def f(q, k, v):
        tot = 0.0
        for i in range(12):
            kd = jax.random.fold_in(key_d, i)
            if route == "cudnn":
                o = att._attend_cudnn(q, k, v, 0.1)
            elif route == "flash":
                o = flash.flash_attention(q, k, v, rate=0.1, key=kd, interpret=interpret)
            else:
                o = att._attend_with_dropout(q, k, v, 0.1, kd)
            tot = tot + jnp.sum(o.astype(jnp.float32) * go.astype(o.dtype))
        return tot
    return jax.jit(jax.grad(f, (0, 1, 2))), jax.jit(f)


def attention_timing(a, normal, emit, timeit, shapes, att, flash):
    """Forward and forward+backward of 12 attention calls with dropout 0.1 (the cascade's
    2 x 6 layers): the explicit route (rematerialised) at fp32 and bf16, cuDNN at bf16, and the
    flash kernel at fp32; for each head width of ``shapes``."""
    import jax.numpy as jnp

    for shape in shapes:
        go = normal(30, shape)
        for route, dtype in (("xla_remat", jnp.float32), ("xla_remat", jnp.bfloat16),
                             ("cudnn", jnp.bfloat16), ("flash", jnp.float32)):
            q, k, v = (normal(40 + i, shape, dtype) for i in range(3))
            fb, fw = twelve_calls(att, flash, route, go)
            emit(case="attention_12_calls", route=route, dtype=jnp.dtype(dtype).name,
                 shape=list(shape), fwd_bwd_ms=timeit(fb, q, k, v), fwd_ms=timeit(fw, q, k, v))


def cudnn_parity(att, normal, emit, rel, shapes):
    import jax
    import jax.numpy as jnp

    # --- attention parity ------------------------------------------------------------------
    def reference(q, k, v):  # the explicit route, float32 arithmetic on the same bf16 inputs
        q, k, v = (z.astype(jnp.float32) for z in (q, k, v))
        return jnp.einsum("bhqk,bkhd->bqhd", att.attention_weights(q, k), v)

    for shape in shapes:  # cascade layers, masking agent
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


if __name__ == "__main__":
    main()
