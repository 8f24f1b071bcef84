"""The registry of creative agents: which agents exist, how each is built, its flag and its
losses' names.

Every agent meets the contract of :mod:`jaxaudio.agents.contract` (:class:`AgentOutput`, whose
name is re-exported here). The model, the train step, the validator, generation and the
torch-checkpoint loader use only that contract, so none of them asks which agent it is.

Adding an agent: write the module (an ``nnx.Module`` with ``process``) and one
:func:`register_agent` call that names its flag and how to build it; add its loss names to
the config's default weights if its losses need their own weight flag.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from jaxaudio.agents.contract import Agent, AgentOutput  # noqa: F401  (re-exported)


@dataclass(frozen=True)
class AgentSpec:
    """One registered agent.

    ``build(encoding_dim, rngs=..., **options)`` makes it (every agent is passed the model's
    agent options, ``component_dim`` and the like, and takes the ones it knows); ``flag`` is the training flag that
    turns it on (the original's name); ``loss_names`` are the names of ``AgentOutput.losses``;
    ``validation_losses`` the ones the validation loss adds (the original's: the regulariser,
    not the balance term); ``priority`` decides when several flags are set (the original lets
    the compositional agent win).
    """

    name: str
    build: Callable[..., Agent]
    flag: str
    loss_names: tuple[str, ...]
    validation_losses: tuple[str, ...]
    priority: int = 0
    # Constructor options a user may set (``--agent_options NAME=V,...``): name -> a check
    # ``(value) -> str | None`` returning what was expected when the value is not allowed.
    options: dict[str, Callable[[int], str | None]] = field(default_factory=dict)
    # Reading the original's torch checkpoints: a state-dict key prefix that only this agent's
    # weights have, and the model options its weights' shapes determine.
    torch_marker: str = ""
    torch_options: Callable[[dict], dict] | None = None


AGENTS: dict[str, AgentSpec] = {}


def register_agent(spec: AgentSpec) -> AgentSpec:
    if spec.name in AGENTS:
        raise ValueError(f"an agent named {spec.name!r} is registered already")
    AGENTS[spec.name] = spec
    return spec


def _compositional_torch_options(state_dict: dict) -> dict:
    """The composer's depth and the component width, from the original's weights."""
    import re

    layers = {int(m.group(1)) for k in state_dict
              if (m := re.match(r"creative_agent\.composer\.composer\.layers\.(\d+)\.", k))}
    return {"composer_layers": max(layers) + 1 if layers else 0,
            "component_dim": int(state_dict["creative_agent.input_extractor.rhythm_norm.weight"]
                                 .shape[0])}


def agent_of_state_dict(state_dict: dict) -> str | None:
    """The registered agent whose weights a torch state dict holds (by key prefix), or None."""
    for spec in agents().values():
        if spec.torch_marker and any(k.startswith(spec.torch_marker) for k in state_dict):
            return spec.name
    return None


def _positive(v: int) -> str | None:
    return None if v >= 1 else "an integer >= 1"


COMPOSER_WIDTH = 512  # the composer's d_model, the original's hard-coded width
COMPOSITIONAL_OPTIONS: dict[str, Callable[[int], str | None]] = {
    "component_dim": _positive,  # channels per component (the original: 64)
    "composer_layers": _positive,  # the composer's transformer layers (4)
    "composer_heads": lambda v: None if v >= 1 and COMPOSER_WIDTH % v == 0 else (
        f"a divisor of the composer's width {COMPOSER_WIDTH}"),  # (8)
}


def parse_agent_options(text: str | None, agent: str | None) -> dict[str, int]:
    """``"name=v,name=v"`` -> ``{name: v}``, checked against ``agent``'s options; raises
    ``ValueError`` naming the option and what was expected."""
    if not text:
        return {}
    if agent is None:
        raise ValueError("no creative agent is on (--creative_agent NAME, with the cascade)")
    spec = get_agent(agent)
    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        if name not in spec.options:
            known = ", ".join(spec.options) or "none"
            raise ValueError(f"the {agent} agent has no option {name!r} (its options: {known})")
        try:
            v = int(value)
        except ValueError:
            v = None
        problem = "an integer" if (not sep or v is None) else spec.options[name](v)
        if problem:
            raise ValueError(f"{name}: expected {problem}, got {value.strip()!r}")
        out[name] = v
    return out


def _builtin() -> None:
    # Imported lazily: the agents' modules import jaxaudio.nn, which must not import this.
    from jaxaudio.agents.compositional.agent import CompositionalCreativeAgent
    from jaxaudio.agents.masking.agent import CreativeAgent

    if "masking" not in AGENTS:
        register_agent(AgentSpec(
            "masking", lambda encoding_dim, *, rngs, mask_gate="learned", **_: CreativeAgent(
                encoding_dim, use_discriminator=True, gate=mask_gate, rngs=rngs),
            flag="use_creative_agent", loss_names=("mask_reg_loss", "balance_loss"),
            validation_losses=("mask_reg_loss",), priority=1,
            torch_marker="creative_agent.mask_generator."))
    if "compositional" not in AGENTS:
        register_agent(AgentSpec(
            "compositional", lambda encoding_dim, *, rngs, component_dim=64, composer_heads=8,
            composer_layers=4, novelty_weight=0.1, **_: CompositionalCreativeAgent(
                encoding_dim=encoding_dim, component_dim=component_dim,
                composer_heads=composer_heads, composer_layers=composer_layers,
                novelty_weight=novelty_weight, rngs=rngs),
            flag="use_compositional_agent", loss_names=("novelty_loss",),
            validation_losses=("novelty_loss",), priority=2, options=COMPOSITIONAL_OPTIONS,
            torch_marker="creative_agent.composer.", torch_options=_compositional_torch_options))


def agents() -> dict[str, AgentSpec]:
    """Every registered agent by name (the built-in ones registered on first use)."""
    _builtin()
    return AGENTS


def get_agent(name: str) -> AgentSpec:
    specs = agents()
    if name not in specs:
        raise KeyError(f"unknown agent {name!r}; registered: {', '.join(sorted(specs))}")
    return specs[name]


def agent_kind(flags: dict[str, bool], cascade: bool) -> str | None:
    """Which agent a model builds from its flags (``{flag: on}``): the highest-priority agent
    whose flag is on, or None. As in the original, agents exist only in the cascade."""
    if not cascade:
        return None
    on = [s for s in agents().values() if flags.get(s.flag)]
    return max(on, key=lambda s: s.priority).name if on else None
