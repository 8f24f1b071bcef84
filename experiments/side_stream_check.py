"""Does this JAX/XLA compile and run work on a second GPU stream (``compute_on('gpu_stream:1')``)?
Three small programs, each printed as ok/failed with its error: a scan, a scan under an inner
``jax.jit``, and a small random EnCodec's decode (convolutions and its LSTM scan), each beside
work on the main stream in one jitted function, and checked against the plain call.

    python experiments/side_stream_check.py
"""

from __future__ import annotations

import subprocess
import sys

CASES = ("scan", "scan_jit", "decode", "decode_jit")

CHILD = r'''
import sys, jax, jax.numpy as jnp, numpy as np
from flax import nnx
from jax.experimental.compute_on import compute_on
case = sys.argv[1]
def stream(f):
    return compute_on(f, compute_type="gpu_stream:1", out_memory_spaces=jax.memory.Space.Device)
if case.startswith("scan"):
    def side(w, x):
        return jax.lax.scan(lambda h, xt: (jnp.tanh(h @ w + xt), h), x[0], x, unroll=8)[1]
    args = (jnp.eye(64) * 0.5, jnp.ones((300, 8, 64)))
else:
    from jaxaudio.codecs.encodec import random_encodec
    codec = random_encodec(0)
    gd, st = nnx.split(codec)
    def side(st, z):
        return nnx.merge(gd, st).decode(z)
    args = (st, jnp.ones((2, codec.dim, 75)))
fn = stream(jax.jit(side) if case.endswith("_jit") else side)
@jax.jit
def both(a, b, y):
    s = fn(a, b)
    return s, jnp.sin(y) @ jnp.sin(y).T
out, _ = both(*args, jnp.ones((512, 512)))
ref = jax.jit(side)(*args)
err = float(jnp.max(jnp.abs(out - ref)))
txt = both.lower(*args, jnp.ones((512, 512))).compile().as_text()
print("ok", case, "max diff", err, "streamed", txt.count("_xla_stream_annotation"))
'''


def main() -> None:
    for case in CASES:
        r = subprocess.run([sys.executable, "-c", CHILD, case], capture_output=True, text=True,
                           timeout=300)
        tail = (r.stdout + r.stderr).strip().splitlines()
        ok = [t for t in tail if t.startswith("ok ")]
        print(ok[0] if ok and r.returncode == 0 else
              f"failed {case} (exit {r.returncode}): " + " | ".join(
                  t for t in tail if "Check failed" in t or "Error" in t or "ERROR" in t)[:400])


if __name__ == "__main__":
    main()
