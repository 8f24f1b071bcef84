"""The train step over the state's leaves (``Steps.leaf_step``, what ``jaxaudio.train``'s loop
calls) is the train step: the same new state and metrics as ``Steps.train_step`` on the
``TrainState``; and the run's ``state`` is rebuilt from the leaves the loop keeps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.training.cli import parse_config
from jaxaudio.training.trainer import Run
from tiny_step import tiny_batch, tiny_steps

# The GAN on: the state carries a discriminator, its optimizer and the adaptive noise beside
# the generator's parameters, buffers and optimizer (two compiles of this step: kept small).
FLAGS = ["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
         "--num_transformer_layers", "2", "--batch_size", "2", "--clip_seconds", "0.128",
         "--codec", "mdct", "--no_mlflow", "--gan_weight", "0.1", "--disc_target_acc", "0.6"]


def _copy(tree):
    return jax.tree.map(lambda x: jnp.array(x, copy=True), tree)


def test_leaf_step_gives_the_train_steps_state_and_metrics():
    cfg = parse_config(FLAGS)
    codec, state, steps = tiny_steps(cfg)
    batch, codec_state = tiny_batch(cfg, codec), nnx.state(codec)
    assert state.disc_params is not None and state.disc_noise is not None
    args = (jnp.float32(0.0), jnp.int32(0))

    leaves, state_def = jax.tree.flatten(_copy(state))
    codec_leaves, codec_def = jax.tree.flatten(codec_state)
    step = steps.leaf_step(state_def, codec_def)
    assert steps.leaf_step(state_def, codec_def) is step  # jitted once per structure
    for _ in range(2):  # two steps: the leaves that come back go in again
        leaves, m_leaves = step(leaves, dict(batch), codec_leaves, *args)
        state, m_tree = steps.train_step(state, dict(batch), codec_state, *args)
    assert int(state.step) == 2

    want, want_def = jax.tree.flatten(state)
    assert want_def == state_def and len(leaves) == len(want)
    for got, ref in zip(leaves, want):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(ref))
    assert m_leaves.keys() == m_tree.keys()
    for k in m_tree:
        np.testing.assert_array_equal(np.asarray(m_leaves[k]), np.asarray(m_tree[k]), err_msg=k)


def test_the_runs_state_is_rebuilt_from_the_loops_leaves():
    cfg = parse_config(FLAGS)
    _, state, _ = tiny_steps(cfg)
    run = Run.__new__(Run)  # the state's bookkeeping alone, without data or a mesh
    run.state = state
    leaves = run._state_leaves()
    assert run._state_leaves() is leaves  # flattened once
    assert [id(x) for x in leaves] == [id(x) for x in jax.tree.leaves(state)]
    # what the loop does after a step: new leaves, and the old state (donated) dropped
    run._leaves = [x + 1 if x.dtype == jnp.int32 and x.ndim == 0 else x for x in leaves]
    run._state = None
    rebuilt = run.state
    assert type(rebuilt) is type(state) and int(rebuilt.step) == int(state.step) + 1
    assert jax.tree.structure(rebuilt) == jax.tree.structure(state)
    assert run.state is rebuilt  # rebuilt once, until the next step
    run.state = state  # a checkpoint load or a learning-rate change sets a whole state
    assert run._leaves is None and run.state is state
