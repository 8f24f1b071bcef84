"""The train, eval and predict steps: pure functions of (state, batch), jitted once with
explicit shardings over the ``data`` mesh axis.

The train step reads top to bottom (:meth:`Steps._train_step`):

1. :meth:`_prepare`: model inputs and loss references (cached latents or raw clips encoded
   here; unity test, the pure-GAN noise curriculum, fixed complementary masks). Raw clips'
   input is decoded (the losses' reference) later, with the output, in one codec call.
2. :meth:`_forward`: the generator once, as a VJP: output latents and the agent's losses by name.
3. the discriminator's update every ``disc_update_freq`` steps (:mod:`jaxaudio.training.gan`),
   before the generator's loss, as the original orders it.
4. :meth:`_terms`: the named loss terms (:mod:`jaxaudio.training.objective`) through the frozen
   codec's decoder, plus the agent's losses, weighted by the config's ``{name: weight}``; the
   GAN's generator loss with its (fixed or adaptive) weight; gradients pulled back through the
   one VJP.
5. :meth:`_apply`: AdamW with a global-norm clip inside ``optax.apply_if_finite``: a
   non-finite loss or gradient keeps the old state, and optax counts the skip.

Randomness: ``fold_in(key(seed), step)``. Metrics: one flat dict of scalars, each loss term
under its name.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxaudio.agents.registry import get_agent
from jaxaudio.codecs.base import decode, decode_pair
from jaxaudio.data.cache import codec_fields
from jaxaudio.models.complementary_masking import apply_complementary_mask
from jaxaudio.nn.flash_attention import batch_sharded
from jaxaudio.nn.functional import unbiased_std
from jaxaudio.training import gan
from jaxaudio.training.config import TrainConfig
from jaxaudio.training.objective import (LossInputs, compute_terms, validation_terms,
                                         weighted_total)
from jaxaudio.training.state import TrainState, learning_rate, nonfinite_run

BATCH_KEYS = ("input_latent", "input_audio", "target_latent", "target_audio")


def _corrcoef(a: jax.Array, b: jax.Array) -> jax.Array:
    a = a.reshape(-1) - jnp.mean(a)
    b = b.reshape(-1) - jnp.mean(b)
    den = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    return jnp.where(den > 0, jnp.sum(a * b) / jnp.where(den > 0, den, 1.0), 0.0)


def _cast_floats(tree: Any, dtype) -> Any:
    return jax.tree.map(
        lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree
    )


class Steps:
    """The jitted train/eval/predict functions of one configuration and mesh."""

    def __init__(self, cfg: TrainConfig, statics: dict[str, Any], codec_graphdef, mesh: Mesh):
        self.cfg = cfg
        self.mesh = mesh
        self.graphdef = statics["graphdef"]
        self.opt = statics["opt"]
        self.disc_graphdef = statics["disc_graphdef"]
        self.disc_opt = statics["disc_opt"]
        self.codec_graphdef = codec_graphdef
        self.base_key = jax.random.key(cfg.seed)
        self.compute_dtype = jnp.bfloat16 if cfg.precision == "bf16" else jnp.float32
        # the train step's loss decode only; validation and predictions decode in float32
        self.codec_dtype = jnp.bfloat16 if cfg.codec_precision == "bf16" else None
        self.weights = cfg.loss_weight_map()
        self.gan = cfg.gan_weight > 0 and self.disc_graphdef is not None
        self.noise_control = self.gan and cfg.disc_target_acc > 0
        agent = cfg.agent
        self.val_names = validation_terms() + (get_agent(agent).validation_losses if agent else ())
        rep, data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        self.replicated, self.batch_sharding = rep, data
        # (state, batch, codec state, alpha, batch index) -> (state, metrics), state donated
        self._train_jit = dict(donate_argnums=(0,), in_shardings=(rep, data, rep, rep, rep),
                               out_shardings=(rep, rep))
        self.train_step = jax.jit(self._train_step, **self._train_jit)
        self._leaf_steps: dict[tuple, Any] = {}
        self.eval_step = jax.jit(self._eval_step, in_shardings=(rep, data, rep),
                                 out_shardings=rep)
        self.predict = jax.jit(self._predict, in_shardings=(rep, data, rep),
                               out_shardings=data)

    def leaf_step(self, state_def, codec_def):
        """:attr:`train_step` over flat lists of leaves, the state's (``state_def``, its
        treedef) and the frozen codec's (``codec_def``): ``(leaves, batch, codec_leaves, alpha,
        batch_index) -> (new leaves, metrics)``, the state's leaves donated. The same program;
        what differs is the host's work per call. The trainer's loop keeps the state as leaves,
        because flattening and rebuilding its hundreds of ``nnx.Variable`` nodes in Python
        each step costs milliseconds (``experiments/README.md``), which delays the dispatch."""
        key = (state_def, codec_def)
        if key not in self._leaf_steps:
            def step(leaves, batch, codec_leaves, alpha, batch_index):
                new, metrics = self._train_step(state_def.unflatten(leaves), batch,
                                                codec_def.unflatten(codec_leaves), alpha,
                                                batch_index)
                new_leaves, new_def = jax.tree.flatten(new)
                if new_def != state_def:
                    raise ValueError(f"train step: the new state's structure {new_def} "
                                     f"differs from the state's {state_def}")
                return new_leaves, metrics

            step.__name__ = "_train_step"  # the same program name as train_step's
            self._leaf_steps[key] = jax.jit(step, **self._train_jit)
        return self._leaf_steps[key]

    # --- pieces -------------------------------------------------------------------------

    def _forward(self, params, buffers, in_lat, tgt_lat, *, train: bool, key):
        """Generator forward: ``((output latents, agent losses), (stats, new buffers))``."""
        # Rebuilt here so the model's variables belong to this trace (it may run under a VJP)
        # and the forward may update its buffers (spectral-norm u/v, BatchNorm statistics).
        buffers = jax.tree.map(lambda x: x, buffers)
        model = nnx.merge(self.graphdef, _cast_floats(params, self.compute_dtype), buffers)
        rngs = nnx.Rngs(dropout=jax.random.fold_in(key, 0), noise=jax.random.fold_in(key, 1))
        x = in_lat.astype(self.compute_dtype)
        y = tgt_lat.astype(self.compute_dtype) if self.cfg.cascade else None
        with batch_sharded(self.mesh):  # the Pallas attention kernel runs per device
            out = model(x, y, train=train, rngs=rngs)
        _, _, new_buffers = nnx.split(model, nnx.Param, ...)
        new_buffers = jax.tree.map(lambda new, old: new.astype(old.dtype), new_buffers, buffers)
        losses = {k: jnp.asarray(v, jnp.float32) for k, v in (out.losses or {}).items()}
        stats = {k: jnp.asarray(v, jnp.float32) for k, v in out.stats.items()}
        return (out.output.astype(jnp.float32), losses), (stats, new_buffers)

    def _disc_logits(self, d_params, d_buffers, x, key):
        disc = nnx.merge(self.disc_graphdef, d_params, d_buffers)
        return disc(x, train=True, rngs=nnx.Rngs(dropout=key))

    def _prepare(self, batch, codec, alpha, key):
        """Model inputs and loss references of one batch: ``(input latents, target latents,
        input audio, target audio for the losses, target audio the model was fed, reference
        latents)``. From raw clips the input audio is None and the reference latents are the
        input's: :meth:`_terms` decodes them together with the output (the codec's sequential
        part, EnCodec's LSTM, then runs once for both); otherwise the reference is None."""
        cfg = self.cfg
        ref_lat = None
        if "input_raw" in batch:  # no cache: raw clips are encoded here
            batch = codec_fields(codec, batch["input_raw"], batch["target_audio"],
                                 decode_input=cfg.unity_test)
            ref_lat = None if cfg.unity_test else batch["input_latent"]
        in_lat, in_audio = batch["input_latent"], batch.get("input_audio")
        tgt_lat, tgt_audio = batch["target_latent"], batch["target_audio"]
        if cfg.unity_test:
            tgt_audio = in_audio
            if cfg.cascade:
                tgt_lat = codec.encode(in_audio)
        clean_tgt_audio = tgt_audio
        if cfg.pure_gan_mode > 0:
            k_in, k_tgt = jax.random.split(jax.random.fold_in(key, 2))
            # Per-sample noise levels: torch's unbiased std over (D, T) or (1, N).
            in_std = unbiased_std(in_lat, axis=(1, 2))[:, None, None]
            tgt_std = unbiased_std(tgt_audio, axis=(1, 2))[:, None, None]
            noise_in = jax.random.normal(k_in, in_lat.shape, in_lat.dtype) * in_std
            noise_tgt = jax.random.normal(k_tgt, tgt_audio.shape, tgt_audio.dtype) * tgt_std
            in_lat = (1.0 - alpha) * in_lat + alpha * noise_in
            tgt_audio = (1.0 - alpha) * tgt_audio + alpha * noise_tgt
            if cfg.cascade:
                # Re-encoded only when there is noise: at alpha 0 the latents are those of
                # the same audio.
                tgt_lat = jax.lax.cond(
                    alpha > 0, lambda a: codec.encode(a).astype(tgt_lat.dtype),
                    lambda a: tgt_lat, tgt_audio)
        if cfg.cascade and cfg.mask_type != "none":
            in_lat, tgt_lat = apply_complementary_mask(
                in_lat, tgt_lat, mask_type=cfg.mask_type,
                temporal_segment_frames=cfg.mask_temporal_segment,
                freq_split_ratio=cfg.mask_freq_split,
                channel_keep_ratio=cfg.mask_channel_keep,
                energy_threshold=cfg.mask_energy_threshold,
                key=jax.random.fold_in(key, 3),
            )
        return (in_lat, jax.lax.stop_gradient(tgt_lat), in_audio, clean_tgt_audio, tgt_audio,
                ref_lat)

    def _terms(self, codec, z, agent_losses, in_audio, tgt_audio, *, names=None, valid=None,
               ref_lat=None, codec_dtype=None):
        """The named loss terms of output latents ``z`` (decoded by the frozen codec, its
        matrix work in ``codec_dtype``) and the agent's losses: ``(terms, loss inputs, input
        audio)``. With ``ref_lat`` (and ``in_audio`` None) the input audio is ``ref_lat``
        decoded, in one call with ``z``."""
        if ref_lat is None:
            out = decode(codec, z, dtype=codec_dtype)
        else:
            out, in_audio = decode_pair(codec, z, ref_lat, dtype=codec_dtype)
        inputs = LossInputs.from_audio(out, in_audio, tgt_audio, output_latent=z, valid=valid)
        terms = compute_terms(inputs, self.weights, names=names)
        terms.update({k: v for k, v in agent_losses.items() if names is None or k in names})
        return terms, inputs, in_audio

    def _disc_update(self, state, batch_index, real, fake, key, noise):
        """The discriminator's step every ``disc_update_freq``-th batch of the epoch."""
        loss_fn = gan.disc_loss_fn(
            self.cfg.gan_variant,
            lambda dp, x, k: self._disc_logits(dp, state.disc_buffers, x, k),
            self.cfg.gan_r1, real, fake, key, noise=noise)

        def skip(operand):
            zero = jnp.zeros((), jnp.float32)
            return (*operand, dict(disc_loss=zero, disc_real_acc=zero, disc_fake_acc=zero,
                                   disc_acc=zero, disc_acc_clean=zero, disc_r1=zero,
                                   count_disc_updates=zero))

        update = lambda op: gan.update_discriminator(self.disc_opt, loss_fn, *op,
                                                     lr_scale=self._disc_lr_scale(state))
        operand = (state.disc_params, state.disc_opt_state)
        if self.cfg.disc_update_freq == 1:
            # No conditional when every step updates: XLA's CPU backend runs the convolutions
            # inside a conditional's branch about 40x slower (experiments/bench_disc_cond.py:
            # 2.4 s against 0.06 s for this discriminator's update on the built-in shapes).
            return update(operand)
        return jax.lax.cond(batch_index % self.cfg.disc_update_freq == 0, update, skip, operand)

    def _disc_lr_scale(self, state):
        """1, or (``--disc_lr_schedule follow``) the generator's rate over its base rate."""
        if self.cfg.disc_lr_schedule == "fixed":
            return jnp.ones((), jnp.float32)
        return learning_rate(state).astype(jnp.float32) / self.cfg.lr

    def _gan_gradient(self, d_params, d_buffers, z, rec_grad, key, noise):
        """The generator's GAN loss, its gradient on ``z`` and its weight (fixed, or scaled
        to the reconstruction's gradient in the stable variant). The discriminator sees ``z``
        with the same instance noise as in its own update."""
        variant = self.cfg.gan_variant
        noisy = lambda x: gan.add_noise(gan.d_input(variant, x), noise,
                                        jax.random.fold_in(key, 1))
        g_loss, g_grad = jax.value_and_grad(lambda x: gan.gen_objective(
            variant, self._disc_logits(d_params, d_buffers, noisy(x), key)))(z)
        weight = self.weights["gan_loss"]
        if variant != "original":
            weight = weight * gan.adaptive_scale(rec_grad, g_grad)
        return g_loss, g_grad, weight

    def _noise_level(self, state):
        """The instance noise's level this step (times the real inputs' RMS); None when off."""
        if not self.noise_control:
            return None
        return gan.noise_level(state.disc_noise, self.cfg.disc_noise_max)

    def _apply(self, state, grads, new_buffers, loss, d_params, d_opt_state, disc_noise):
        """Optimizer update. ``optax.apply_if_finite`` skips a non-finite gradient (keeping
        the parameters and optimizer state, counting the skips); a non-finite loss or norm
        is made a non-finite gradient so that it is skipped too. Buffers follow the skip."""
        grad_norm = optax.tree.norm(grads)
        bad = ~(jnp.isfinite(loss) & jnp.isfinite(grad_norm))
        # One non-finite leaf makes apply_if_finite skip the whole update: poisoning the
        # smallest leaf alone spares a select over every parameter (0.65 ms a step on an H200).
        leaves, treedef = jax.tree.flatten(grads)
        i = min(range(len(leaves)), key=lambda j: leaves[j].size)
        leaves[i] = jnp.where(bad, jnp.nan, leaves[i])
        grads = jax.tree.unflatten(treedef, leaves)
        updates, opt_state = self.opt.update(grads, state.opt_state, state.params)
        ok = opt_state.last_finite
        return TrainState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),  # zero updates when skipped
            buffers=jax.tree.map(lambda a, b: jnp.where(ok, a, b), new_buffers, state.buffers),
            opt_state=opt_state,
            disc_params=d_params, disc_buffers=state.disc_buffers, disc_opt_state=d_opt_state,
            disc_noise=disc_noise,
        ), ok, grad_norm

    # --- the steps ----------------------------------------------------------------------

    def _train_step(self, state: TrainState, batch: dict, codec_state, alpha, batch_index):
        key = jax.random.fold_in(self.base_key, state.step)
        codec = nnx.merge(self.codec_graphdef, codec_state)
        in_lat, tgt_lat, in_audio, tgt_audio, fed_tgt_audio, ref_lat = self._prepare(
            batch, codec, alpha, key)
        fwd = lambda p: self._forward(p, state.buffers, in_lat, tgt_lat, train=True,
                                      key=jax.random.fold_in(key, 4))
        (z, agent_losses), pullback, (stats, new_buffers) = jax.vjp(fwd, state.params,
                                                                    has_aux=True)

        def reconstruction(z, agent_losses):
            terms, inputs, in_audio_ = self._terms(codec, z, agent_losses, in_audio, tgt_audio,
                                                   ref_lat=ref_lat, codec_dtype=self.codec_dtype)
            return weighted_total(terms, self.weights), (terms, inputs.output, in_audio_)

        (loss, (terms, out_audio, in_audio)), (g_z, g_agent) = jax.value_and_grad(
            reconstruction, argnums=(0, 1), has_aux=True)(z, agent_losses)
        metrics: dict[str, jax.Array] = {}
        d_params, d_opt_state = state.disc_params, state.disc_opt_state
        disc_noise = state.disc_noise
        if self.gan:
            real = gan.real_examples(self.cfg.gan_variant, codec, in_lat, tgt_lat, in_audio,
                                     tgt_audio)
            level = self._noise_level(state)
            noise = None if level is None else gan.noise_std(
                level, gan.d_input(self.cfg.gan_variant, real))
            d_params, d_opt_state, d_metrics = self._disc_update(
                state, batch_index, real, jax.lax.stop_gradient(z), jax.random.fold_in(key, 5),
                noise)
            g_loss, g_grad, g_weight = self._gan_gradient(
                d_params, state.disc_buffers, z, g_z, jax.random.fold_in(key, 6), noise)
            loss, g_z = loss + g_weight * g_loss, g_z + g_weight * g_grad
            metrics.update(d_metrics)
            metrics.update(gan_loss=g_loss, gan_weight_effective=g_weight)
            if level is not None:
                # The level in force at each discriminator update (averaged over those).
                metrics.update(disc_noise=d_metrics["count_disc_updates"] * level)
                disc_noise = gan.control_noise(
                    state.disc_noise, d_metrics["disc_acc"], d_metrics["count_disc_updates"],
                    target=self.cfg.disc_target_acc, rate=self.cfg.disc_noise_rate)
        (grads,) = pullback((g_z, g_agent))
        new_state, ok, grad_norm = self._apply(state, grads, new_buffers, loss, d_params,
                                               d_opt_state, disc_noise)
        n = out_audio.shape[-1]
        metrics.update(terms)
        metrics.update(stats)
        metrics.update(loss=loss, grad_norm=grad_norm,
                       output_input_corr=_corrcoef(out_audio, in_audio[..., :n]),
                       output_target_corr=_corrcoef(out_audio, fed_tgt_audio[..., :n]))
        return new_state, self._finish_metrics(metrics, ok, nonfinite_run(new_state))

    @staticmethod
    def _finish_metrics(metrics, ok, nonfinite_run):
        # A skipped step's numbers are non-finite: zeroed and left out of the means.
        out = {k: jnp.asarray(v, jnp.float32) if k.startswith("count_")
               else jnp.where(ok, jnp.asarray(v, jnp.float32), 0.0) for k, v in metrics.items()}
        out["count_skipped_steps"] = (~ok).astype(jnp.float32)
        out["_nonfinite_run"] = nonfinite_run.astype(jnp.float32)
        return out

    def _eval_inputs(self, state, batch, codec):
        """Eval-mode model inputs: cached or encoded fields, the unity-test rewrite."""
        fields = dict(batch)
        if "input_raw" in batch:
            fields.update(codec_fields(codec, batch["input_raw"], batch["target_audio"]))
        if self.cfg.unity_test:  # the target becomes the decoded input
            fields["target_audio"] = fields["input_audio"]
            if self.cfg.cascade:
                fields["target_latent"] = codec.encode(fields["input_audio"])
        (z, agent_losses), _ = self._forward(
            state.params, state.buffers, fields["input_latent"],
            fields["target_latent"], train=False, key=self.base_key)
        return fields, z, agent_losses

    def _eval_step(self, state: TrainState, batch: dict, codec_state):
        """The original's validation loss of one batch: its audio terms plus the agent's
        regulariser, eval mode. The padding rows of the last batch (``valid`` 0) are left out
        of every audio term; ``count`` is 1 (the loop averages over batches, as the original)."""
        codec = nnx.merge(self.codec_graphdef, codec_state)
        fields, z, agent_losses = self._eval_inputs(state, batch, codec)
        terms, _, _ = self._terms(codec, z, agent_losses, fields["input_audio"],
                                  fields["target_audio"], names=self.val_names,
                                  valid=batch["valid"])
        m = {k: jnp.asarray(v, jnp.float32) for k, v in terms.items()}
        m["loss"] = weighted_total(terms, self.weights)
        m["count"] = jnp.ones((), jnp.float32)
        return m

    def _predict(self, state: TrainState, batch: dict, codec_state):
        """Eval-mode ``input``, ``target`` and ``output`` audio ``[B, 1, N]`` for samples."""
        codec = nnx.merge(self.codec_graphdef, codec_state)
        fields, z, _ = self._eval_inputs(state, batch, codec)
        out = codec.decode(z)
        n = min(out.shape[-1], fields["input_audio"].shape[-1], fields["target_audio"].shape[-1])
        return {"input": fields["input_audio"][..., :n],
                "target": fields["target_audio"][..., :n], "output": out[..., :n]}
