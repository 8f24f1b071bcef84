"""EnCodec's LSTM on one GPU: forms of the wavefront scan, and a Pallas kernel per step.

For ``[1200, B, 512]`` (the codec's LSTM at 16 s; B = 8 for a decode, 16 for the raw-clip
step's batched encode and the paired decode), two layers: forward and forward+backward times
of the scan (``lstm_scan``: one product per step over a block matrix, unroll 8 and 16) and of
the per-step Pallas kernel (``lstm_step_kernel.py``, its best block shape), each checked
against the scan at ``highest`` precision (forward and the gradient of ``sum(y * g)`` with
respect to ``x``). The earlier scan with two products per step, timed by this script before it
was replaced (commit before the block matrix), is in ``results/h200_lstm_scan_forms.jsonl``.

    python experiments/bench_lstm.py --out results/h200_lstm.jsonl
    python experiments/bench_lstm.py --small          # CPU check (the kernel interpreted)

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
    from lstm_step_kernel import lstm_pallas

    interpret = jax.default_backend() != "gpu"

    emit = make_emit(a.out)
    timeit = functools.partial(median_ms, repeat=a.repeat)

    rel = lambda x, y: float(jnp.linalg.norm((x - y).ravel()) / jnp.linalg.norm(y.ravel()))
    key = jax.random.key(0)
    normal = lambda i, shape: jax.random.normal(jax.random.fold_in(key, i), shape)
    t, h = (40, 16) if a.small else (1200, 512)
    # weights of EnCodec's scale (torch init U(+-1/sqrt(H)) is ~0.044 at H = 512)
    layers = [tuple(0.05 * normal(10 * l + j, shp) for j, shp in
                    enumerate(((4 * h, h), (4 * h, h), (4 * h,), (4 * h,)))) for l in range(2)]

    for b in ((2,) if a.small else (8, 16)):
        x, g = normal(1, (t, b, h)), normal(2, (t, b, h))
        loss = lambda fn: (lambda x: jnp.sum(fn(x) * g))
        y_hi = jax.jit(lambda x: lstm_scan(x, layers, "highest"))(x)
        g_hi = jax.jit(jax.grad(loss(lambda x: lstm_scan(x, layers, "highest"))))(x)
        forms = {
            "scan_fused_unroll8": lambda x: lstm_scan(x, layers, None, 8),
            "scan_fused_unroll16": lambda x: lstm_scan(x, layers, None, 16),
            "pallas_step_kernel": lambda x: lstm_pallas(x, layers, None, interpret=interpret,
                                                        block_units=16, block_k=64, num_warps=2),
        }
        for name, fn in forms.items():
            f = jax.jit(fn)
            fb = jax.jit(jax.grad(loss(fn)))
            emit(case="lstm_time", impl=name, shape=[t, b, h], forward_ms=timeit(f, x),
                 forward_backward_ms=timeit(fb, x), rel_fwd_vs_highest=rel(f(x), y_hi),
                 rel_grad_vs_highest=rel(fb(x), g_hi))


if __name__ == "__main__":
    main()
