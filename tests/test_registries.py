"""A newcomer's extension points: a toy agent and a toy loss term added through the registries
alone, trained for a step with weights given by name."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio.agents.registry import AGENTS, AgentOutput, AgentSpec, register_agent
from jaxaudio.training import objective
from jaxaudio.training.cli import parse_config
from jaxaudio.training.config import ConfigError
from jaxaudio.training.builders import build_model
from tiny_step import tiny_batch, tiny_steps


class ToyAgent(nnx.Module):
    """Scales the input by a learned gain; its loss pulls the gain towards 2."""

    def __init__(self, encoding_dim, *, rngs, **_):
        self.gain = nnx.Param(jnp.ones((), jnp.float32))

    def process(self, encoded_input, encoded_target, *, train=False, rngs=None, hard=False):
        g = self.gain[...]
        return AgentOutput(encoded_input * g, encoded_target, {"toy_pull": (g - 2.0) ** 2},
                           {"toy_gain": jax.lax.stop_gradient(g)})


@pytest.fixture
def registered():
    register_agent(AgentSpec("toy", ToyAgent, flag="", loss_names=("toy_pull",),
                             validation_losses=("toy_pull",)))
    objective.register_loss("toy_level", lambda x: jnp.mean(jnp.square(x.output)),
                            "mean power of the output")
    yield
    AGENTS.pop("toy")
    objective.LOSS_TERMS.pop("toy_level")


TINY = ["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
        "--num_transformer_layers", "2", "--batch_size", "2", "--clip_seconds", "0.128",
        "--no_mlflow", "--creative_agent", "toy", "--loss_weights", "toy_level=0.5,toy_pull=1.0"]


def test_toy_agent_and_loss_train_through_the_registries(registered):
    cfg = parse_config(TINY)
    assert cfg.agent == "toy" and cfg.loss_weight_map()["toy_level"] == 0.5
    model = build_model(cfg)
    assert isinstance(model.creative_agent, ToyAgent)
    codec, state, steps = tiny_steps(cfg, model)
    batch = tiny_batch(cfg, codec)
    gain0 = float(state.params["creative_agent"]["gain"][...])
    new, m = steps.train_step(state, batch, nnx.state(codec), jnp.float32(0.0), jnp.int32(0))
    for name in ("toy_level", "toy_pull", "toy_gain", "rms_input", "rms_target"):
        assert name in m, name
    # one float32 square (g - 2 is exact for g in [1, 4]): half an ulp, 6e-8 relative
    np.testing.assert_allclose(float(m["toy_pull"]), (gain0 - 2.0) ** 2, rtol=1e-6)
    expected = sum(cfg.loss_weight_map().get(k, 0.0) * float(m[k])
                   for k in ("rms_input", "rms_target", "spectral", "toy_level", "toy_pull",
                             "spectral_penalty"))
    # float32 running sum of six non-negative weighted terms vs float64: a few eps relative
    np.testing.assert_allclose(float(m["loss"]), expected, rtol=1e-5)
    assert float(new.params["creative_agent"]["gain"][...]) != gain0  # it learned
    val = steps.eval_step(new, {**batch, "valid": jnp.ones((2,), jnp.float32)}, nnx.state(codec))
    assert "toy_level" in val and "toy_pull" in val


def test_unknown_loss_weight_names_the_flag(registered):
    with pytest.raises(ConfigError, match="--loss_weights: unknown loss term 'nope'"):
        parse_config(TINY[:-1] + ["nope=1"])
