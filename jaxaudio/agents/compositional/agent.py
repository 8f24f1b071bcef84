"""The compositional creative agent: decompose both sources, select, and compose a new pattern.

::

    input  [B, D, T] --input_extractor--> rhythm, harmony, timbre   (3 x [B, C, T])
    target [B, D, T] --target_extractor-> rhythm, harmony, timbre   (3 x [B, C, T])
        concat [B, 6C, T] --component_selector--> logits [B, 6, T] --softmax--> weights
        concat * weights (per component type) --composer--> [B, D, T]
        clamp [-50, 50], NaN -> 0                                   = output
    loss = novelty(output, input, target) + balance(logits)

Torch state-dict names map onto the NNX tree one to one: split the name on ``.``; a part made
of digits is an ``nnx.List`` index (an int in the NNX path); the leaf keeps torch's name and
layout, with no transposes (``Conv1d.weight [out, in, k]``, ``Linear.weight [out, in]``,
``in_proj_weight [3E, E]`` packing q, k, v). For example::

    input_extractor.rhythm_conv1.weight
        -> ("input_extractor", "rhythm_conv1", "weight")
    target_extractor.timbre_norm.running_mean
        -> ("target_extractor", "timbre_norm", "running_mean")
    component_selector.2.bias
        -> ("component_selector", 2, "bias")
    composer.composer.layers.0.self_attn.in_proj_weight
        -> ("composer", "composer", "layers", 0, "self_attn", "in_proj_weight")
    composer.output_projection.3.weight
        -> ("composer", "output_projection", 3, "weight")

All names, with ``X`` in {input, target}, ``b`` in {rhythm, harmony, timbre}, ``L`` a composer
layer (``composer_layers`` of them) and ``P`` in {weight, bias}:

- ``X_extractor.b_conv1.P``, ``X_extractor.b_conv2.P``, ``X_extractor.b_skip.P``: ``nnx.Param``
- ``X_extractor.b_norm.P``: ``nnx.Param``; ``X_extractor.b_norm.running_mean``,
  ``.running_var`` (float32) and ``.num_batches_tracked`` (int32; int64 in torch, float32 in
  the fixtures: cast to the variable's dtype): ``nnx.BatchStat``
- ``component_selector.0.P``, ``component_selector.2.P`` (1 is the LeakyReLU)
- ``composer.component_projection.P``
- ``composer.composer.layers.L.self_attn.in_proj_weight``, ``...self_attn.in_proj_bias``,
  ``...self_attn.out_proj.P``, ``...linear1.P``, ``...linear2.P``, ``...norm1.P``,
  ``...norm2.P``
- ``composer.output_projection.0.P``, ``composer.output_projection.3.P`` (1 is the GELU, 2 the
  dropout)
- ``composer.pos_encoder.pe``: torch's persistent buffer ``[1, 2000, 512]`` (in real
  checkpoints, not in the fixtures) has no NNX state here; the table is recomputed, and
  ``PositionalEncoding.torch_constants()`` offers it to the converter to check and consume.

Inside ``SimpleTransformer`` every name is prefixed with ``creative_agent.``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxaudio.nn import clamp, uses_dropout
from jaxaudio.agents.contract import AgentOutput

from .composer import ComponentComposer
from .extractors import (COMPONENT_NAMES, NUM_COMPONENTS, MultiScaleExtractor,
                         apply_component_selector, component_weights, make_component_selector,
                         weight_components)
from .losses import balance_penalty, novelty_loss

OUTPUT_CLAMP = 50.0  # EnCodec latents live in about [-30, 30]


def component_statistics(components: tuple[jax.Array, ...],
                         weights: jax.Array) -> dict[str, jax.Array]:
    """The original's ``get_component_statistics`` values, as scalar arrays without gradient.

    ``components``: the six ``[B, C, T]`` components in ``COMPONENT_NAMES`` order;
    ``weights [B, 6, T]``: softmax selection weights. Returns ``<name>_energy`` (RMS of the
    component) and ``<name>_weight`` (weight averaged over batch and time) for each name.
    """
    avg = jnp.mean(jax.lax.stop_gradient(weights), axis=(0, 2))
    stats = {}
    for name, comp in zip(COMPONENT_NAMES, components):
        stats[f"{name}_energy"] = jnp.sqrt(jnp.mean(jnp.square(jax.lax.stop_gradient(comp))))
    for i, name in enumerate(COMPONENT_NAMES):
        stats[f"{name}_weight"] = avg[i]
    return stats


class CompositionalCreativeAgent(nnx.Module):
    """Rhythm/harmony/timbre decomposition of input and target, recomposed by a transformer.

    Args (the original's): ``encoding_dim`` D, ``component_dim`` C per component,
    ``composer_heads``, ``composer_layers``, ``novelty_weight`` (kept for the caller; the
    original never applies it inside the agent). Keyword-only: ``dropout``, the composer's
    dropout rate (the original hard-codes 0.1; 0.0 gives a deterministic training forward),
    ``rngs`` for initialisation.
    """

    def __init__(self, encoding_dim: int = 128, component_dim: int = 64, composer_heads: int = 8,
                 composer_layers: int = 4, novelty_weight: float = 0.1, *,
                 dropout: float = 0.1, rngs: nnx.Rngs):
        self.encoding_dim = encoding_dim
        self.component_dim = component_dim
        self.novelty_weight = novelty_weight
        self.input_extractor = MultiScaleExtractor(encoding_dim, component_dim, rngs=rngs)
        self.target_extractor = MultiScaleExtractor(encoding_dim, component_dim, rngs=rngs)
        self.component_selector = make_component_selector(component_dim, rngs=rngs)
        self.composer = ComponentComposer(
            component_dim=component_dim, num_components=NUM_COMPONENTS, nhead=composer_heads,
            num_layers=composer_layers, output_dim=encoding_dim, dropout=dropout, rngs=rngs)

    def _check_inputs(self, encoded_input: jax.Array, encoded_target: jax.Array) -> None:
        for name, x in (("encoded_input", encoded_input), ("encoded_target", encoded_target)):
            if x.ndim != 3 or x.shape[1] != self.encoding_dim:
                raise ValueError(
                    f"CompositionalCreativeAgent: {name} must be [B, {self.encoding_dim}, T] "
                    f"(encoding_dim), got shape {tuple(x.shape)}")
        if encoded_input.shape != encoded_target.shape:
            raise ValueError(
                f"CompositionalCreativeAgent: encoded_input {tuple(encoded_input.shape)} and "
                f"encoded_target {tuple(encoded_target.shape)} must have the same shape")

    def _select(self, encoded_input: jax.Array, encoded_target: jax.Array, train: bool):
        """Extract the six components, the selection logits and the softmax weights."""
        components = (self.input_extractor(encoded_input, train=train)
                      + self.target_extractor(encoded_target, train=train))
        logits = apply_component_selector(self.component_selector,
                                          jnp.concatenate(components, axis=1))
        return components, logits, component_weights(logits)

    def __call__(self, encoded_input: jax.Array, encoded_target: jax.Array, *,
                 train: bool = False, rngs: nnx.Rngs | None = None
                 ) -> tuple[jax.Array, jax.Array, dict[str, jax.Array]]:
        """``encoded_input, encoded_target [B, D, T]`` -> ``(output [B, D, T], loss, stats)``.

        ``loss`` = novelty + balance (a scalar); ``stats`` = :func:`component_statistics` of
        this forward. ``train=True`` normalises with batch statistics, updates the BatchNorm
        running buffers once, and applies dropout with keys from ``rngs`` (stream ``dropout``).
        """
        self._check_inputs(encoded_input, encoded_target)
        if train and rngs is None and uses_dropout(self):
            raise ValueError(
                "CompositionalCreativeAgent: train=True applies dropout, so pass "
                "rngs=nnx.Rngs(dropout=key) (or build the agent with dropout=0.0)")
        components, logits, weights = self._select(encoded_input, encoded_target, train)
        selected = weight_components(jnp.concatenate(components, axis=1), weights)
        balance = balance_penalty(logits)
        output = self.composer(selected, train=train, rngs=rngs)
        output = clamp(output, -OUTPUT_CLAMP, OUTPUT_CLAMP)
        # jit-safe stand-in for the original's `if isnan(...).any()` replacement.
        output = jnp.where(jnp.isnan(output), jnp.zeros_like(output), output)
        loss = novelty_loss(output, encoded_input, encoded_target) + balance
        return output, loss, component_statistics(components, weights)

    def process(self, encoded_input: jax.Array, encoded_target: jax.Array, *, train: bool = False,
                rngs: nnx.Rngs | None = None, hard: bool = False) -> AgentOutput:
        """The agent contract (:mod:`jaxaudio.agents.registry`): the composed pattern replaces
        the input, the target passes unchanged; one loss, ``novelty_loss`` (novelty + balance,
        the original's name), and the component statistics. ``hard`` has no meaning here."""
        output, loss, stats = self(encoded_input, encoded_target, train=train, rngs=rngs)
        return AgentOutput(output, encoded_target, {"novelty_loss": loss}, dict(stats))

    def get_component_statistics(self, encoded_input: jax.Array,
                                 encoded_target: jax.Array) -> dict[str, jax.Array]:
        """Eval-mode statistics (the same values as ``self(..., train=False)[2]``).

        Runs only the extractors and the selector; updates no buffer.
        """
        self._check_inputs(encoded_input, encoded_target)
        components, _, weights = self._select(encoded_input, encoded_target, train=False)
        return component_statistics(components, weights)
