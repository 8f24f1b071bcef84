"""Helpers shared by the kernel benchmarks: one JSON line per record, median device time."""

from __future__ import annotations

import json
import statistics
import time


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
