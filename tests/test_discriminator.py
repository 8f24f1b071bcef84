"""AudioDiscriminator and its losses against the original's numbers (``audio_discriminator.npz``)."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures import assert_output_close, assert_scalar_close, load_fixture
from jaxaudio.torch_port import from_torch_state_dict, torch_state_dict
from jaxaudio.models.discriminator import AudioDiscriminator, discriminator_loss, generator_loss, roll_targets


def _model(fx) -> AudioDiscriminator:
    c = fx.config
    return from_torch_state_dict(
        lambda: AudioDiscriminator(c["encoding_dim"], c["hidden_dims"], rngs=nnx.Rngs(0)),
        fx.group("param"),
        source=str(fx.path),
    )


def test_eval_logits_and_losses_match_original():
    fx = load_fixture("audio_discriminator")
    model = _model(fx)

    @jax.jit
    def run(model, real, fake):
        real_logits, fake_logits = model(real), model(fake)
        return real_logits, fake_logits, discriminator_loss(real_logits, fake_logits), generator_loss(fake_logits)

    real_logits, fake_logits, (d_loss, real_acc, fake_acc), g_loss = run(
        model, jnp.asarray(fx["in/real"]), jnp.asarray(fx["in/fake"])
    )
    assert_output_close(real_logits, fx["out/real_logits"], "real_logits")
    assert_output_close(fake_logits, fx["out/fake_logits"], "fake_logits")
    assert_scalar_close(d_loss, fx["out/disc_loss"], "disc_loss")
    assert_scalar_close(real_acc, fx["out/real_acc"], "real_acc")
    assert_scalar_close(fake_acc, fx["out/fake_acc"], "fake_acc")
    assert_scalar_close(g_loss, fx["out/gen_loss"], "gen_loss")


def test_roll_targets_matches_original():
    fx = load_fixture("audio_discriminator")
    # The fixture rolls its 'real' input, as the trainer rolls the encoded targets.
    np.testing.assert_array_equal(roll_targets(jnp.asarray(fx["in/real"])), fx["out/roll_targets"])


def test_losses_are_stable_for_extreme_logits():
    logits = np.array([[-200.0], [0.0], [200.0]], np.float32)

    @jax.jit
    def run(z):
        grad = jax.grad(lambda z: generator_loss(z) + discriminator_loss(z, z)[0])(z)
        return discriminator_loss(z, z), grad

    (loss, real_acc, fake_acc), g = run(logits)
    assert np.isfinite(float(loss)) and np.all(np.isfinite(np.asarray(g)))
    # real: mean softplus(-z) = (200 + log 2 + 0) / 3; fake: mean softplus(z), the same
    # a few float32 roundings of values near 200: ~eps relative each
    np.testing.assert_allclose(float(loss), 2 * (200.0 + np.log(2.0)) / 3, rtol=1e-5)
    # float32 1/3 is 3e-8 relative off float64 1/3, inside the default rtol 1e-7
    np.testing.assert_allclose([float(real_acc), float(fake_acc)], [1 / 3, 1 / 3])


def test_training_mode_uses_dropout_from_rngs_and_shapes():
    def factory():
        return AudioDiscriminator(8, (4, 6), rngs=nnx.Rngs(0))

    # random weights without eager initialisers (their compiles would dominate this test)
    rng = np.random.default_rng(0)
    shapes = torch_state_dict(nnx.eval_shape(factory))
    model = from_torch_state_dict(factory, {k: rng.normal(0, 0.5, v.shape).astype(np.float32) for k, v in shapes.items()})
    x = jax.random.normal(jax.random.key(0), (3, 8, 20))

    @jax.jit
    def run(model, seed):  # eval logits and training logits with dropout keys from `seed`
        return model(x), model(x, train=True, rngs=nnx.Rngs(dropout=jax.random.key(seed)))

    (evaluated, a), (_, b), (_, c) = run(model, 1), run(model, 1), run(model, 2)
    chex.assert_shape(evaluated, (3, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c) and not np.allclose(a, evaluated)
    with pytest.raises(ValueError, match="expects"):
        model(jnp.zeros((3, 5, 20)))
