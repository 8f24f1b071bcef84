"""The compositional agent's penalties, as pure functions of arrays.

The agent returns ``novelty_loss(output, input, target) + balance_penalty(selection_logits)``
(the original's ``total_loss``; its ``novelty_weight`` is stored but never applied there).
Both use torch's gradient conventions at the kinks (d|x|/dx = 0 at 0; ``F.normalize`` of a zero
vector is zero with zero gradient; see :mod:`jaxaudio.nn.functional`), so gradients stay finite
on silence.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxaudio.nn import l2_normalize, torch_abs

BALANCE_SCALE = 0.1
NUM_INPUT_COMPONENTS = 3  # components 0-2 come from the input, 3-5 from the target


def novelty_loss(creative_output: jax.Array, encoded_input: jax.Array,
                 encoded_target: jax.Array) -> jax.Array:
    """Mean cosine similarity (over channels, per frame) to the input and to the target.

    All ``[B, D, T]``; returns ``0.5 (|mean cos(out, in)| + |mean cos(out, tgt)|)``, a scalar.
    """
    out = l2_normalize(creative_output, axis=1)
    sim_input = jnp.mean(jnp.sum(out * l2_normalize(encoded_input, axis=1), axis=1))
    sim_target = jnp.mean(jnp.sum(out * l2_normalize(encoded_target, axis=1), axis=1))
    return (torch_abs(sim_input) + torch_abs(sim_target)) * 0.5


def balance_penalty(selection_logits: jax.Array) -> jax.Array:
    """``0.1 |sum of input-type means - sum of target-type means|`` of the raw logits.

    ``selection_logits [B, 6, T]``. As in the original this uses the logits averaged over batch
    and time, not the softmax weights.
    """
    avg = jnp.mean(selection_logits, axis=(0, 2))
    diff = jnp.sum(avg[:NUM_INPUT_COMPONENTS]) - jnp.sum(avg[NUM_INPUT_COMPONENTS:])
    return torch_abs(diff) * BALANCE_SCALE

