"""The masking agent's mask mechanics on made-up inputs (no fixture): Gumbel hard masks and
their straight-through gradient, the RMS restore, the rhythm metrics on silence, and the
energy gate's masks following the louder part. The parity with the original is in
``test_masking_agent.py``."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.agents.masking import (CreativeAgent, evaluate_rhythm_transfer, gumbel_hard_mask,
                                     restore_rms)


def test_rhythm_metrics_have_finite_gradients_on_silence():
    def total(a, b, c):
        return sum(v for k, v in evaluate_rhythm_transfer(a, b, c).items()
                   if k != "rhythm_preserved")

    grad = jax.jit(jax.grad(total, argnums=(0, 1, 2)))
    x = jax.random.normal(jax.random.key(0), (2, 4, 40))
    silence = jnp.zeros_like(x)
    for a, b, c in [(silence, silence, silence), (x, x, x), (x, silence, x)]:
        assert all(np.all(np.isfinite(g)) for g in grad(a, b, c))


def test_hard_masks_straight_through_gradient():
    logits = jax.random.normal(jax.random.key(1), (2, 3, 5)) * 2.0
    weights = jax.random.normal(jax.random.key(2), logits.shape)
    key = jax.random.key(4)

    def soft_sample(z):  # the relaxed sample whose gradient straight-through passes on
        two_way = jnp.stack([jax.nn.log_sigmoid(z), jax.nn.log_sigmoid(-z)], axis=1)
        return jax.nn.softmax(two_way + jax.random.gumbel(key, two_way.shape), axis=1)[:, 0]

    @jax.jit
    def compare(z):
        g_hard = jax.grad(lambda z: jnp.sum(gumbel_hard_mask(z, key) * weights))(z)
        g_soft = jax.grad(lambda z: jnp.sum(soft_sample(z) * weights))(z)
        return gumbel_hard_mask(z, key), soft_sample(z), g_hard, g_soft

    hard, soft, g_hard, g_soft = compare(logits)
    np.testing.assert_array_equal(hard, (soft > 0.5).astype(np.float32))
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6, atol=1e-7)
    assert np.all(g_hard != 0.0)


def test_hard_masks_select_input_with_the_soft_mask_probability():
    logits = jnp.array([-2.0, -0.5, 0.0, 1.0, 3.0])
    draws = 20_000
    hard = gumbel_hard_mask(jnp.broadcast_to(logits, (draws, 1, logits.size)),
                            jax.random.key(7))
    freq = np.asarray(hard).reshape(draws, -1).mean(axis=0)
    p = np.asarray(jax.nn.sigmoid(logits))
    assert np.all(np.abs(freq - p) < 5 * np.sqrt(p * (1 - p) / draws))


def test_restore_rms_restores_per_sample_rms():
    k1, k2 = jax.random.split(jax.random.key(0))
    reference = jax.random.normal(k1, (3, 8, 20)) * jnp.array([0.1, 1.0, 5.0])[:, None, None]
    masked = reference * jax.random.uniform(k2, reference.shape) * 0.3
    restore = jax.jit(restore_rms, static_argnames="eps")

    def rms(a, eps=0.0):
        return np.sqrt(np.mean(np.asarray(a, np.float64) ** 2, axis=(1, 2)) + eps)

    # Without eps the RMS is restored exactly; with it, as the original's formula says.
    np.testing.assert_allclose(rms(restore(masked, reference, eps=0.0)), rms(reference),
                               rtol=1e-5)
    restored = restore(masked, reference)
    np.testing.assert_allclose(
        rms(restored), rms(masked) * rms(reference, 1e-8) / rms(masked, 1e-8), rtol=1e-5)
    ratio = np.asarray(restored) / np.asarray(masked)  # one gain per sample: structure kept
    np.testing.assert_allclose(ratio, ratio[:, :1, :1] * np.ones_like(ratio), rtol=1e-5)
    silent = jnp.zeros_like(masked)
    assert np.all(np.asarray(restore(silent, reference)) == 0.0)
    g = jax.jit(jax.grad(lambda m: jnp.sum(restore_rms(m, reference))))(silent)
    assert np.all(np.isfinite(g))


def test_energy_gate_masks_follow_the_louder_part():
    """gate="energy": complementary masks that give each cell to the part loud there, so they
    change in time with the music (the original's settle on a constant channel split)."""
    agent = CreativeAgent(16, use_discriminator=False, gate="energy", rngs=nnx.Rngs(params=0))
    t = np.arange(64)
    hits = (t % 16 < 3).astype(np.float32)  # a drum hit every 16 frames
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 64)).astype(np.float32) * (0.05 + 3.0 * hits)
    y = rng.standard_normal((2, 16, 64)).astype(np.float32)
    out = agent.process(jnp.asarray(x), jnp.asarray(y))
    masks = agent.mask_generator(jnp.asarray(x), jnp.asarray(y))
    im, tm = np.asarray(masks.input_mask), np.asarray(masks.target_mask)
    np.testing.assert_allclose(im + tm, 1.0, atol=1e-6)
    on, off = im[..., hits > 0].mean(), im[..., hits == 0].mean()
    assert on > 0.7 and off < 0.3, (on, off)
    assert float(out.stats["input_mask_temporal_std"]) > 0.05
    assert float(out.stats["mask_onset_corr"]) > 0.2  # noise makes onsets everywhere; hits dominate
    chex.assert_tree_all_finite(jax.grad(lambda a, b: jnp.sum(
        agent.process(a, b).encoded_input))(jnp.asarray(x), jnp.zeros_like(jnp.asarray(y))))


def _drums_over_chords():
    """``[2, 16, 64]`` latents: the target (chords) loud in channels 0-7 and quiet above; the
    input (drums) hits every 16 frames for 3 frames in every channel, below the target's
    level in channels 0-7, and between its hits keeps a hi-hat in channels 8-15 only."""
    t = np.arange(64)
    hits = t % 16 < 3
    rng = np.random.default_rng(1)
    low = np.arange(16) < 8
    amp_in = np.where(hits[None, :], 0.8, np.where(low[:, None], 0.05, 0.3))
    amp_tgt = np.where(low, 1.0, 0.1)[:, None] * np.ones(64)
    x = rng.choice([-1.0, 1.0], (2, 16, 64)) * amp_in
    y = rng.choice([-1.0, 1.0], (2, 16, 64)) * amp_tgt
    return jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32), hits, low


def test_onset_gate_passes_the_drums_at_their_hits_in_every_band():
    """gate="onset": at a hit the input takes the low channels, where it is quieter than the
    target (the energy gate leaves them to the target: a crossover); between hits the target
    takes them back. The balance aims at the features' own share."""
    x, y, hits, low = _drums_over_chords()
    masks = {}
    for gate in ("energy", "onset"):
        agent = CreativeAgent(16, use_discriminator=False, gate=gate, rngs=nnx.Rngs(params=0))
        masks[gate] = agent.mask_generator(x, y)
    onset = masks["onset"]
    im = np.asarray(onset.input_mask)
    np.testing.assert_allclose(im + np.asarray(onset.target_mask), 1.0, atol=1e-6)
    at_hits_low = im[:, low][..., hits].mean()
    between_low = im[:, low][..., ~hits].mean()
    assert at_hits_low > 0.8 and between_low < 0.1, (at_hits_low, between_low)
    energy_at_hits_low = np.asarray(masks["energy"].input_mask)[:, low][..., hits].mean()
    assert energy_at_hits_low < 0.5, energy_at_hits_low
    assert float(onset.stats["complementarity"]) >= 0.9
    assert float(onset.stats["mask_onset_corr"]) > 0.5
    # The balance goal: the mean of the prior mask, from the gains and features recomputed.
    agent = CreativeAgent(16, use_discriminator=False, gate="onset", rngs=nnx.Rngs(params=0))
    ex, ey = np.asarray(x, np.float64) ** 2, np.asarray(y, np.float64) ** 2

    def above_median(level):
        return np.clip(level - np.median(level, axis=-1, keepdims=True), -10, 10)

    cell = np.log(ex + 1e-6)
    level = np.log(ex.mean(axis=1, keepdims=True) + 1e-6)
    prior = (float(agent.mask_generator.energy_gain[...])
             * np.clip(cell - np.log(ey + 1e-6), -10, 10)
             + float(agent.mask_generator.onset_gain[...])
             * (above_median(cell) + above_median(level)))
    goal = np.mean(1.0 / (1.0 + np.exp(-prior)))
    np.testing.assert_allclose(float(onset.stats["balance_goal"]), goal, rtol=1e-5)
    balance = (im.mean() - goal) ** 2 + ((1 - im).mean() - (1 - goal)) ** 2
    np.testing.assert_allclose(float(onset.balance_loss), balance, rtol=1e-4, atol=1e-9)
    # Gradients reach the gains, and stay finite on a silent target.
    weight = jnp.asarray(np.random.default_rng(2).standard_normal(x.shape), jnp.float32)
    grads = nnx.grad(lambda a: jnp.sum(weight * a.process(x, y).encoded_input))(agent)
    assert float(jnp.abs(grads.mask_generator.onset_gain[...])) > 0
    grads = nnx.grad(lambda a: jnp.sum(a.process(x, jnp.zeros_like(y)).encoded_input))(agent)
    chex.assert_tree_all_finite(nnx.state(grads))
