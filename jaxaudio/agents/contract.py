"""What a creative agent is to the rest of jaxaudio: the contract every agent meets.

An agent sits in front of the cascade. It takes the input and target latents ``[B, D, T]`` and
returns an :class:`AgentOutput`: the latents the cascade sees instead, its auxiliary losses by
name (weighted by the config's loss weights of the same names, see
:mod:`jaxaudio.training.objective`) and scalar statistics (logged by name, never stored on the
module). :mod:`jaxaudio.agents.registry` names the agents that meet it.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import jax
from flax import nnx


class AgentOutput(NamedTuple):
    """``encoded_input``, ``encoded_target`` ``[B, D, T]`` as the cascade sees them; ``losses``:
    scalar auxiliary losses by name; ``stats``: scalar statistics by name (no gradient)."""

    encoded_input: jax.Array
    encoded_target: jax.Array
    losses: dict[str, jax.Array]
    stats: dict[str, jax.Array]


@runtime_checkable
class Agent(Protocol):
    """The contract: ``process(encoded_input, encoded_target, *, train, rngs, hard)``."""

    def process(self, encoded_input: jax.Array, encoded_target: jax.Array, *, train: bool = False,
                rngs: nnx.Rngs | None = None, hard: bool = False) -> AgentOutput: ...
