"""The original's ``SimpleTransformer``: a single stage, or the 2-stage cascade with an agent.

Single stage (``num_transformer_layers=1``), on ``x = input [B, D, T]`` seen as ``[B, T, D]``::

    out = output_proj(post_norm(transformer(input_norm(x)))) + x        (no position encoding)

Cascade (``num_transformer_layers > 1``; always exactly 2 stages, as the original)::

    agent (optional)     input', target' = masked + RMS-restored (masking agent)
                         input'          = composed pattern        (compositional agent)
    stage 0 on concat(input'~, target')              [B, 2D, T], residual (input' + target') / 2
    stage 1 on concat(input'~, out0, target'~)       [B, 3D, T], residual (input' + out0 + target') / 3
    each stage:  u = output_proj(post_norm(transformer(input_norm(pos_encoding(x)))))
                 y = residual + u  (cascade_update="additive", the original's)
                 y = residual * (1 + tanh(u))  (cascade_update="gain": no frame-rate buzz)
                 y = y * clip(sqrt((rms(input')^2 + rms(target')^2) / 2) / (rms(y) + 1e-8), 0.7, 1.5)

``~`` marks the anti-cheating noise (training only, ``anti_cheating * std(x) * N(0, 1)`` from the
``noise`` stream). ``rms(x) = sqrt(mean_{D,T}(x^2) + 1e-8)`` per sample. ``output_proj`` is a
spectral-normalised linear layer (:mod:`jaxaudio.models.spectral_norm`).

The forward returns :class:`TransformerOutput`; element ``i`` is the original's ``i``-th return
value (the single stage's missing losses are ``None``). Agent statistics come back in ``stats``
from the agent's own forward: nothing is computed twice and nothing is stored on ``self``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.agents.registry import agent_kind, get_agent
from jaxaudio.models.spectral_norm import SpectralNormLinear
from jaxaudio.nn import (
    RMS_EPS,
    LayerNorm,
    PositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    sample_rms,
    uses_dropout,
)
from jaxaudio.nn import unbiased_std as _unbiased_std  # torch's x.std(), NaN-free on silence

SCALE_MIN, SCALE_MAX = 0.7, 1.5
CASCADE_UPDATES = ("additive", "gain")
NUM_CASCADE_STAGES = 2


class TransformerOutput(NamedTuple):
    """``output [B, D, T]``, the agent's regulariser and balance losses (or None: the
    original's return values 1 and 2), statistics, and the agent's losses by name (what the
    train step weights; see :mod:`jaxaudio.agents.registry`)."""

    output: jax.Array
    mask_reg_loss: jax.Array | None
    balance_loss: jax.Array | None
    stats: dict[str, jax.Array]
    losses: dict[str, jax.Array] | None = None


def rms_rescale(y: jax.Array, goal_rms: jax.Array) -> jax.Array:
    """``y * clip(goal_rms / (rms(y) + 1e-8), 0.7, 1.5)``: the cascade's per-sample level match.

    The clamp keeps a stage from amplifying (or attenuating) by more than the original allows.
    """
    return y * jnp.clip(goal_rms / (sample_rms(y) + RMS_EPS), SCALE_MIN, SCALE_MAX)


def _btd(x: jax.Array) -> jax.Array:
    return jnp.swapaxes(x, 1, 2)


def _encoder(d_model: int, nhead: int, num_layers: int, dropout: float, rngs: nnx.Rngs) -> TransformerEncoder:
    """The original's ``nn.TransformerEncoder`` (feed-forward ``4 d_model``, GELU, batch first).

    Unlike torch, which deep-copies one layer so every layer starts with identical weights,
    each layer here is drawn independently.
    """
    return TransformerEncoder(
        [
            TransformerEncoderLayer(d_model, nhead, 4 * d_model, dropout, "gelu", batch_first=True, rngs=rngs)
            for _ in range(num_layers)
        ]
    )


class CascadeStage(nnx.Module):
    """One stage: ``[B, T, d_model] -> [B, T, encoding_dim]`` (before residual and RMS scale)."""

    def __init__(self, d_model: int, encoding_dim: int, nhead: int, num_layers: int, dropout: float, *, rngs: nnx.Rngs):
        self.pos_encoding = PositionalEncoding(d_model, dropout)
        self.input_norm = LayerNorm(d_model)
        self.transformer = _encoder(d_model, nhead, num_layers, dropout, rngs)
        self.post_norm = LayerNorm(d_model)
        self.output_proj = SpectralNormLinear(d_model, encoding_dim, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool = False, rngs: nnx.Rngs | None = None) -> jax.Array:
        x = self.pos_encoding(x, train=train, rngs=rngs)
        x = self.input_norm(x)
        x = self.transformer(x, train=train, rngs=rngs)
        return self.output_proj(self.post_norm(x), train=train)


class SimpleTransformer(nnx.Module):
    """Transformer over codec latents ``[B, D, T]``; see the module docstring for the data flow.

    Constructor arguments are the original's. ``component_dim``, ``composer_heads``,
    ``composer_layers`` and ``novelty_weight`` configure the compositional agent (the original
    hard-codes 64, 8, 4 and 0.1); ``mask_gate`` the masking agent (``"learned"``, the
    original's, ``"energy"`` or ``"onset"``); ``cascade_update`` how a stage's transformer
    changes its residual (``"additive"``, the original's, or ``"gain"``; see
    :meth:`_update`). As in the original, the agents exist only in the cascade and the
    compositional agent wins when both flags are set. ``agent`` names any agent of
    :mod:`jaxaudio.agents.registry` instead of the two flags.
    """

    def __init__(
        self,
        encoding_dim: int = 128,
        nhead: int = 8,
        num_layers: int = 4,
        dropout: float = 0.1,
        num_transformer_layers: int = 1,
        anti_cheating: float = 0.0,
        use_creative_agent: bool = False,
        use_compositional_agent: bool = False,
        *,
        agent: str | None = None,
        component_dim: int = 64,
        composer_heads: int = 8,
        composer_layers: int = 4,
        novelty_weight: float = 0.1,
        mask_gate: str = "learned",
        cascade_update: str = "additive",
        rngs: nnx.Rngs,
    ):
        if num_transformer_layers < 1:
            raise ValueError(f"num_transformer_layers must be >= 1, got {num_transformer_layers}")
        if cascade_update not in CASCADE_UPDATES:
            raise ValueError(f"cascade_update must be one of {CASCADE_UPDATES}, got "
                             f"{cascade_update!r}")
        self.cascade_update = cascade_update
        self.encoding_dim = encoding_dim
        self.nhead = nhead
        self.num_layers = num_layers
        self.dropout = dropout
        self.num_transformer_layers = num_transformer_layers
        self.anti_cheating = anti_cheating
        cascade = num_transformer_layers > 1
        self.agent_name = agent if cascade and agent else agent_kind(
            {"use_creative_agent": use_creative_agent,
             "use_compositional_agent": use_compositional_agent}, cascade)
        agent_module = None
        if self.agent_name is not None:
            # Every agent gets the same options and takes the ones it knows.
            agent_module = get_agent(self.agent_name).build(
                encoding_dim, rngs=rngs, component_dim=component_dim,
                composer_heads=composer_heads, composer_layers=composer_layers,
                novelty_weight=novelty_weight, mask_gate=mask_gate)
        # Assigned once: NNX fixes an attribute as data or static on its first assignment.
        self.creative_agent = agent_module

        if not cascade:
            self.input_norm = LayerNorm(encoding_dim)
            self.transformer = _encoder(encoding_dim, nhead, num_layers, dropout, rngs)
            self.post_norm = LayerNorm(encoding_dim)
            self.output_proj = SpectralNormLinear(encoding_dim, encoding_dim, rngs=rngs)
        else:
            self.cascade_stages = nnx.List(
                [
                    CascadeStage((2 + i) * encoding_dim, encoding_dim, nhead, num_layers, dropout, rngs=rngs)
                    for i in range(NUM_CASCADE_STAGES)
                ]
            )

    def _needs_rngs(self) -> bool:
        if self.num_transformer_layers > 1 and self.anti_cheating > 0:
            return True
        return uses_dropout(self)

    def _noisy(self, x: jax.Array, train: bool, rngs: nnx.Rngs | None) -> jax.Array:
        if not train or self.anti_cheating <= 0:
            return x
        noise = jax.random.normal(rngs.noise(), x.shape, x.dtype)
        return x + noise * self.anti_cheating * _unbiased_std(x)

    def __call__(
        self,
        encoded_input: jax.Array,
        encoded_target: jax.Array | None = None,
        *,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
        hard_masks: bool = False,
    ) -> TransformerOutput:
        """``encoded_input`` (and, for the cascade, ``encoded_target``) ``[B, D, T]`` -> output ``[B, D, T]``."""
        if encoded_input.ndim != 3 or encoded_input.shape[1] != self.encoding_dim:
            raise ValueError(
                f"encoded_input must be [B, {self.encoding_dim}, T] (encoding_dim={self.encoding_dim}), "
                f"got shape {tuple(encoded_input.shape)}"
            )
        if train and rngs is None and self._needs_rngs():
            raise ValueError(
                "SimpleTransformer(train=True) draws dropout/anti-cheating noise: pass "
                "rngs=nnx.Rngs(dropout=key1, noise=key2) (or set every dropout rate and anti_cheating to 0)"
            )
        if self.num_transformer_layers == 1:
            return self._single(encoded_input, train, rngs)
        if encoded_target is None:
            raise ValueError("encoded_target is required in cascade mode (num_transformer_layers > 1)")
        if encoded_target.shape != encoded_input.shape:
            raise ValueError(
                f"encoded_target shape {tuple(encoded_target.shape)} != encoded_input shape "
                f"{tuple(encoded_input.shape)}"
            )
        return self._cascade(encoded_input, encoded_target, train, rngs, hard_masks)

    def _single(self, encoded_input, train, rngs) -> TransformerOutput:
        x = _btd(encoded_input)
        h = self.transformer(self.input_norm(x), train=train, rngs=rngs)
        out = self._update(x, self.output_proj(self.post_norm(h), train=train))
        return TransformerOutput(_btd(out), None, None, {})

    def _update(self, residual: jax.Array, update: jax.Array) -> jax.Array:
        """The stage's output from its residual and what its transformer computed.

        ``additive`` (the original's): ``residual + update``. The update the network learns is
        smooth in time, and a codec latent that changes slowly from frame to frame decodes to
        a signal almost periodic in the codec's hop: the output buzzes at every multiple of
        the frame rate (187.5 Hz for the MDCT codec) and gains hiss in every band (measured:
        +18 dB comb, +10 points above 6 kHz on the built-in run). ``gain``: ``residual * (1 +
        tanh(update))``, a bounded gain in [0, 2] per latent channel and frame: the network
        decides how much of the parts (the residual) each cell keeps, and a smooth gain on
        real content cannot create a periodic signal.
        """
        if self.cascade_update == "gain":
            return residual * (1.0 + jnp.tanh(update))
        return residual + update

    def _apply_agent(self, encoded_input, encoded_target, train, rngs, hard_masks):
        if self.creative_agent is None:
            return encoded_input, encoded_target, {}, {}
        out = self.creative_agent.process(encoded_input, encoded_target, train=train, rngs=rngs,
                                          hard=hard_masks)
        return out.encoded_input, out.encoded_target, dict(out.losses), dict(out.stats)

    def _cascade(self, encoded_input, encoded_target, train, rngs, hard_masks) -> TransformerOutput:
        inp, tgt, losses, stats = self._apply_agent(
            encoded_input, encoded_target, train, rngs, hard_masks
        )
        noisy_input = self._noisy(inp, train, rngs)
        input_rms, target_rms = sample_rms(inp), sample_rms(tgt)
        goal_rms = jnp.sqrt((jnp.square(input_rms) + jnp.square(target_rms)) / 2.0)
        out = None
        for idx, stage in enumerate(self.cascade_stages):
            if idx == 0:
                residual = 0.5 * (inp + tgt)
                x = jnp.concatenate([noisy_input, tgt], axis=1)
            else:
                residual = (inp + out + tgt) / 3.0
                x = jnp.concatenate([noisy_input, out, self._noisy(tgt, train, rngs)], axis=1)
            update = _btd(stage(_btd(x), train=train, rngs=rngs))
            out = rms_rescale(self._update(residual, update), goal_rms)
        # The original's return values 1 and 2: the agent's regulariser and balance loss.
        values = list(losses.values())
        reg = values[0] if values else None
        balance = losses.get("balance_loss")
        return TransformerOutput(out, reg, balance, stats, losses)
