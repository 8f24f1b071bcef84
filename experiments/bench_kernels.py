"""GPU parity and timing of the kernels the headline step changed (one H200):

1. EnCodec LSTM: ``lstm_scan`` with ``unroll`` 1/4/8, forward and forward+backward over
   ``[1200, 8, 512]`` (the codec's LSTM at 16 s), and the unrolled result against the rolled;
2. attention, the float32 route: the Pallas flash kernel (``jaxaudio.nn.flash_attention``)
   against the explicit route on the same inputs and the same dropout masks, at full float32
   and at default precision (TF32), output and gradients, dropout off and on (0.1);
3. attention, the bf16 route: cuDNN fused attention (in-kernel dropout) against the explicit
   route: output and gradients with dropout off, forward/backward mask agreement with dropout
   on, masks changing between executions;
4. forward+backward time of 12 attention calls with dropout 0.1 at each of the headline
   step's shapes: ``[8, 1200, 8, 32]`` and ``[8, 1200, 8, 48]`` (the cascade's two stages of 6
   layers; width 48 zero-padded to 64 by the kernel) and ``[8, 1200, 4, 64]`` (the masking
   agent's; earlier sessions timed ``[8, 1200, 8, 16]``, which no call of the step has):
   the explicit route (rematerialised) at fp32 and bf16, cuDNN at bf16, the flash kernel at
   fp32 over tile sizes and warp counts;
5. (``--parts tiles``, not run by default) each pass's tiles of the flash kernel on their own
   (block, warps, pipeline stages) at widths 32 and 48 (the width the kernels run);
   ``--tiles_env FILE`` writes the fastest as a ``JAXAUDIO_FLASH_TILES`` value;
6. (``--parts forms``) the flash kernel's forms at each shape: width 48 split into 32 + 16 or
   zero-padded to 64 (``JAXAUDIO_FLASH_WIDTH``), dQ from per-key-block partial sums or
   recomputed (``JAXAUDIO_FLASH_DQ``): parity against the explicit route with the same masks
   (full float32 and default precision, dropout 0.1) and the 12 calls' times.

    python experiments/bench_kernels.py --out results/h200_kernels.jsonl [--parts parity timing]
    python experiments/bench_kernels.py --parts forms --out results/h200_flash_forms.jsonl
    python experiments/bench_kernels.py --parts tiles --repeat 10 --tiles_env /tmp/tiles.env
    python experiments/bench_kernels.py --small          # CPU smoke test (LSTM part only)

Relative errors are ||a - b|| / ||b||; times are medians of `--repeat` after 3 warm-ups.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import kernel_bench_args, make_emit, median_ms  # noqa: E402


def main() -> None:
    def flags(p):
        p.add_argument("--tiles_env", default=None, help="--parts tiles: write the fastest "
                       "tiles' JAXAUDIO_FLASH_TILES value to this file")
        p.add_argument("--widths", type=int, nargs="+", default=None,
                       help="attention parts: only the shapes of these head widths (32 48 64)")

    a = kernel_bench_args(__doc__, parts=("lstm", "parity", "timing", "tiles", "forms"),
                          default_parts=("lstm", "parity", "timing", "forms"), extra=flags)

    import jax
    import jax.numpy as jnp

    from jaxaudio.codecs.encodec.lstm import lstm_scan
    from jaxaudio.nn import attention as att
    from jaxaudio.nn import flash_attention as flash

    emit = make_emit(a.out)
    timeit = functools.partial(median_ms, repeat=a.repeat)

    rel = lambda x, y: float(jnp.linalg.norm((jnp.asarray(x, jnp.float32) - jnp.asarray(y, jnp.float32)).ravel())
                             / jnp.linalg.norm(jnp.asarray(y, jnp.float32).ravel()))
    key = jax.random.key(0)
    normal = lambda i, shape, dt=jnp.float32: jax.random.normal(jax.random.fold_in(key, i), shape).astype(dt)

    # --- EnCodec LSTM unroll -------------------------------------------------------------
    if "lstm" in a.parts:
        lstm_unroll(a, normal, emit, timeit, rel, lstm_scan)

    # the headline step's calls: the cascade's stages (d_model 256 and 384 over 8 heads: widths
    # 32 and 48, the latter zero-padded to 64 by the kernel) and the masking agent's (width 64)
    shapes = (((2, 100, 2, 32), (2, 100, 2, 48), (2, 100, 1, 64)) if a.small else
              ((8, 1200, 8, 32), (8, 1200, 8, 48), (8, 1200, 4, 64)))
    if a.widths:
        shapes = tuple(s for s in shapes if s[-1] in a.widths)
    if "tiles" in a.parts:  # Pallas's interpreter where there is no GPU (--small)
        tile_sweep(a, normal, emit, timeit, shapes, att, flash)
    if "forms" in a.parts:  # the interpreter too
        flash_forms(a, normal, emit, timeit, rel, shapes, att, flash)
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


def tiles_env(entries) -> str:
    """``{(pass, width): (block, warps, stages)}`` as a ``JAXAUDIO_FLASH_TILES`` value."""
    return ",".join(f"{kind}:{d}={'x'.join(map(str, cfg))}" for (kind, d), cfg in entries.items())


def tiles_set(flash, entries):
    """The flash kernel's tiles ``entries`` for the block, through ``JAXAUDIO_FLASH_TILES``
    (which outranks ``TILES``), restored on the way out."""
    return env_set(**{flash.TILES_ENV: tiles_env(entries)})


def attention_timing(a, normal, emit, timeit, shapes, att, flash):
    """Forward and forward+backward of 12 attention calls with dropout 0.1 (the cascade's
    2 x 6 layers): the explicit route (rematerialised) at fp32 and bf16, cuDNN at bf16, and the
    flash kernel at fp32 over tile sizes and warp counts; for each head width of ``shapes``."""
    import jax.numpy as jnp

    for shape in shapes:
        d = sum(flash.head_chunks(shape[-1]))  # the width the kernels run (their tiles' key)
        go = normal(30, shape)
        runs = [("xla_remat", jnp.float32, None), ("xla_remat", jnp.bfloat16, None),
                ("cudnn", jnp.bfloat16, None)]
        blocks = (16, 32, 64) if d <= 16 else (32, 64)
        runs += [("flash", jnp.float32, (blk, w)) for blk in blocks for w in (1, 2, 4)]
        for route, dtype, tiles in runs:
            q, k, v = (normal(40 + i, shape, dtype) for i in range(3))
            # both passes alike, 2 stages
            entries = {(kind, d): (*tiles, 2) for kind in flash.PASSES} if tiles else {}
            try:
                with tiles_set(flash, entries):
                    fb, fw = twelve_calls(att, flash, route, go)
                    emit(case="attention_12_calls", route=route, dtype=jnp.dtype(dtype).name,
                         tiles=tiles, shape=list(shape), fwd_bwd_ms=timeit(fb, q, k, v),
                         fwd_ms=timeit(fw, q, k, v))
            except Exception as e:  # a tile shape Triton cannot compile is a result too
                emit(case="attention_12_calls", route=route, tiles=tiles, shape=list(shape),
                     error=repr(e)[:300])


def tile_sweep(a, normal, emit, timeit, shapes, att, flash):
    """Each pass's tiles on their own, for the widths the kernel runs at the cascade's shapes
    (32 and 48): forward configurations timed on the forward of 12 calls (dropout 0.1),
    backward ones on forward+backward with the forward at its current tiles. Ends with
    one ``tile_sweep_best`` line per pass and width, and that line's ``env``, the
    ``JAXAUDIO_FLASH_TILES`` value that selects the fastest (``--tiles_env`` writes it)."""
    import jax

    interpret = jax.default_backend() != "gpu"
    candidates = {"fwd": [(b, w, 2) for b in (64, 128) for w in (4, 8)],
                  "bwd": [(b, w, 2) for b in (32, 64, 128) for w in (2, 4, 8)]
                         + [(32, 4, 1), (64, 4, 1)]}
    if a.small:
        candidates = {"fwd": [(16, 1, 2)], "bwd": [(16, 1, 1)]}
    best = {}
    for shape in shapes[:2]:  # widths 32 and 48 (the agent's 64 keeps the default tiles)
        d = sum(flash.head_chunks(shape[-1]))
        q, k, v, go = (normal(60 + i, shape) for i in range(4))
        for kind, configs in candidates.items():
            for cfg in configs:
                try:
                    with tiles_set(flash, {(kind, d): cfg}):
                        fb, fw = twelve_calls(att, flash, "flash", go, interpret)
                        ms = timeit(fw if kind == "fwd" else fb, q, k, v)
                except Exception as e:  # a tile shape Triton cannot compile is a result too
                    emit(case="tile_sweep", pass_=kind, width=d, shape=list(shape),
                         tiles=list(cfg), error=repr(e)[:300])
                    continue
                emit(case="tile_sweep", pass_=kind, width=d, shape=list(shape), tiles=list(cfg),
                     ms=ms, timed="forward" if kind == "fwd" else "forward+backward")
                if (kind, d) not in best or ms < best[(kind, d)][1]:
                    best[(kind, d)] = (cfg, ms)
    env = tiles_env({k: cfg for k, (cfg, _) in best.items()})
    for (kind, d), (cfg, ms) in best.items():
        emit(case="tile_sweep_best", pass_=kind, width=d, tiles=list(cfg), ms=ms, env=env)
    if a.tiles_env:
        with open(a.tiles_env, "w") as fh:
            fh.write(env + "\n")


@contextlib.contextmanager
def env_set(**values):
    """Environment variables set for the block (read when a step is traced), then restored."""
    import os

    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


def flash_forms(a, normal, emit, timeit, rel, shapes, att, flash):
    """Each width form x dQ form of the flash kernel at each shape: output and gradients
    against the explicit route (same masks, dropout 0.1; full float32 and default precision),
    then forward and forward+backward of 12 calls."""
    import jax
    import jax.numpy as jnp

    interpret = jax.default_backend() != "gpu"
    key_m = jax.random.key(2)

    def explicit(q, k, v):
        return jnp.einsum("bhqk,bkhd->bqhd", att._dropout(att.attention_weights(q, k), 0.1,
                                                          key_m), v)

    def value_and_grads(fn, precision):
        with jax.default_matmul_precision(precision):
            return jax.jit(jax.value_and_grad(lambda q, k, v: jnp.sum(fn(q, k, v) * go),
                                              (0, 1, 2)))(q, k, v)

    for shape in shapes:
        q, k, v, go = (normal(70 + i, shape) for i in range(4))
        refs = {p: value_and_grads(explicit, p) for p in ("highest", "default")}
        for width in flash.WIDTH_FORMS:
            for dq in flash.DQ_FORMS[1:]:  # partials, recompute (auto picks one of them)
                rec = dict(case="flash_forms", shape=list(shape), width_form=width, dq_form=dq,
                           chunks=list(flash.head_chunks(shape[-1], width)))
                with env_set(**{flash.WIDTH_ENV: width, flash.DQ_ENV: dq}):
                    fl = lambda q, k, v: flash.flash_attention(q, k, v, rate=0.1, key=key_m,
                                                               interpret=interpret)
                    for precision, (o_ex, g_ex) in refs.items():
                        o_fl, g_fl = value_and_grads(fl, precision)
                        rec[precision] = dict(rel_loss=abs(float(o_fl - o_ex)) / abs(float(o_ex)),
                                              **{f"rel_d{n}": rel(x, y) for n, x, y in
                                                 zip("qkv", g_fl, g_ex)})
                    fb, fw = twelve_calls(att, flash, "flash", go, interpret)
                    rec.update(fwd_ms=timeit(fw, q, k, v), fwd_bwd_ms=timeit(fb, q, k, v))
                emit(**rec)


def lstm_unroll(a, normal, emit, timeit, rel, lstm_scan):
    import jax
    import jax.numpy as jnp

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
