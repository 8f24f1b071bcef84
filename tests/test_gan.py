"""The latent GAN's variants, and the cause of the frame-rate buzz pinned down.

A latent constant in time decodes to a signal periodic in the codec's hop: a comb at every
multiple of the frame rate. The original's discriminator responds to such offsets and its
gradient has a mean over time in every channel, so it can push the generator towards that
comb. The stable variant's discriminator is blind to constant offsets: its gradient sums to 0
over time in every channel.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxaudio.codecs import make_codec
from jaxaudio.models.discriminator import AudioDiscriminator
from jaxaudio.training import gan


def _disc(dim=16):
    return AudioDiscriminator(encoding_dim=dim, hidden_dims=(32, 32), rngs=nnx.Rngs(params=0))


def _gen_grad(variant, z, disc):
    return jax.grad(lambda x: gan.gen_objective(variant, disc(gan.d_input(variant, x))))(z)


def test_constant_latent_decodes_to_a_comb_at_the_frame_rate():
    # The mechanism: one latent channel held constant over time is periodic in the hop.
    codec = make_codec("mdct", dim=32)
    z = jnp.zeros((1, 32, 64)).at[:, 5, :].set(1.0)
    audio = np.asarray(codec.decode(z))[0, 0]
    hop = 32
    mid = audio[4 * hop:-4 * hop]
    # exact: a latent constant in time decodes every hop with the same float32 operations
    np.testing.assert_allclose(mid[hop:], mid[:-hop], atol=1e-5)  # period = one hop
    spec = np.abs(np.fft.rfft(mid[: (len(mid) // hop) * hop]))
    k = len(mid) // hop  # bins per frame-rate harmonic
    on = spec[k::k].sum()
    assert on > 0.99 * spec[1:].sum()  # all energy on multiples of the frame rate


def test_stable_discriminator_gradient_has_no_constant_in_time_component():
    disc = _disc()
    z = jax.random.normal(jax.random.key(0), (4, 16, 48))
    g = _gen_grad("stable", z, disc)
    # the centring removes the time mean but for float32 round-off, ~log2(48) eps of sum_t |g|
    # (|g| ~ 1e-4 here: 3e-10 measured); the original's sums are >= 3e-5
    scale = float(jnp.max(jnp.sum(jnp.abs(g), axis=2)))
    chex.assert_trees_all_close(jnp.sum(g, axis=2), jnp.zeros((4, 16)), atol=1e-5 * scale)
    # And an offset constant in time changes nothing the stable discriminator sees.
    shifted = z + jax.random.normal(jax.random.key(1), (4, 16, 1))
    # centred z + c and z agree to ~eps of |z + c| ~ 3: 7e-9 on logits of ~0.05 (measured)
    logits = disc(gan.d_input("stable", z))
    chex.assert_trees_all_close(disc(gan.d_input("stable", shifted)), logits,
                                atol=1e-5 * float(jnp.max(jnp.abs(logits))))


def test_original_discriminator_gradient_has_a_constant_in_time_component():
    # What the original's discriminator can push: an offset constant in time moves its logits,
    # and its gradient has a non-zero mean over time in (nearly) every channel.
    disc = _disc()
    z = jax.random.normal(jax.random.key(0), (4, 16, 48))
    g = _gen_grad("original", z, disc)
    # Share of the gradient's energy in its mean over time: 1/T for a gradient without time
    # structure; the time-averaging discriminator puts several times that there.
    share = jnp.sum(jnp.square(jnp.mean(g, axis=2))) * g.shape[2] / jnp.sum(jnp.square(g))
    assert float(share) > 2.0 / g.shape[2]
    shifted = z + jax.random.normal(jax.random.key(1), (4, 16, 1))
    assert float(jnp.max(jnp.abs(disc(shifted) - disc(z)))) > 1e-3


def test_hinge_losses_and_accuracies():
    real = jnp.array([[2.0], [0.5], [-1.0]])
    fake = jnp.array([[-2.0], [0.5], [1.0]])
    loss, racc, facc = gan.disc_objective("stable", real, fake)
    expected = np.mean([0.0, 0.5, 2.0]) + np.mean([0.0, 1.5, 2.0])
    # means of three small values in float32: an ulp or two (2/3 and 1/3 round by 3e-8)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    np.testing.assert_allclose([float(racc), float(facc)], [2 / 3, 1 / 3], rtol=1e-6)
    np.testing.assert_allclose(float(gan.gen_objective("stable", fake)), 0.5 / 3, rtol=1e-6)


def test_r1_penalty_and_discriminator_update_stay_finite():
    disc = _disc()
    graphdef, params, rest = nnx.split(disc, nnx.Param, ...)

    def logits(dp, x, key):
        return nnx.merge(graphdef, dp, rest)(x, train=True, rngs=nnx.Rngs(dropout=key))

    real = jax.random.normal(jax.random.key(2), (4, 16, 32))
    fake = jnp.zeros((4, 16, 32))  # silence: gradients must stay finite
    for noise in (None, gan.noise_std(jnp.float32(3.0), real)):
        fn = gan.disc_loss_fn("stable", logits, 1.0, real, fake, jax.random.key(3), noise=noise)
        (loss, (_, _, r1, _)), grads = jax.value_and_grad(fn, has_aux=True)(params)
        assert float(r1) > 0 and np.isfinite(float(loss))
        chex.assert_tree_all_finite(grads)
    # Silent real examples: the noise's size (a multiple of their RMS) is 0 and stays finite.
    silent = gan.noise_std(jnp.float32(3.0), jnp.zeros((4, 16, 32)))
    assert float(silent) == 0.0
    chex.assert_tree_all_finite(jax.grad(lambda x: gan.noise_std(jnp.float32(3.0), x))(
        jnp.zeros((2, 3))))


def test_adaptive_scale_matches_gradient_norms():
    rec = jnp.full((2, 3), 2.0)
    adv = jnp.full((2, 3), 0.5)
    # square roots of sums of equal squares: 4 within an ulp; the + 1e-8 moves it by 1e-8
    np.testing.assert_allclose(float(gan.adaptive_scale(rec, adv)), 4.0, rtol=1e-6)
    assert float(gan.adaptive_scale(rec, jnp.zeros((2, 3)))) == gan.ADAPTIVE_MAX



def test_discriminator_learning_rate_follows_the_generator_schedule():
    """Stable GAN: the discriminator's rate is scaled with the generator's (a constant ratio),
    so a generator slowed down by the scheduler is not overrun; the original's stays fixed, and
    configurations saved before the flag existed meant fixed."""
    from jaxaudio.training.config import TrainConfig

    assert TrainConfig(gan_weight=0.1).disc_lr_schedule == "follow"
    assert TrainConfig(gan_weight=0.1, gan_variant="original").disc_lr_schedule == "fixed"
    saved = {k: v for k, v in TrainConfig(gan_weight=0.1).__dict__.items()
             if k != "disc_lr_schedule"}
    assert TrainConfig.from_dict(saved).disc_lr_schedule == "fixed"

    disc = _disc()
    graphdef, params, rest = nnx.split(disc, nnx.Param, ...)
    logits = lambda dp, x, key: nnx.merge(graphdef, dp, rest)(x)
    real = jax.random.normal(jax.random.key(2), (4, 16, 32))
    fn = gan.disc_loss_fn("stable", logits, 1.0, real, -real, jax.random.key(3))
    opt = optax.adamw(1.0, b1=0.5, weight_decay=0.01)  # steps far above float32 round-off
    steps = {}
    for scale in (1.0, 0.01):
        new, _, _ = gan.update_discriminator(opt, fn, params, opt.init(params), lr_scale=scale)
        steps[scale] = jax.tree.map(lambda a, b: a - b, new, params)
    # b - p recovers a 0.01 step to half an ulp of |p| <= 0.2 (~1e-6 relative); atol takes the
    # elements whose step is tiny (|g| near Adam's eps)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, 0.01 * a, rtol=1e-4, atol=1e-6),
                 steps[1.0], steps[0.01])


def test_disc_dropout_flag_reaches_the_discriminator():
    from jaxaudio.training.config import TrainConfig
    from jaxaudio.training.builders import build_discriminator

    x = jax.random.normal(jax.random.key(0), (2, 128, 24))
    for dropout, same in ((0.0, True), (0.3, False)):
        disc = build_discriminator(TrainConfig(gan_weight=0.1, disc_dropout=dropout))
        a = disc(x, train=True, rngs=nnx.Rngs(dropout=1))
        b = disc(x, train=True, rngs=nnx.Rngs(dropout=2))
        assert bool(jnp.allclose(a, b)) is same


def test_spectral_outlier_penalty_rewards_notches_so_the_gain_update_drops_it():
    """The original's outlier penalty watches 1.8-2.2, 3.8-4.2 and 5.8-6.2 kHz (where its
    additive update's artefacts stood out). Music whose loud frames reach those bands (hi-hats)
    is penalised, and the same music with the three bands cut out scores about 0: a model
    that can set a gain per frequency (the gain update) learns those notches (measured: 20-29
    dB dips in MDCT channels 19-23, 41-44 and 61-65 of the built-in run). So the penalty is on
    by default only with the additive update."""
    from jaxaudio.training.config import TrainConfig
    from jaxaudio.training.penalties import DEFAULT_BANDS, spectral_outlier_penalty

    rng = np.random.default_rng(0)
    sr, n = 24000, 24000
    x = 0.05 * rng.standard_normal((2, n))
    for start in range(0, n, 3000):  # hi-hat-like bursts: loud frames in every band
        x[:, start:start + 600] *= 8.0
    spec = np.fft.rfft(x, axis=-1)
    f = np.fft.rfftfreq(n, 1.0 / sr)
    for lo, hi in DEFAULT_BANDS:  # the bands cut out, with margins for the window's leakage
        spec[:, (f > lo - 300) & (f < hi + 300)] = 0.0
    notched = np.fft.irfft(spec, n, axis=-1)
    before = float(spectral_outlier_penalty(jnp.asarray(x, jnp.float32)))
    after = float(spectral_outlier_penalty(jnp.asarray(notched, jnp.float32)))
    assert before > 1.0 and after < 0.01 * before, (before, after)

    assert TrainConfig().loss_weight_map()["spectral_penalty"] == 0.0
    assert TrainConfig(cascade_update="additive").loss_weight_map()["spectral_penalty"] == 0.01
    assert TrainConfig(spectral_penalty_weight=0.02).loss_weight_map()["spectral_penalty"] == 0.02
    saved = {k: v for k, v in TrainConfig().__dict__.items() if k != "spectral_penalty_weight"}
    assert TrainConfig.from_dict(saved).loss_weight_map()["spectral_penalty"] == 0.01


def _gan_step_setup(extra):
    from jaxaudio.training.cli import parse_config
    from tiny_step import tiny_batch, tiny_steps

    cfg = parse_config(["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
                        "--num_transformer_layers", "2", "--batch_size", "2", "--clip_seconds",
                        "0.128", "--codec", "mdct", "--no_mlflow", "--gan_weight", "0.1", *extra])
    codec, state, steps = tiny_steps(cfg)
    return cfg, state, steps, tiny_batch(cfg, codec), nnx.state(codec)


def _disc_change(steps, state, batch, codec_state, index):
    before = jax.tree.map(np.asarray, state.disc_params)
    new, metrics = steps.train_step(state, batch, codec_state, jnp.float32(0.0), jnp.int32(index))
    change = jax.tree.map(lambda a, b: np.asarray(a) - b, new.disc_params, before)
    return change, float(metrics["count_disc_updates"])


def test_the_step_updates_the_discriminator_at_its_frequency_and_scheduled_rate():
    """Through the jitted train step: every batch with --disc_update_freq 1 (no conditional),
    every other batch with 2; and with the stable GAN the discriminator's step shrinks with the
    generator's learning rate (a first AdamW step is proportional to the rate)."""
    from jaxaudio.training.state import with_learning_rate

    cfg, state, steps, batch, cs = _gan_step_setup(["--disc_update_freq", "2"])
    change, count = _disc_change(steps, state, batch, cs, 1)
    assert count == 0 and all(not np.any(c) for c in jax.tree.leaves(change))
    cfg, state, steps, batch, cs = _gan_step_setup(["--disc_update_freq", "2"])
    change_freq2, count = _disc_change(steps, state, batch, cs, 0)
    assert count == 1

    cfg, state, steps, batch, cs = _gan_step_setup([])
    full, count = _disc_change(steps, state, batch, cs, 1)
    assert count == 1 and any(np.any(c) for c in jax.tree.leaves(full))
    # The same update with or without the conditional: two compilations round differently,
    # and AdamW's first step g / (|g| + eps) is sensitive to that where |g| is near eps, so
    # a few elements may differ by a few % of the step: each leaf's update is compared as a
    # whole (relative norm of the difference).
    for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(change_freq2)):
        assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a)
    cfg, state, steps, batch, cs = _gan_step_setup([])
    slow, _ = _disc_change(steps, with_learning_rate(state, cfg.lr / 100), batch, cs, 1)
    # new - old recovers a ~1e-6 step only to half an ulp of the parameter (3.7e-9 at |p| ~ 0.1,
    # measured): atol 1e-8 covers |p| < 0.25; rtol 2e-3 is that error relative to the step
    jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a / 100, rtol=2e-3, atol=1e-8),
                 full, slow)


def test_noise_level_maps_the_control_variable_from_zero_to_its_maximum():
    p = jnp.linspace(0.0, 1.0, 11)
    level = np.asarray(gan.noise_level(p, 100.0))
    # float32 0.1 * (1001 ** 1 - 1): within a few ulps of 100 (7.6e-6 each)
    assert level[0] == 0.0 and abs(level[-1] - 100.0) < 1e-3
    assert np.all(np.diff(level) > 0)
    # Exponential once it matters: equal steps of p are (nearly) equal ratios of the level.
    ratios = level[6:] / level[5:-1]
    # not round-off: the '- 1' in 0.1 * (r ** p - 1) bends the first ratios, by 1.6% at p = 0.5
    np.testing.assert_allclose(ratios, ratios[0], rtol=0.05)


def test_noise_controller_moves_against_the_discriminator_and_holds_without_an_update():
    p = jnp.float32(0.5)
    up = gan.control_noise(p, jnp.float32(0.9), jnp.float32(1.0), target=0.7, rate=0.01)
    down = gan.control_noise(p, jnp.float32(0.6), jnp.float32(1.0), target=0.7, rate=0.01)
    held = gan.control_noise(p, jnp.float32(0.9), jnp.float32(0.0), target=0.7, rate=0.01)
    # 0.5 +- 0.01 in float32: 0.51 and 0.49 round by ~1e-8 relative
    np.testing.assert_allclose([float(up), float(down), float(held)], [0.51, 0.49, 0.5],
                               rtol=1e-6)
    assert float(gan.control_noise(jnp.float32(0.0), jnp.float32(0.5), jnp.float32(1.0),
                                   target=0.7, rate=0.01)) == 0.0
    assert float(gan.control_noise(jnp.float32(1.0), jnp.float32(1.0), jnp.float32(1.0),
                                   target=0.7, rate=0.01)) == 1.0


def test_instance_noise_takes_a_winning_discriminator_to_chance_and_keeps_the_gradient_centred():
    """The controller's authority: a discriminator that tells real from fake perfectly (here
    a fixed one that reads the channels' spread, and real has twice fake's) is at chance under
    the largest noise; and through the noise the generator's gradient still has no component
    constant in time."""
    real = 2.0 * jax.random.normal(jax.random.key(0), (64, 16, 48))
    fake = jax.random.normal(jax.random.key(1), (64, 16, 48))
    centred = gan.d_input("stable", real)

    def logits(dp, x, key):  # log-spread above that of a unit normal: > 0 for real
        return jnp.log(jnp.mean(jnp.square(x), axis=(1, 2)))[:, None] - jnp.log(2.0)

    def acc(level):
        std = gan.noise_std(jnp.float32(level), centred)
        _, aux = gan.disc_loss_fn("stable", logits, 0.0, real, fake, jax.random.key(2),
                                  noise=std)(None)
        return 0.5 * (float(aux[0]) + float(aux[1])), float(aux[3])

    noisy, clean = acc(0.0)
    assert noisy == 1.0 and clean == 1.0
    noisy, clean = acc(100.0)
    # not round-off: under 100x noise real and fake look alike (every logit > 0 here: exactly
    # 0.5); 0.1 allows a discriminator still near chance
    assert abs(noisy - 0.5) <= 0.1 and clean == 1.0  # the clean accuracy is reported apart

    disc = _disc()
    z = jax.random.normal(jax.random.key(3), (4, 16, 48))
    std = gan.noise_std(jnp.float32(1.0), gan.d_input("stable", z))
    g = jax.grad(lambda x: gan.gen_objective("stable", disc(gan.add_noise(
        gan.d_input("stable", x), std, jax.random.key(4)))))(z)
    # as above: ~log2(48) eps of sum_t |g| (3e-10 measured)
    scale = float(jnp.max(jnp.sum(jnp.abs(g), axis=2)))
    chex.assert_trees_all_close(jnp.sum(g, axis=2), jnp.zeros((4, 16)), atol=1e-5 * scale)
    assert float(jnp.max(jnp.abs(g))) > 0


def test_the_step_raises_the_noise_while_the_discriminator_wins_and_carries_it_in_the_state():
    """Through the jitted train step: the control variable moves by one rate per update in
    the direction of the discriminator's accuracy against the target, and the stable GAN has
    the controller on by default (off for the original's GAN and with --disc_target_acc 0)."""
    cfg, state, steps, batch, cs = _gan_step_setup(["--disc_noise_rate", "0.25"])
    assert cfg.disc_target_acc == 0.7 and steps.noise_control
    assert float(state.disc_noise) == 0.0
    for i in range(3):
        p = float(state.disc_noise)
        state, m = steps.train_step(state, batch, cs, jnp.float32(0.0), jnp.int32(i))
        acc = float(m["disc_acc"])
        expected = min(1.0, max(0.0, p + 0.25 * np.sign(acc - 0.7)))
        # exact: p + 0.25 * sign(...) stays on multiples of 1/4; atol is moot
        np.testing.assert_allclose(float(state.disc_noise), expected, atol=1e-6)
        # noise_level's float32 pow inside the jitted step and eagerly: an ulp or two
        np.testing.assert_allclose(float(m["disc_noise"]), float(gan.noise_level(
            jnp.float32(p), cfg.disc_noise_max)), rtol=1e-5)
        assert 0.0 <= float(m["disc_acc_clean"]) <= 1.0
    _, _, off, _, _ = _gan_step_setup(["--disc_target_acc", "0"])
    assert not off.noise_control
    _, _, orig, _, _ = _gan_step_setup(["--gan_variant", "original"])
    assert not orig.noise_control
