"""The train and eval steps: pure functions of (state, batch), jitted once, data parallel.

One train step, as the original's `train_epoch` body, without its host syncs:

1. inputs: cached input latents, their decoded audio (what the losses compare against), the
   target latents and the raw target audio. Unity test, the pure-GAN noise curriculum (which
   re-encodes the noisy target) and the fixed complementary masks are applied here.
2. generator forward once, as a VJP: latents out, plus the agent's regulariser and balance loss.
3. discriminator update every ``disc_update_freq`` steps on rolled targets (real) and the
   detached output (fake); BCE, clip 1.0, AdamW 0.5/0.999.
4. generator loss with the *updated* discriminator (as the original orders it): combined audio
   loss through the frozen codec's decoder + agent losses + 0.01 x spectral outlier penalty +
   GAN weight x generator loss; gradients pulled back through the one VJP; AdamW with a
   global-norm clip.
5. a non-finite loss or gradient norm keeps the old state and counts the skip.

Randomness: ``fold_in(key(seed), step)``. Metrics: one flat dict of scalar arrays.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxaudio.data.cache import codec_fields
from jaxaudio.models.complementary_masking import apply_complementary_mask
from jaxaudio.nn.functional import unbiased_std
from jaxaudio.models.discriminator import discriminator_loss, generator_loss, roll_targets
from jaxaudio.training.config import TrainConfig
from jaxaudio.training.losses import combined_loss, spectral_outlier_penalty
from jaxaudio.training.state import TrainState
from jaxaudio.training.utils import tree_global_norm

SPECTRAL_PENALTY_WEIGHT = 0.01  # the original's fixed weight
BATCH_KEYS = ("input_latent", "input_audio", "target_latent", "target_audio")


def _trim(x: jax.Array, n: int) -> jax.Array:
    return x[..., :n]


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
        self.replicated = NamedSharding(mesh, P())
        self.batch_sharding = NamedSharding(mesh, P("data"))
        self.train_step = jax.jit(self._train_step, donate_argnums=(0,))
        self.eval_step = jax.jit(self._eval_step)
        self.predict = jax.jit(self._predict)

    # --- pieces -------------------------------------------------------------------------

    @property
    def gan(self) -> bool:
        return self.cfg.gan_weight > 0 and self.disc_graphdef is not None

    def _model_forward(self, params, buffers, in_lat, tgt_lat, *, train: bool, key):
        # Rebuilt here so the model's variables belong to this trace (it may run under a VJP)
        # and the forward may update its buffers (spectral-norm u/v, BatchNorm statistics).
        buffers = jax.tree.map(lambda x: x, buffers)
        model = nnx.merge(self.graphdef, _cast_floats(params, self.compute_dtype), buffers)
        rngs = nnx.Rngs(dropout=jax.random.fold_in(key, 0), noise=jax.random.fold_in(key, 1))
        x = in_lat.astype(self.compute_dtype)
        y = tgt_lat.astype(self.compute_dtype) if self.cfg.cascade else None
        out = model(x, y, train=train, rngs=rngs)
        _, _, new_buffers = nnx.split(model, nnx.Param, ...)
        new_buffers = jax.tree.map(lambda new, old: new.astype(old.dtype), new_buffers, buffers)
        as32 = lambda v: None if v is None else jnp.asarray(v, jnp.float32)
        primal = (out.output.astype(jnp.float32), as32(out.mask_reg_loss), as32(out.balance_loss))
        # "balance" is the balance loss, which the step reports as balance_loss.
        stats = {k: jnp.asarray(v, jnp.float32) for k, v in dict(out.stats).items()
                 if k != "balance"}
        return primal, (stats, new_buffers)

    def _disc_logits(self, d_params, d_buffers, x, key):
        disc = nnx.merge(self.disc_graphdef, d_params, d_buffers)
        return disc(x, train=True, rngs=nnx.Rngs(dropout=key))

    @staticmethod
    def _fields(batch, codec) -> dict:
        """Cached fields as they are; raw clips (no cache) encoded here."""
        if "input_raw" in batch:
            return codec_fields(codec, batch["input_raw"], batch["target_audio"])
        return batch

    def _prepare(self, batch, codec, alpha, key):
        """Model inputs and loss references for one batch (unity, curriculum, masks)."""
        cfg = self.cfg
        batch = self._fields(batch, codec)
        in_lat = batch["input_latent"]
        in_audio = batch["input_audio"]
        tgt_audio = batch["target_audio"]
        tgt_lat = batch["target_latent"]
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
                # The noisy target is re-encoded only when there is noise; at alpha 0 (before
                # the curriculum starts) the batch's latents are those of the same audio.
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
        tgt_lat = jax.lax.stop_gradient(tgt_lat)
        return in_lat, tgt_lat, in_audio, clean_tgt_audio, tgt_audio

    def _audio_losses(self, codec, enc_out, in_audio, tgt_audio):
        cfg = self.cfg
        out_audio = codec.decode(enc_out)
        n = min(out_audio.shape[-1], in_audio.shape[-1], tgt_audio.shape[-1])
        out_audio = _trim(out_audio, n)
        parts = combined_loss(
            out_audio, _trim(in_audio, n), _trim(tgt_audio, n),
            cfg.loss_weight_input, cfg.loss_weight_target,
            cfg.loss_weight_spectral, cfg.loss_weight_mel,
            weight_correlation=cfg.corr_weight,
        )
        return out_audio, parts

    # --- the steps ----------------------------------------------------------------------

    def _train_step(self, state: TrainState, batch: dict, codec_state, alpha, batch_index):
        cfg = self.cfg
        key = jax.random.fold_in(self.base_key, state.step)
        codec = nnx.merge(self.codec_graphdef, codec_state)
        in_lat, tgt_lat, in_audio, clean_tgt_audio, fed_tgt_audio = self._prepare(
            batch, codec, alpha, key)

        fwd = lambda p: self._model_forward(p, state.buffers, in_lat, tgt_lat, train=True,
                                            key=jax.random.fold_in(key, 4))
        (enc_out, reg, bal), pullback, (stats, new_buffers) = jax.vjp(fwd, state.params,
                                                                      has_aux=True)
        metrics: dict[str, jax.Array] = {}

        d_params, d_opt_state = state.disc_params, state.disc_opt_state
        if self.gan:
            real = roll_targets(tgt_lat)
            fake = jax.lax.stop_gradient(enc_out)
            k_d = jax.random.fold_in(key, 5)

            def d_loss_fn(dp):
                # Two independent training forwards (own dropout masks), as the original.
                real_logits = self._disc_logits(dp, state.disc_buffers, real,
                                                jax.random.fold_in(k_d, 0))
                fake_logits = self._disc_logits(dp, state.disc_buffers, fake,
                                                jax.random.fold_in(k_d, 1))
                loss, racc, facc = discriminator_loss(real_logits, fake_logits)
                return loss, (racc, facc)

            def update_disc(operand):
                dp, dos = operand
                (d_loss, (racc, facc)), d_grads = jax.value_and_grad(d_loss_fn, has_aux=True)(dp)
                ok = jnp.isfinite(d_loss) & jnp.isfinite(tree_global_norm(d_grads))
                upd, new_dos = self.disc_opt.update(d_grads, dos, dp)
                new_dp = optax.apply_updates(dp, upd)
                keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
                return (keep(new_dp, dp), keep(new_dos, dos),
                        jnp.stack([d_loss, racc, facc, 1.0]).astype(jnp.float32))

            def skip_disc(operand):
                dp, dos = operand
                return dp, dos, jnp.zeros((4,), jnp.float32)

            # Every disc_update_freq-th batch of the epoch, as the original counts.
            d_params, d_opt_state, d_m = jax.lax.cond(
                batch_index % cfg.disc_update_freq == 0, update_disc, skip_disc,
                (d_params, d_opt_state))
            metrics.update(disc_loss=d_m[0], disc_real_acc=d_m[1], disc_fake_acc=d_m[2],
                           count_disc_updates=d_m[3])

        def loss_fn(z, reg_v, bal_v):
            out_audio, parts = self._audio_losses(codec, z, in_audio, clean_tgt_audio)
            total = parts.total
            if reg_v is not None:
                total = total + cfg.mask_reg_weight * reg_v
            if bal_v is not None:
                total = total + cfg.balance_loss_weight * bal_v
            penalty = spectral_outlier_penalty(out_audio)
            total = total + SPECTRAL_PENALTY_WEIGHT * penalty
            aux = dict(rms_input=parts.rms_input, rms_target=parts.rms_target,
                       spectral=parts.spectral, mel=parts.mel, corr_penalty=parts.corr_penalty,
                       spectral_penalty=penalty)
            if self.gan:
                g_logits = self._disc_logits(d_params, state.disc_buffers, z,
                                             jax.random.fold_in(key, 6))
                g_loss = generator_loss(g_logits)
                total = total + cfg.gan_weight * g_loss
                aux["gan_loss"] = g_loss
            n = out_audio.shape[-1]
            sg = jax.lax.stop_gradient
            aux["output_input_corr"] = _corrcoef(sg(out_audio), _trim(in_audio, n))
            aux["output_target_corr"] = _corrcoef(sg(out_audio), _trim(fed_tgt_audio, n))
            return total, aux

        (loss, aux), cotangents = jax.value_and_grad(loss_fn, argnums=(0, 1, 2), has_aux=True)(
            enc_out, reg, bal)
        (grads,) = pullback(cotangents)
        grad_norm = tree_global_norm(grads)
        ok = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, new_opt_state = self.opt.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)

        metrics.update(loss=loss, grad_norm=grad_norm, **aux)
        if reg is not None:
            metrics["mask_reg_loss"] = reg
            if cfg.agent == "compositional":
                metrics["novelty_loss"] = reg  # the original's name for this agent's loss
        if bal is not None:
            metrics["balance_loss"] = bal
        metrics.update(stats)
        # A skipped step's numbers are non-finite: they are zeroed and left out of the means.
        metrics = {k: jnp.asarray(v, jnp.float32) if k.startswith("count_")
                   else jnp.where(ok, jnp.asarray(v, jnp.float32), 0.0)
                   for k, v in metrics.items()}
        metrics["count_skipped_steps"] = (~ok).astype(jnp.float32)
        nonfinite_run = jnp.where(ok, 0, state.nonfinite_run + 1).astype(jnp.int32)
        metrics["_nonfinite_run"] = nonfinite_run.astype(jnp.float32)
        new_state = TrainState(
            step=state.step + 1,
            params=keep(new_params, state.params),
            buffers=keep(new_buffers, state.buffers),
            opt_state=keep(new_opt_state, state.opt_state),
            disc_params=d_params,
            disc_buffers=state.disc_buffers,
            disc_opt_state=d_opt_state,
            nonfinite_run=nonfinite_run,
        )
        return new_state, metrics

    def _eval_step(self, state: TrainState, batch: dict, codec_state):
        """The original's validation loss of one batch: combined loss + mask_reg_weight x
        agent loss, eval mode. The padding rows of the last batch (``valid`` 0) are left out of
        every audio loss, so it is the loss of the real clips alone; ``count`` is 1 (the loop
        averages over batches, as the original does)."""
        cfg = self.cfg
        codec = nnx.merge(self.codec_graphdef, codec_state)
        fields = self._fields(batch, codec)
        in_lat, in_audio = fields["input_latent"], fields["input_audio"]
        tgt_audio, tgt_lat = fields["target_audio"], fields["target_latent"]
        if cfg.unity_test:
            tgt_audio = in_audio
            if cfg.cascade:
                tgt_lat = codec.encode(in_audio)
        (enc_out, reg, _bal), _ = self._model_forward(
            state.params, state.buffers, in_lat, tgt_lat, train=False, key=self.base_key)
        out_audio = codec.decode(enc_out)
        n = min(out_audio.shape[-1], in_audio.shape[-1], tgt_audio.shape[-1])
        p = combined_loss(_trim(out_audio, n), _trim(in_audio, n), _trim(tgt_audio, n),
                          cfg.loss_weight_input, cfg.loss_weight_target,
                          cfg.loss_weight_spectral, cfg.loss_weight_mel,
                          weight_correlation=cfg.corr_weight, valid=batch["valid"])
        m = dict(loss=p.total, rms_input=p.rms_input, rms_target=p.rms_target,
                 spectral=p.spectral, mel=p.mel, corr_penalty=p.corr_penalty)
        if reg is not None:
            m["loss"] = m["loss"] + cfg.mask_reg_weight * reg
            m["mask_reg_loss"] = reg
        m = {k: jnp.asarray(v, jnp.float32) for k, v in m.items()}
        m["count"] = jnp.ones((), jnp.float32)
        return m

    def _predict(self, state: TrainState, batch: dict, codec_state):
        """Eval-mode ``input``, ``target`` and ``output`` audio ``[B, 1, N]`` for samples."""
        codec = nnx.merge(self.codec_graphdef, codec_state)
        fields = dict(self._fields(batch, codec))
        if self.cfg.unity_test:  # what validation measured: the decoded input as the target
            fields["target_audio"] = fields["input_audio"]
            if self.cfg.cascade:
                fields["target_latent"] = codec.encode(fields["input_audio"])
        (enc_out, _, _), _ = self._model_forward(
            state.params, state.buffers, fields["input_latent"], fields["target_latent"],
            train=False, key=self.base_key)
        out = codec.decode(enc_out)
        n = min(out.shape[-1], fields["input_audio"].shape[-1], fields["target_audio"].shape[-1])
        return {"input": _trim(fields["input_audio"], n), "target": _trim(fields["target_audio"], n),
                "output": _trim(out, n)}
