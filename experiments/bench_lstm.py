"""EnCodec's LSTM on one GPU: the wavefront scan against the persistent Pallas kernels.

For ``[1200, B, 512]`` (the codec's LSTM at 16 s; B = 8 for a decode, 16 for the raw-clip
step's batched encode and the paired decode), two layers: forward and forward+backward times
of the scan (``lstm_scan``, one product per step over a block matrix, unroll 8;
``scan_unroll8`` with each step's states behind an optimisation barrier, ``_fused`` without it,
``_autodiff`` with JAX's gradient, all three with float32 operands; ``_fp16_products`` with
float32 weights and float16 operands for the recurrent products, the default at TF32 on a GPU;
``_bf16_products`` with bfloat16 weights and products, as in a bf16 decode) and of the
persistent kernels (``lstm_persistent``: one launch per direction, the programs synchronised
by a grid-wide barrier between steps) over block shapes and warp counts. Each is checked
against the scan at ``highest`` precision (forward, and the gradient of ``sum(y * g)`` with
respect to ``x``); ``--parts parity`` also compares the kernels and the scan both at
``highest``. Earlier forms (two products per step; a Pallas kernel per step) are in
``results/h200_lstm_scan_forms.jsonl`` and ``results/h200_lstm_step_kernel.jsonl``.

    python experiments/bench_lstm.py --out results/h200_lstm_persistent.jsonl
    python experiments/bench_lstm.py --small          # CPU check (the kernels interpreted)

Relative errors are ||a - b|| / ||b||; times are medians of `--repeat` after 3 warm-ups.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_common import kernel_bench_args, make_emit, median_ms  # noqa: E402

# (block_units, block_k, num_warps, num_stages); the first is the default
SHAPES = ((16, 64, 2, 2), (16, 128, 2, 2), (16, 64, 2, 3), (16, 64, 1, 2), (16, 128, 1, 2),
          (16, 256, 2, 2))


def main() -> None:
    a = kernel_bench_args(__doc__, parts=("parity", "timing", "persistent", "breakdown"))

    import jax
    import jax.numpy as jnp

    from jaxaudio.codecs.encodec.lstm import lstm_scan
    from lstm_persistent_kernel import lstm_persistent

    interpret = jax.default_backend() != "gpu"
    emit = make_emit(a.out)
    timeit = functools.partial(median_ms, repeat=a.repeat)

    rel = lambda x, y: float(jnp.linalg.norm((x - y).ravel()) / jnp.linalg.norm(y.ravel()))
    key = jax.random.key(0)
    normal = lambda i, shape: jax.random.normal(jax.random.fold_in(key, i), shape)
    t, h = (12, 64) if a.small else (1200, 512)
    # weights of EnCodec's scale (torch init U(+-1/sqrt(H)) is ~0.044 at H = 512)
    layers = [tuple(0.05 * normal(10 * l + j, shp) for j, shp in
                    enumerate(((4 * h, h), (4 * h, h), (4 * h,), (4 * h,)))) for l in range(2)]
    shapes = SHAPES[:1] if a.small else SHAPES
    layers_bf16 = [(w_ih.astype(jnp.bfloat16), w_hh.astype(jnp.bfloat16), b_ih, b_hh)
                   for w_ih, w_hh, b_ih, b_hh in layers]

    for b in ((3,) if a.small else (8, 16)):
        x, g = normal(1, (t, b, h)), normal(2, (t, b, h))
        # g is an argument, not a constant of the program: XLA constant-folded the float16
        # backward's max |g| for minutes when it was one
        loss = lambda fn: (lambda x, g: jnp.sum(fn(x) * g))
        scan_hi = lambda x: lstm_scan(x, layers, "highest")
        y_hi = jax.jit(scan_hi)(x)
        g_hi = jax.jit(jax.grad(loss(scan_hi)))(x, g)
        kernel = lambda bu, bk, nw, ns: (lambda x: lstm_persistent(
            x, layers, None, interpret=interpret, block_units=bu, block_k=bk, num_warps=nw,
            num_stages=ns))
        if "parity" in a.parts and "persistent" in a.parts:
            with jax.default_matmul_precision("highest"):
                fn = kernel(*shapes[0])
                emit(case="lstm_parity_highest", shape=[t, b, h], impl="persistent",
                     rel_fwd=rel(jax.jit(fn)(x), y_hi),
                     rel_grad=rel(jax.jit(jax.grad(loss(fn)))(x, g), g_hi))
        if "timing" not in a.parts:
            continue
        f32 = functools.partial(lstm_scan, products="float32")
        f16 = functools.partial(lstm_scan, products="float16")
        forms = {"scan_unroll8": lambda x: f32(x, layers, None, 8, "recompute", "barrier"),
                 "scan_unroll8_fused": lambda x: f32(x, layers, None, 8, "recompute", "fused"),
                 "scan_unroll8_autodiff": lambda x: f32(x, layers, None, 8, "autodiff"),
                 # float32 weights, float16 operands for the recurrent products (TF32's mantissa)
                 "scan_unroll8_fp16_products": lambda x: f16(x, layers, None, 8),
                 "scan_unroll16_fp16_products": lambda x: f16(x, layers, None, 16),
                 # a bf16 decode's LSTM: bfloat16 weights and products, float32 states and sums
                 "scan_unroll8_bf16_products": lambda x: lstm_scan(x, layers_bf16, None, 8),
                 "scan_unroll16_bf16_products": lambda x: lstm_scan(x, layers_bf16, None, 16)}
        only = os.environ.get("BENCH_LSTM_FORMS")  # e.g. "scan_unroll8,scan_unroll8_bf16_products"
        if only:
            forms = {k: v for k, v in forms.items() if k in only.split(",")}
        if "persistent" in a.parts:
            forms.update({f"persistent_{bu}u_{bk}k_{nw}w_{ns}s": kernel(*shp)
                          for shp in (shapes if b == 8 else shapes[:1]) for bu, bk, nw, ns in [shp]})
        for name, fn in forms.items():
            f = jax.jit(fn)
            fb = jax.jit(jax.grad(loss(fn)))
            emit(case="lstm_time", impl=name, shape=[t, b, h], forward_ms=timeit(f, x),
                 forward_backward_ms=timeit(fb, x, g), rel_fwd_vs_highest=rel(f(x), y_hi),
                 rel_grad_vs_highest=rel(fb(x, g), g_hi))
        if b == 8 and "breakdown" in a.parts:
            breakdown(kernel(*shapes[0]), x, g, emit, timeit, t, b, h)


def breakdown(fn, x, g, emit, timeit, t, b, h):
    """Where a step's time goes: the default kernels with the grid barrier replaced by a
    thread-block barrier (wrong results, the compute alone), and with the products dropped
    (the barrier, loads of the state and the cell)."""
    import jax
    import jax.numpy as jnp

    import lstm_persistent_kernel as lk
    from jax.experimental.pallas import triton as plgpu

    saved = lk._grid_barrier, lk._dot
    variants = {"no_grid_barrier": dict(_grid_barrier=lambda cnt, target: plgpu.debug_barrier()),
                "no_products": dict(_dot=lambda a, w, p: jnp.zeros((a.shape[0], w.shape[1]),
                                                                    jnp.float32))}
    try:
        for name, patch in variants.items():
            for k, v in patch.items():
                setattr(lk, k, v)
            # fresh functions: jax.jit caches traces by the function, and the patch must be traced
            f = jax.jit(lambda x: fn(x))
            fb = jax.jit(jax.grad(lambda x: jnp.sum(fn(x) * g)))
            emit(case="lstm_breakdown", variant=name, shape=[t, b, h], forward_ms=timeit(f, x),
                 forward_backward_ms=timeit(fb, x))
            lk._grid_barrier, lk._dot = saved
    finally:
        lk._grid_barrier, lk._dot = saved


if __name__ == "__main__":
    main()
