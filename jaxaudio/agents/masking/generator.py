"""The attention mask generator: learned soft (or Gumbel hard) masks for input and target.

::

    input  [B, D, T] --input_analyzer-->  f_in  [B, H, T]
    target [B, D, T] --target_analyzer--> f_tgt [B, H, T]
    cross_attention(query=f_in,  key=value=f_tgt) --input_mask_generator-->  input_mask  [B, D, T]
    cross_attention(query=f_tgt, key=value=f_in)  --target_mask_generator--> target_mask [B, D, T]

Both directions use the *same* attention module. The regularisers (:func:`mask_regularisers`)
combine as the original does: ``reg = 10 * complementarity + 0.5 * coverage +
5 * temporal_diversity``, and the balance term is returned separately.

Gates (how the input mask's logits are formed; the target mask is the input's complement
except with ``"learned"``, the original's):

- ``"learned"``: the original's masks. They settle on a fixed split of the channels, constant
  in time (temporal variance about 1e-7: sigmoids saturate and the diversity term's gradient
  vanishes), so the agent ignores the music.
- ``"energy"``: the logits gain ``energy_gain * (log E_in - log E_target)``, the local
  (3-frame) energy contrast of the two parts in every channel and frame: each cell goes
  mostly to the part that is loud there (an ideal-binary-mask split of the mixture). With the
  50/50 balance the learned logits then pull the input out of the bands where it is weaker,
  and the blend becomes a crossover (drums above about 3.5 kHz, the target below).
- ``"onset"`` (jaxaudio's default in training): the energy contrast of each frame on its own
  (``energy_gain * (log x_in**2 - log x_target**2)`` per cell, no moving average: a
  3-frame average lets the input take the cells a frame before its hit and leave them a frame
  late), plus ``onset_gain`` times the input's level above its median over the clip, per cell
  (``log x_in**2``) and broadband (``L = log mean_D x_in**2``), :func:`input_onset`. At a
  drum hit the input's threshold drops in the cells it occupies, so it passes there even where
  the target is somewhat louder; between hits the threshold rises and the target takes the
  cells. The per-cell part keeps a hi-hat's hit from taking the chords' low cells. The balance
  loss aims at the share these features give the input (the prior mask's mean,
  :func:`prior_share`) instead of 0.5, so the learned logits need not fight the music's own
  split.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import Conv1d, MultiheadAttention, ReLU, Sigmoid, run_layers

# The original's weights in reg_loss and the variance floor of its temporal-diversity term.
COMPLEMENTARITY_WEIGHT = 10.0
COVERAGE_WEIGHT = 0.5
TEMPORAL_DIVERSITY_WEIGHT = 5.0
TEMPORAL_VARIANCE_FLOOR = 0.05
GATES = ("learned", "energy", "onset")
ENERGY_EPS = 1e-6
GAIN_INIT = 2.0
# The onset gate's initial gains, chosen with the prior mask alone (``experiments/mask_prior.py``)
# on 50 synthetic and 50 recorded-instrument evaluation pairs: each band's onset correlation
# with the input at 91-100 % of the song's, mask onset correlation 0.71-0.73, complementarity
# 0.97.
ONSET_ENERGY_GAIN_INIT = 3.5
ONSET_GAIN_INIT = 1.0
# The onset gate bounds the learned logits to +-LEARNED_BOUND (a soft clip, tanh).
LEARNED_BOUND = 2.0


class MaskGeneratorOutput(NamedTuple):
    """``input_mask``, ``target_mask`` ``[B, D, T]``; scalar ``reg_loss``, ``balance_loss``;
    ``stats``: the dict of :func:`mask_regularisers`."""

    input_mask: jax.Array
    target_mask: jax.Array
    reg_loss: jax.Array
    balance_loss: jax.Array
    stats: dict[str, jax.Array]


def mask_regularisers(input_mask: jax.Array, target_mask: jax.Array, share: jax.Array | float = 0.5
                      ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
    """The original's mask terms from ``[B, D, T]`` masks -> ``(reg_loss, balance_loss, stats)``.

    - complementarity: ``mean(input_mask * target_mask)`` (the overlap);
    - coverage: ``mean((input_mask + target_mask - 1)^2)``;
    - balance: ``(mean(input_mask) - share)^2 + (mean(target_mask) - (1 - share))^2``, with
      the original's ``share = 0.5`` by default;
    - temporal diversity: ``relu(0.05 - v_in) + relu(0.05 - v_tgt)`` with ``v`` the
      Bessel-corrected variance over T, averaged over B and D (so T must be at least 2).

    ``stats`` holds every part and the mask means as scalars with no gradient (the original
    kept them as detached floats): ``input_mask_mean``, ``target_mask_mean``, ``mask_overlap``
    (= ``complementarity_raw``, the regulariser's term), ``complementarity`` (``1 - overlap``,
    what the original logged under that name), ``coverage``, ``temporal_diversity``,
    ``input_mask_temporal_var``, ``target_mask_temporal_var``, ``balance``, ``balance_goal``
    (``share``).
    """
    complementarity = jnp.mean(input_mask * target_mask)
    coverage = jnp.mean((input_mask + target_mask - 1.0) ** 2)
    # mean(m - 0.5) rather than mean(m) - 0.5: summing small centred values keeps the
    # float32 accumulation error far below the (often tiny) imbalance being squared.
    share = jax.lax.stop_gradient(jnp.asarray(share, jnp.float32))
    input_offset = jnp.mean(input_mask - share)
    target_offset = jnp.mean(target_mask - (1.0 - share))
    balance = input_offset ** 2 + target_offset ** 2
    input_var = jnp.mean(jnp.var(input_mask, axis=2, ddof=1))
    target_var = jnp.mean(jnp.var(target_mask, axis=2, ddof=1))
    temporal_diversity = (jax.nn.relu(TEMPORAL_VARIANCE_FLOOR - input_var)
                          + jax.nn.relu(TEMPORAL_VARIANCE_FLOOR - target_var))
    reg_loss = (COMPLEMENTARITY_WEIGHT * complementarity + COVERAGE_WEIGHT * coverage
                + TEMPORAL_DIVERSITY_WEIGHT * temporal_diversity)
    stats = {
        "input_mask_mean": input_offset + share,
        "target_mask_mean": target_offset + (1.0 - share),
        "mask_overlap": complementarity,
        "complementarity": 1.0 - complementarity,
        "complementarity_raw": complementarity,
        "coverage": coverage,
        "temporal_diversity": temporal_diversity,
        "input_mask_temporal_var": input_var,
        "target_mask_temporal_var": target_var,
        "balance": balance,
        "balance_goal": share,
    }
    return reg_loss, balance, jax.lax.stop_gradient(stats)


def local_log_energy(x: jax.Array, frames: int = 3) -> jax.Array:
    """``log`` of the ``frames``-frame (3 or 1) centred moving average of ``x**2``,
    ``[B, D, T]`` (edges repeated)."""
    e = jnp.square(x.astype(jnp.float32))
    if frames == 3:
        padded = jnp.pad(e, ((0, 0), (0, 0), (1, 1)), mode="edge")
        e = (padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]) / 3.0
    elif frames != 1:
        raise ValueError(f"local_log_energy: frames must be 1 or 3, got {frames}")
    return jnp.log(e + ENERGY_EPS)


def energy_contrast(encoded_input: jax.Array, encoded_target: jax.Array, frames: int = 3
                    ) -> jax.Array:
    """``log E_in - log E_target`` per channel and frame ``[B, D, T]`` (``E``: the energy
    averaged over ``frames`` frames, :func:`local_log_energy`), clipped to +-10, without
    gradient (it steers the masks; it is not something to learn through)."""
    c = local_log_energy(encoded_input, frames) - local_log_energy(encoded_target, frames)
    return jax.lax.stop_gradient(jnp.clip(c, -10.0, 10.0)).astype(encoded_input.dtype)


def broadband_level(x: jax.Array) -> jax.Array:
    """``L = log mean_D x**2`` per frame, ``[B, 1, T]`` in float32."""
    return jnp.log(jnp.mean(jnp.square(x.astype(jnp.float32)), axis=1, keepdims=True)
                   + ENERGY_EPS)


def _above_median(level: jax.Array) -> jax.Array:
    return jnp.clip(level - jnp.median(level, axis=-1, keepdims=True), -10.0, 10.0)


def input_onset(encoded_input: jax.Array) -> jax.Array:
    """The input's level above its median over the clip, per cell plus broadband, ``[B, D, T]``:
    ``(l - median_t l) + (L - median_t L)`` with ``l = log x**2`` per cell and ``L``
    (:func:`broadband_level`) per frame, each clipped to +-10, without gradient. Positive at
    the input's hits (most in the cells the hit occupies), negative between them."""
    cell = _above_median(local_log_energy(encoded_input, 1))
    onset = cell + _above_median(broadband_level(encoded_input))
    return jax.lax.stop_gradient(onset).astype(encoded_input.dtype)


def prior_share(prior_logits: jax.Array) -> jax.Array:
    """The input's share of the cells under the features alone: ``mean(sigmoid(prior))``,
    a scalar without gradient (the onset gate's balance goal)."""
    return jax.lax.stop_gradient(jnp.mean(jax.nn.sigmoid(prior_logits.astype(jnp.float32))))


def mask_music_statistics(input_mask: jax.Array, encoded_input: jax.Array
                          ) -> dict[str, jax.Array]:
    """How the input mask follows the music: ``input_mask_temporal_std`` (standard deviation
    over time, averaged over batch and channels) and ``mask_onset_corr``, the correlation over
    time of the mask's rises ``relu(d/dt mean_D mask)`` (the input taking over) with the
    input's onset envelope ``relu(d/dt log mean_D x**2)`` (both ``[B, T-1]``, flattened)."""
    m = input_mask.astype(jnp.float32)
    std = jnp.mean(jnp.std(m, axis=2))
    change = jax.nn.relu(jnp.diff(jnp.mean(m, axis=1), axis=-1))
    onset = jax.nn.relu(jnp.diff(broadband_level(encoded_input)[:, 0], axis=-1))
    a = change - jnp.mean(change)
    b = onset - jnp.mean(onset)
    den = jnp.sqrt(jnp.sum(a * a) * jnp.sum(b * b))
    corr = jnp.where(den > 0, jnp.sum(a * b) / jnp.where(den > 0, den, 1.0), 0.0)
    return jax.lax.stop_gradient({"input_mask_temporal_std": std, "mask_onset_corr": corr})


def gumbel_hard_mask(logits: jax.Array, key: jax.Array, tau: float = 1.0) -> jax.Array:
    """Binary mask from pre-sigmoid ``logits [B, D, T]`` by two-way Gumbel-softmax.

    The original draws ``gumbel_softmax(log([m, 1 - m]), tau, hard=True)`` over a new class
    axis with ``m = sigmoid(logits)`` and keeps class 0. ``log m`` and ``log(1 - m)`` are
    computed here as ``log_sigmoid(+-logits)``: the same values, but finite where ``m``
    rounds to 0 or 1 in float32 (the original's ``log`` gives -inf and a NaN gradient there).
    Straight-through as the original: the forward is the one-hot choice, the gradient is that
    of the soft sample. The forward is written ``hard + (soft - stop_gradient(soft))`` so it
    is exactly 0 or 1 (the original's ``hard - soft.detach() + soft`` can miss by an ulp).
    Ties pick class 0, as ``argmax`` does.
    """
    two_way = jnp.stack([jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits)], axis=1)
    gumbels = jax.random.gumbel(key, two_way.shape, two_way.dtype)
    soft = jax.nn.softmax((two_way + gumbels) / tau, axis=1)
    hard = (jnp.argmax(soft, axis=1) == 0).astype(soft.dtype)
    soft0 = soft[:, 0]
    return hard + (soft0 - jax.lax.stop_gradient(soft0))


def _mask_head(hidden_dim: int, encoding_dim: int, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([
        Conv1d(hidden_dim, hidden_dim // 2, kernel_size=3, padding=1, rngs=rngs),
        ReLU(),
        Conv1d(hidden_dim // 2, encoding_dim, kernel_size=1, rngs=rngs),
        Sigmoid(),
    ])


def _analyzer(encoding_dim: int, hidden_dim: int, rngs: nnx.Rngs) -> nnx.List:
    return nnx.List([
        Conv1d(encoding_dim, hidden_dim, kernel_size=3, padding=1, rngs=rngs),
        ReLU(),
        Conv1d(hidden_dim, hidden_dim, kernel_size=3, padding=1, rngs=rngs),
        ReLU(),
    ])


class AttentionMaskGenerator(nnx.Module):
    """Soft masks ``[B, D, T]`` for input and target from their cross-attention.

    Args:
        encoding_dim: D.
        hidden_dim: H, width of the analyzers and the attention (the original's 256).
        num_heads: heads of ``cross_attention`` (the original's 4).
        attention_dropout: rate on the attention probabilities in training (the original
            hard-codes 0.1); also settable later as ``cross_attention.dropout``.

    Variables (NNX path joined with dots = torch name; torch layouts, see :mod:`jaxaudio.nn`):
    ``input_analyzer.{0,2}.{weight,bias}``, ``target_analyzer.{0,2}.{weight,bias}``,
    ``cross_attention.{in_proj_weight,in_proj_bias}``, ``cross_attention.out_proj.{weight,bias}``,
    ``input_mask_generator.{0,2}.{weight,bias}``, ``target_mask_generator.{0,2}.{weight,bias}``.
    """

    def __init__(self, encoding_dim: int, hidden_dim: int = 256, num_heads: int = 4, *,
                 attention_dropout: float = 0.1, gate: str = "learned", rngs: nnx.Rngs):
        if gate not in GATES:
            raise ValueError(f"AttentionMaskGenerator: gate must be one of {GATES}, got {gate!r}")
        self.gate = gate
        # Not torch names: only the energy and onset gates have them (original checkpoints load
        # as "learned").
        energy_init = {"energy": GAIN_INIT, "onset": ONSET_ENERGY_GAIN_INIT}.get(gate)
        self.energy_gain = None if energy_init is None else nnx.Param(
            jnp.asarray(energy_init, jnp.float32))
        self.onset_gain = nnx.Param(jnp.asarray(ONSET_GAIN_INIT, jnp.float32)) \
            if gate == "onset" else None
        self.encoding_dim = encoding_dim
        self.hidden_dim = hidden_dim
        self.input_analyzer = _analyzer(encoding_dim, hidden_dim, rngs)
        self.target_analyzer = _analyzer(encoding_dim, hidden_dim, rngs)
        self.cross_attention = MultiheadAttention(hidden_dim, num_heads, attention_dropout,
                                                  batch_first=True, rngs=rngs)
        self.input_mask_generator = _mask_head(hidden_dim, encoding_dim, rngs)
        self.target_mask_generator = _mask_head(hidden_dim, encoding_dim, rngs)

    def _check(self, encoded_input: jax.Array, encoded_target: jax.Array) -> None:
        if encoded_input.ndim != 3 or encoded_input.shape != encoded_target.shape:
            raise ValueError(
                f"AttentionMaskGenerator: encoded_input {encoded_input.shape} and encoded_target "
                f"{encoded_target.shape} must both be [B, D, T] of the same shape")
        if encoded_input.shape[1] != self.encoding_dim:
            raise ValueError(f"AttentionMaskGenerator: expected D = encoding_dim = "
                             f"{self.encoding_dim}, got input shape {encoded_input.shape}")
        if encoded_input.shape[2] < 2:
            raise ValueError("AttentionMaskGenerator: the temporal-diversity term needs T >= 2 "
                             f"frames, got input shape {encoded_input.shape}")

    def _attend(self, query_feat: jax.Array, other_feat: jax.Array, train: bool,
                rngs: nnx.Rngs | None) -> jax.Array:
        """``[B, H, T]`` query and key/value features -> attended ``[B, H, T]``."""
        q = query_feat.transpose(0, 2, 1)
        kv = other_feat.transpose(0, 2, 1)
        attended, _ = self.cross_attention(q, kv, kv, train=train, rngs=rngs)
        return attended.transpose(0, 2, 1)

    def __call__(self, encoded_input: jax.Array, encoded_target: jax.Array, hard: bool = False,
                 *, train: bool = False, rngs: nnx.Rngs | None = None) -> MaskGeneratorOutput:
        """Masks and regularisers for ``encoded_input``, ``encoded_target`` ``[B, D, T]``.

        ``hard=True`` replaces the masks by a Gumbel-softmax sample of the input mask (noise
        from ``rngs`` stream ``noise``) and its complement, as the original does; the target
        branch is then unused and not computed. ``train=True`` applies the attention dropout
        (stream ``dropout``).
        """
        self._check(encoded_input, encoded_target)
        if hard and rngs is None:
            raise ValueError("AttentionMaskGenerator: hard=True draws Gumbel noise and needs the "
                             "`rngs` argument (stream 'noise')")
        input_features = run_layers(self.input_analyzer, encoded_input)
        target_features = run_layers(self.target_analyzer, encoded_target)

        input_attended = self._attend(input_features, target_features, train, rngs)
        # Stop before the head's Sigmoid (index 3): the hard path needs the logits.
        input_logits = run_layers(self.input_mask_generator, input_attended, stop=3)
        share = 0.5
        if self.gate in ("energy", "onset"):
            frames = 1 if self.gate == "onset" else 3
            prior = self.energy_gain[...] * energy_contrast(encoded_input, encoded_target, frames)
            if self.gate == "onset":
                prior = prior + self.onset_gain[...] * input_onset(encoded_input)
                share = prior_share(prior)
                # The learned part nudges the features' split, it cannot overturn it.
                input_logits = LEARNED_BOUND * jnp.tanh(input_logits / LEARNED_BOUND)
            input_logits = input_logits + prior
            input_mask = self.input_mask_generator[3](input_logits)
            if hard:
                input_mask = gumbel_hard_mask(input_logits, rngs.noise())
            target_mask = 1.0 - input_mask
        elif hard:
            input_mask = gumbel_hard_mask(input_logits, rngs.noise())
            target_mask = 1.0 - input_mask
        else:
            target_attended = self._attend(target_features, input_features, train, rngs)
            input_mask = self.input_mask_generator[3](input_logits)
            target_mask = run_layers(self.target_mask_generator, target_attended)

        reg_loss, balance_loss, stats = mask_regularisers(input_mask, target_mask, share)
        stats = {**stats, **mask_music_statistics(input_mask, encoded_input)}
        return MaskGeneratorOutput(input_mask, target_mask, reg_loss, balance_loss, stats)
