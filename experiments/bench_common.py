"""Helpers shared by the kernel benchmarks: their flags, one JSON line per record, median
device time."""

from __future__ import annotations

import argparse
import json
import statistics
import time


def kernel_bench_args(doc: str, parts: tuple[str, ...] = (), extra=None,
                      default_parts: tuple[str, ...] | None = None) -> argparse.Namespace:
    """``--out``, ``--repeat``, ``--small`` (``--parts`` from ``parts``, by default
    ``default_parts`` or all, and what ``extra(parser)`` adds) parsed, then cuDNN kept out of
    XLA's command buffers (:func:`jaxaudio.runtime.configure_gpu_flags`, before jax starts a
    backend)."""
    from jaxaudio.runtime import configure_gpu_flags

    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--small", action="store_true")
    if parts:
        p.add_argument("--parts", nargs="+", choices=parts,
                       default=list(parts if default_parts is None else default_parts))
    if extra is not None:  # a script's own flags
        extra(p)
    a = p.parse_args()
    configure_gpu_flags()
    return a


def make_emit(out: str | None):
    """``emit(**record)``: adds the device's kind, prints the JSON line, appends it to ``out``."""
    import jax

    def emit(**rec):
        rec["device"] = jax.devices()[0].device_kind
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            with open(out, "a") as f:
                f.write(line + "\n")

    return emit


def median_ms(f, *args, repeat: int, warmup: int = 3) -> float:
    """Median wall time of ``f(*args)`` in ms over ``repeat`` calls after ``warmup``, each
    ended by ``jax.block_until_ready``."""
    import jax

    for _ in range(warmup):
        jax.block_until_ready(f(*args))
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        ts.append(time.perf_counter() - t0)
    return round(1e3 * statistics.median(ts), 3)
