"""The latent GAN: the original's, and a stable variant that cannot make the codec buzz.

The original (``--gan_variant original``): the latent discriminator judges the generator's
output latents against the batch's targets rolled by one (``torch.roll(x, 1, 0)``), with
binary cross-entropy, and the generator loss enters at a fixed weight. Measured on the built-in
synthetic music, it collapses (the discriminator wins, ``train_gan_loss`` 0.7 -> 13) and the
output buzzes at the codec's frame rate. The cause: the discriminator averages its features
over time, so its gradient with respect to the latents is nearly the same at every frame. The
generator, pushed along that gradient, adds a per-channel offset that is constant in time, and
a latent constant in time decodes to a signal periodic in the codec's hop: a comb at every
multiple of the frame rate (187.5 Hz for the MDCT codec, 75 Hz for EnCodec), with energy in
every band up to Nyquist (the hiss).

The stable variant (``--gan_variant stable``, the default) removes that at the cause and keeps
the game balanced, with techniques the field uses:

- the discriminator sees each latent channel minus its mean over time, so it is blind to
  offsets constant in time, and its gradient with respect to the latents sums to exactly 0
  over time in every channel: the GAN can no longer push the output towards a comb
  (``tests/test_gan.py`` pins this);
- hinge loss (SAGAN, BigGAN; as in MelGAN and EnCodec's discriminators) and an R1 gradient
  penalty on real examples (Mescheder et al. 2018; StyleGAN), which keep the discriminator from
  becoming over-confident, so its losses stay bounded and its accuracy away from 1;
- an adaptive generator weight (VQGAN, Esser et al. 2021): the GAN's gradient with respect to
  the output latents is scaled to ``gan_weight`` times the norm of the reconstruction
  losses' gradient, so it can steer but never dominate the audio losses;
- the discriminator's learning rate follows the generator's schedule (a constant ratio, as
  in TTUR, Heusel et al. 2017): measured over 200 epochs, a discriminator learning at a fixed
  rate while the plateau scheduler takes the generator's down 100x wins the game (its
  accuracy climbs from 0.6 to 0.9-1.0 as the generator's rate falls);
- adaptive instance noise (Sønderby et al. 2017; the adaptive control of StyleGAN2-ADA,
  Karras et al. 2020): Gaussian noise at a level ``sigma`` times the real latents' RMS is
  added to every input of the discriminator (real, fake, and the fake the generator's
  gradient is taken through), and a controller raises ``sigma`` while the discriminator's
  training accuracy is above ``--disc_target_acc`` (0.7) and lowers it below. Noise makes the
  two distributions overlap, so a discriminator that starts to win loses its certainty at
  once, whatever the learning rates; measured over 200 epochs without it, the accuracy
  reached 0.9-1.0. The noise is white in time, so the discriminator's gradient still sums to
  0 over time in every channel;
- real examples are latents of real music played together: the input plus another clip's
  target (the batch's targets rolled by one), at the level the cascade gives its output, so
  the discriminator judges "a plausible mixture", not "a target alone".
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from jaxaudio.models.discriminator import discriminator_loss, generator_loss, roll_targets

GAN_VARIANTS = ("stable", "original")
ADAPTIVE_MAX = 1e4  # cap of the adaptive weight (VQGAN's)


def center_time(x: jax.Array) -> jax.Array:
    """``x [B, D, T]`` minus its mean over T in every channel."""
    return x - jnp.mean(x, axis=2, keepdims=True)


def real_examples(variant: str, codec, in_latent, tgt_latent, in_audio, tgt_audio) -> jax.Array:
    """What the discriminator is shown as real ``[B, D, T]``."""
    if variant == "original":
        return roll_targets(tgt_latent)
    n = min(in_audio.shape[-1], tgt_audio.shape[-1])
    mix = (in_audio[..., :n] + jnp.roll(tgt_audio[..., :n], 1, axis=0)) * jnp.sqrt(0.5)
    real = codec.encode(mix).astype(in_latent.dtype)
    t = min(real.shape[-1], in_latent.shape[-1])  # the generator's frame count
    real = jnp.pad(real[..., :t], ((0, 0), (0, 0), (0, in_latent.shape[-1] - t)))
    return jax.lax.stop_gradient(real)


def d_input(variant: str, x: jax.Array) -> jax.Array:
    return x if variant == "original" else center_time(x)


def disc_objective(variant: str, real_logits, fake_logits):
    """``(loss, real accuracy, fake accuracy)`` of the discriminator."""
    if variant == "original":
        return discriminator_loss(real_logits, fake_logits)
    loss = jnp.mean(jax.nn.relu(1.0 - real_logits)) + jnp.mean(jax.nn.relu(1.0 + fake_logits))
    return (loss, jnp.mean((real_logits > 0).astype(jnp.float32)),
            jnp.mean((fake_logits < 0).astype(jnp.float32)))


def gen_objective(variant: str, fake_logits) -> jax.Array:
    if variant == "original":
        return generator_loss(fake_logits)
    return -jnp.mean(fake_logits)


NOISE_FLOOR = 0.1  # the noise level's scale where the controller's variable is small


def noise_level(p: jax.Array, noise_max: float) -> jax.Array:
    """The instance-noise level of control variable ``p`` in [0, 1]: 0 at 0, ``noise_max``
    at 1, exponential in between (``0.1 * ((1 + noise_max / 0.1) ** p - 1)``), so that equal
    steps of ``p`` are equal ratios of the level once it matters."""
    return NOISE_FLOOR * (jnp.power(1.0 + noise_max / NOISE_FLOOR, p) - 1.0)


def noise_std(level: jax.Array, real_in: jax.Array) -> jax.Array:
    """Absolute noise standard deviation: ``level`` times the RMS of the discriminator's real
    input (no gradient; the same for real and fake, so the noise's size tells nothing)."""
    rms = jnp.sqrt(jnp.mean(jnp.square(real_in.astype(jnp.float32))))
    return jax.lax.stop_gradient(level * rms)


def add_noise(x: jax.Array, std: jax.Array | None, key) -> jax.Array:
    """``x`` plus white Gaussian noise of standard deviation ``std`` (None, noise off: ``x``
    itself, no draw)."""
    if std is None:
        return x
    return x + (std * jax.random.normal(key, x.shape, jnp.float32)).astype(x.dtype)


def control_noise(p: jax.Array, acc: jax.Array, updated: jax.Array, *, target: float,
                  rate: float) -> jax.Array:
    """The controller (ADA's): ``p`` one ``rate`` up when the discriminator's training accuracy
    ``acc`` is above ``target``, one down when below, clipped to [0, 1]; unchanged on a step
    without a discriminator update (``updated`` 0)."""
    step = rate * jnp.sign(acc - target) * updated
    return jnp.clip(p + step, 0.0, 1.0).astype(p.dtype)


def disc_loss_fn(variant: str, logits: Callable, r1_gamma: float, real, fake, key,
                 noise=None):
    """The discriminator's loss as a function of its parameters: ``fn(dp) -> (loss, aux)``.

    ``logits(dp, x, key) -> [B, 1]``. Two independent training forwards (own dropout masks), as
    the original; the stable variant adds ``r1_gamma / 2 * E||grad_x D(real)||^2`` (at the
    noisy real input, as ADA's R1 at augmented reals). ``noise``: the instance noise's standard
    deviation (:func:`noise_std`; None: off). ``aux``: real and fake accuracy, R1, and the accuracy the
    same forwards give without the noise (equal to the first when there is none).
    """
    real_in, fake_in = d_input(variant, real), d_input(variant, fake)
    k_real, k_fake = jax.random.fold_in(key, 0), jax.random.fold_in(key, 1)
    real_noisy = add_noise(real_in, noise, jax.random.fold_in(key, 2))
    fake_noisy = add_noise(fake_in, noise, jax.random.fold_in(key, 3))

    def fn(dp):
        real_logits = logits(dp, real_noisy, k_real)
        fake_logits = logits(dp, fake_noisy, k_fake)
        loss, racc, facc = disc_objective(variant, real_logits, fake_logits)
        r1 = jnp.zeros((), jnp.float32)
        if variant != "original" and r1_gamma > 0:
            g = jax.grad(lambda x: jnp.sum(logits(dp, x, k_real)))(real_noisy)
            r1 = jnp.mean(jnp.sum(jnp.square(g.astype(jnp.float32)), axis=(1, 2)))
            loss = loss + 0.5 * r1_gamma * r1
        clean = 0.5 * (racc + facc)
        if noise is not None:
            dp0 = jax.lax.stop_gradient(dp)
            _, racc0, facc0 = disc_objective(variant, logits(dp0, real_in, k_real),
                                             logits(dp0, fake_in, k_fake))
            clean = 0.5 * (racc0 + facc0)
        return loss, (racc, facc, r1, clean)

    return fn


def update_discriminator(opt: optax.GradientTransformation, loss_fn, d_params, d_opt_state,
                         lr_scale=1.0):
    """One optimizer step of the discriminator; a non-finite loss or gradient keeps it as it
    was. ``lr_scale`` multiplies its learning rate (AdamW's whole update is proportional to
    it). Returns ``(params, opt_state, metrics)``."""
    (loss, (racc, facc, r1, clean)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d_params)
    ok = jnp.isfinite(loss) & jnp.isfinite(optax.tree.norm(grads))
    upd, new_state = opt.update(grads, d_opt_state, d_params)
    upd = jax.tree.map(lambda u: u * jnp.asarray(lr_scale, u.dtype), upd)
    new_params = optax.apply_updates(d_params, upd)
    keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
    metrics = dict(disc_loss=loss, disc_real_acc=racc, disc_fake_acc=facc,
                   disc_acc=0.5 * (racc + facc), disc_acc_clean=clean, disc_r1=r1,
                   count_disc_updates=jnp.ones((), jnp.float32))
    return keep(new_params, d_params), keep(new_state, d_opt_state), metrics


def adaptive_scale(rec_grad: jax.Array, gan_grad: jax.Array) -> jax.Array:
    """``||rec_grad|| / ||gan_grad||`` (no gradient), capped: the factor that makes the GAN's
    push on the output latents as strong as the reconstruction's."""
    rn = jnp.sqrt(jnp.sum(jnp.square(rec_grad.astype(jnp.float32))))
    gn = jnp.sqrt(jnp.sum(jnp.square(gan_grad.astype(jnp.float32))))
    return jax.lax.stop_gradient(jnp.clip(rn / (gn + 1e-8), 0.0, ADAPTIVE_MAX))
