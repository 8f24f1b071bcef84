"""The train state: model and discriminator as (graphdef, arrays), their optimizers, the step.

Everything that changes during training lives in one pytree (:class:`TrainState`), so the step
is a pure function of it, a checkpoint is one orbax save, and a resume restores everything
(spectral-norm vectors and BatchNorm statistics are the model's non-parameter ``buffers``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from jaxaudio.training.config import TrainConfig


@jax.tree_util.register_dataclass
@dataclass
class TrainState:
    step: jax.Array  # int32, optimizer steps taken (skipped ones included)
    params: Any  # nnx.State of the model's nnx.Param
    buffers: Any  # nnx.State of everything else (spectral-norm u/v, BatchNorm statistics)
    opt_state: Any
    disc_params: Any  # None without the GAN
    disc_buffers: Any
    disc_opt_state: Any
    # The adaptive instance noise's control variable in [0, 1] (float32 scalar; None without
    # the GAN). Checkpoints written before it existed restore with 0.
    disc_noise: Any = None


# apply_if_finite never gives up on its own: the trainer stops the run after
# --max_nonfinite_steps consecutive skips (read from ``notfinite_count``).
NEVER_GIVE_UP = 2**30


def generator_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """AdamW (torch defaults: betas 0.9/0.999, eps 1e-8, decay on every parameter) after a
    global-norm clip; the learning rate is a hyperparameter the plateau scheduler sets. A
    non-finite gradient leaves the parameters and the optimizer state as they were
    (``optax.apply_if_finite``, which also counts the consecutive skips)."""
    return optax.apply_if_finite(optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip),
        optax.inject_hyperparams(optax.adamw)(
            learning_rate=cfg.lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay
        ),
    ), max_consecutive_errors=NEVER_GIVE_UP)


def nonfinite_run(state: "TrainState") -> jax.Array:
    """Consecutive skipped (non-finite) generator updates up to this state."""
    return state.opt_state.notfinite_count


def discriminator_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """The original's GAN optimiser: AdamW betas 0.5/0.999 at ``disc_lr``, clip 1.0."""
    return optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(cfg.disc_lr, b1=0.5, b2=0.999, eps=1e-8, weight_decay=cfg.weight_decay),
    )


def split_module(module: nnx.Module) -> tuple[nnx.GraphDef, Any, Any]:
    """``(graphdef, params, buffers)``: trainable ``nnx.Param`` and everything else."""
    graphdef, params, buffers = nnx.split(module, nnx.Param, ...)
    return graphdef, params, buffers


def check_own_buffers(tree: Any, what: str = "train state") -> None:
    """Every array of ``tree`` holds a device buffer of its own.

    The train step donates its state; a buffer reached through two leaves (a module copied
    with ``nnx.clone``, which keeps its arrays, or one array assigned twice) would stop the
    first step with XLA's "Attempt to donate the same buffer twice". Raises ``ValueError``
    naming both leaves instead, before anything is compiled.
    """
    seen: dict[tuple[int, int], str] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if not isinstance(leaf, jax.Array) or isinstance(leaf, jax.core.Tracer) or leaf.size == 0:
            continue  # abstract (eval_shape) states have no buffers
        name = jax.tree_util.keystr(path)
        for shard in leaf.addressable_shards:
            key = (shard.device.id, shard.data.unsafe_buffer_pointer())
            if key in seen:
                raise ValueError(
                    f"{what}: {name} and {seen[key]} share one device buffer; every "
                    f"parameter and buffer needs its own array (copy it, e.g. "
                    f"jnp.array(x, copy=True), instead of reusing it)")
            seen[key] = name


def init_state(cfg: TrainConfig, model: nnx.Module, disc: nnx.Module | None):
    """Build the state and the static parts the step needs (graphdefs, optimizers)."""
    graphdef, params, buffers = split_module(model)
    opt = generator_optimizer(cfg)
    d_graphdef = d_params = d_buffers = d_opt_state = None
    d_opt = None
    if disc is not None:
        d_graphdef, d_params, d_buffers = split_module(disc)
        d_opt = discriminator_optimizer(cfg)
        d_opt_state = d_opt.init(d_params)
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        buffers=buffers,
        opt_state=opt.init(params),
        disc_params=d_params,
        disc_buffers=d_buffers,
        disc_opt_state=d_opt_state,
        disc_noise=None if disc is None else jnp.zeros((), jnp.float32),
    )
    check_own_buffers(state)
    statics = dict(graphdef=graphdef, opt=opt, disc_graphdef=d_graphdef, disc_opt=d_opt)
    return state, statics


def learning_rate(state: TrainState) -> jax.Array:
    """The generator's learning rate, read out of its optimizer state by name."""
    return optax.tree_utils.tree_get(state.opt_state, "learning_rate")


def with_learning_rate(state: TrainState, lr: float) -> TrainState:
    """A copy of ``state`` whose generator learning rate is ``lr`` (same sharding and dtype)."""
    old = learning_rate(state)
    new = jax.device_put(jnp.asarray(lr, old.dtype), old.sharding)
    opt_state = optax.tree_utils.tree_set(state.opt_state, learning_rate=new)
    return TrainState(**{**state.__dict__, "opt_state": opt_state})
