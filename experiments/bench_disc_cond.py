"""The discriminator's update inside ``lax.cond`` against the same update without it (CPU).

Why the train step no longer wraps the update in a conditional when ``--disc_update_freq`` is
1: XLA's CPU backend runs the convolutions inside a conditional's branch far slower. Built-in
shapes (batch 8, 128 latent channels, 281 frames = 1.5 s of the MDCT codec), the original's
discriminator widths, AdamW, dropout on.

    JAX_PLATFORMS=cpu python experiments/bench_disc_cond.py
"""
import json
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxaudio.models.discriminator import AudioDiscriminator
from jaxaudio.training.setup import DISC_HIDDEN_DIMS


def main():
    disc = AudioDiscriminator(128, DISC_HIDDEN_DIMS, rngs=nnx.Rngs(params=0))
    graphdef, params, rest = nnx.split(disc, nnx.Param, ...)
    x = jax.random.normal(jax.random.key(0), (8, 128, 281))
    key = jax.random.key(1)
    loss = lambda p, x, k: jnp.sum(nnx.merge(graphdef, p, rest)(x, train=True, rngs=nnx.Rngs(dropout=k)))
    opt = optax.adamw(1e-4)

    def update(p, o):
        u, o = opt.update(jax.grad(loss)(p, x, key), o, p)
        return optax.apply_updates(p, u), o

    plain = jax.jit(update)
    in_cond = jax.jit(lambda p, o, i: jax.lax.cond(i % 1 == 0, lambda op: update(*op),
                                                   lambda op: op, (p, o)))
    state = opt.init(params)
    record = {"device": jax.devices()[0].device_kind, "jax": jax.__version__}
    for name, fn, args in (("plain_s", plain, (params, state)),
                           ("in_cond_s", in_cond, (params, state, jnp.int32(0)))):
        jax.block_until_ready(fn(*args))
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - t0)
        record[name] = round(statistics.median(times), 4)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
