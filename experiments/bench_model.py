"""Forward + backward time of the cascade SimpleTransformer, without and with each agent.

One training step's model work: ``jax.jit(jax.value_and_grad(loss))`` with respect to the
parameters, in training mode (dropout on, keys from the ``dropout``/``noise`` streams), where
``loss = mean(output^2) + the returned agent losses``. Timed as the median of ``--repeats`` runs
after ``--warmup`` runs, each ended with ``jax.block_until_ready``. One JSON line per case.

Full size (the original's headline model and training shape): encoding_dim 128, nhead 8,
num_layers 6, the 2-stage cascade, latents ``[8, 128, 1200]``, the compositional agent at its
original size (component_dim 64, 8 heads, 4 composer layers)::

    python experiments/bench_model.py            # GPU
    python experiments/bench_model.py --small    # CPU smoke run (tiny sizes)

A case whose agent package is missing prints ``"status": "unavailable"`` with the reason.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import nnx  # noqa: E402

from jaxaudio.models.transformer import SimpleTransformer  # noqa: E402

CASES = {
    "cascade": {},
    "cascade+masking_agent": {"use_creative_agent": True},
    "cascade+compositional_agent": {"use_compositional_agent": True},
}
FULL = dict(encoding_dim=128, nhead=8, num_layers=6, batch=8, frames=1200,
            component_dim=64, composer_heads=8, composer_layers=4)
SMALL = dict(encoding_dim=32, nhead=4, num_layers=1, batch=2, frames=48,
             component_dim=16, composer_heads=4, composer_layers=1)


def build(sizes: dict, flags: dict, seed: int = 0) -> SimpleTransformer:
    def factory():
        return SimpleTransformer(
            encoding_dim=sizes["encoding_dim"],
            nhead=sizes["nhead"],
            num_layers=sizes["num_layers"],
            dropout=0.1,
            num_transformer_layers=2,
            component_dim=sizes["component_dim"],
            composer_heads=sizes["composer_heads"],
            composer_layers=sizes["composer_layers"],
            rngs=nnx.Rngs(seed),
            **flags,
        )

    return nnx.jit(factory)()  # one compiled initialiser instead of one dispatch per weight


def time_case(name: str, flags: dict, sizes: dict, warmup: int, repeats: int) -> dict:
    record = {"case": name, "batch": sizes["batch"], "frames": sizes["frames"],
              "encoding_dim": sizes["encoding_dim"], "nhead": sizes["nhead"],
              "num_layers": sizes["num_layers"], "device": str(jax.devices()[0].device_kind)}
    try:
        model = build(sizes, flags)
    except ImportError as e:
        return {**record, "status": "unavailable", "reason": str(e)}
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    record["params"] = int(sum(x.size for x in jax.tree.leaves(params)))
    shape = (sizes["batch"], sizes["encoding_dim"], sizes["frames"])
    k_in, k_tg = jax.random.split(jax.random.key(1))
    x, t = jax.random.normal(k_in, shape), jax.random.normal(k_tg, shape)

    def loss_fn(params, rest, x, t, key):
        m = nnx.merge(graphdef, params, rest, copy=True)
        rngs = nnx.Rngs(dropout=jax.random.fold_in(key, 0), noise=jax.random.fold_in(key, 1))
        out = m(x, t, train=True, rngs=rngs)
        aux = [v for v in (out.mask_reg_loss, out.balance_loss) if v is not None]
        return jnp.mean(jnp.square(out.output)) + sum(aux), nnx.state(m, nnx.Not(nnx.Param))

    step = jax.jit(jax.value_and_grad(loss_fn, has_aux=True))
    t0 = time.perf_counter()
    jax.block_until_ready(step(params, rest, x, t, jax.random.key(0)))
    record["compile_s"] = round(time.perf_counter() - t0, 3)
    for i in range(warmup):
        jax.block_until_ready(step(params, rest, x, t, jax.random.key(i)))
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        (loss, _), grads = step(params, rest, x, t, jax.random.key(100 + i))
        jax.block_until_ready((loss, grads))
        times.append(time.perf_counter() - t0)
    finite = bool(jnp.isfinite(loss)) and all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    return {**record, "status": "ok", "finite": finite, "repeats": repeats,
            "median_ms": round(1e3 * statistics.median(times), 3), "min_ms": round(1e3 * min(times), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes for a CPU smoke run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--cases", nargs="*", choices=sorted(CASES), default=list(CASES))
    args = parser.parse_args()
    sizes = SMALL if args.small else FULL
    for name in args.cases:
        print(json.dumps(time_case(name, CASES[name], sizes, args.warmup, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
