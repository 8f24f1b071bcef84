"""One tiny train step's parts, shared by the tests that drive ``Steps`` directly: the MDCT
codec at the config's latent size, the state and statics, the ``Steps`` on one device, and a
batch of random clips in the latent cache's fields."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs import make_codec
from jaxaudio.training.builders import build_discriminator, build_mesh, build_model, replicate
from jaxaudio.training.state import init_state
from jaxaudio.training.step import Steps


def tiny_steps(cfg, model=None, codec=None):
    """``(codec, state, steps)`` for ``cfg`` (``model`` defaults to ``build_model(cfg)``,
    ``codec`` to the MDCT codec at the config's latent size). The state is placed on the
    steps' mesh as the trainer places it, so that the state a step returns (on that mesh)
    goes into the next step with the same shardings: one compile for any number of steps."""
    codec = make_codec("mdct", dim=cfg.encoding_dim) if codec is None else codec
    state, statics = init_state(cfg, build_model(cfg) if model is None else model,
                                build_discriminator(cfg))
    mesh = build_mesh(jax.devices()[:1])
    steps = Steps(cfg, statics, nnx.graphdef(codec), mesh)
    return codec, replicate(state, mesh), steps


def tiny_batch(cfg, codec, *, input_scale=0.2, target_scale=0.2, batch=2, seed=0):
    """Random input and target clips of ``cfg.clip_seconds`` in the cache's four fields;
    ``target_scale`` may be one level per sample."""
    n = int(cfg.clip_seconds * codec.sample_rate)
    rng = np.random.default_rng(seed)
    x = jnp.asarray(input_scale * rng.standard_normal((batch, 1, n)), jnp.float32)
    scale = np.reshape(np.asarray(target_scale, np.float64), (-1, 1, 1))
    y = jnp.asarray(scale * rng.standard_normal((batch, 1, n)), jnp.float32)
    return {"input_latent": codec.encode(x), "input_audio": codec.decode(codec.encode(x)),
            "target_latent": codec.encode(y), "target_audio": y}
