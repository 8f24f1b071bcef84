"""The generator's non-finite skip (``optax.apply_if_finite`` inside ``Steps._apply``): a
non-finite loss or gradient keeps parameters, optimizer state and buffers, and the
consecutive count comes from optax's ``notfinite_count``."""

from __future__ import annotations

from types import SimpleNamespace

import chex
import jax.numpy as jnp
import pytest

from jaxaudio.training.state import (TrainState, generator_optimizer, learning_rate,
                                     nonfinite_run)
from jaxaudio.training.step import Steps


def _setup():
    opt = generator_optimizer(SimpleNamespace(grad_clip=1.0, lr=1e-2, weight_decay=0.01))
    # two leaves: a non-finite loss poisons the smaller one only, and the whole update is skipped
    params = {"w": jnp.arange(3.0), "b": jnp.zeros(2)}
    state = TrainState(step=jnp.zeros((), jnp.int32), params=params,
                       buffers={"u": jnp.ones(2)}, opt_state=opt.init(params),
                       disc_params=None, disc_buffers=None, disc_opt_state=None)
    steps = SimpleNamespace(opt=opt)
    return steps, state


def _apply(steps, state, grad, loss):
    new_buffers = {"u": jnp.full(2, 7.0)}
    return Steps._apply(steps, state, {"w": grad, "b": jnp.ones(2)}, new_buffers,
                        jnp.float32(loss), None, None, None)


@pytest.mark.parametrize("grad, loss", [(jnp.ones(3), jnp.nan), (jnp.ones(3), jnp.inf),
                                        (jnp.array([1.0, jnp.nan, 0.0]), 1.0)])
def test_nonfinite_step_keeps_everything_and_counts(grad, loss):
    steps, state = _setup()
    good, ok, _ = _apply(steps, state, jnp.ones(3), 1.0)
    assert bool(ok) and int(nonfinite_run(good)) == 0
    chex.assert_trees_all_equal(good.buffers, {"u": jnp.full(2, 7.0)})
    run = good
    for n in (1, 2, 3):
        skipped, ok, _ = _apply(steps, run, grad, loss)
        assert not bool(ok) and int(nonfinite_run(skipped)) == n
        chex.assert_trees_all_equal(skipped.params, good.params)
        chex.assert_trees_all_equal(skipped.buffers, good.buffers)
        chex.assert_trees_all_equal(skipped.opt_state.inner_state, good.opt_state.inner_state)
        assert int(skipped.step) == int(good.step) + n
        run = skipped
    again, ok, _ = _apply(steps, run, jnp.ones(3), 1.0)  # a finite step resets the count
    assert bool(ok) and int(nonfinite_run(again)) == 0
    assert not jnp.array_equal(again.params["w"], good.params["w"])
    assert not jnp.array_equal(again.params["b"], good.params["b"])
    # the rate is held in float32: 1e-2 rounds by 2e-8 relative, well inside approx's 1e-6
    assert float(learning_rate(again)) == pytest.approx(1e-2)
