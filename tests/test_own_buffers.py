"""Every array of the train state in a buffer of its own: the step donates its state, and XLA
refuses a buffer donated twice (the compositional agent's copied encoder layers once shared
theirs, and its first step stopped with "Attempt to donate the same buffer twice")."""

from __future__ import annotations

import jax.numpy as jnp
import pytest
from flax import nnx

from jaxaudio.nn.transformer import TransformerEncoder, TransformerEncoderLayer
from jaxaudio.training.cli import parse_config
from jaxaudio.training.builders import build_discriminator, build_model
from jaxaudio.training.state import check_own_buffers, init_state


def test_copied_encoder_layers_start_equal_and_own_their_arrays():
    layer = TransformerEncoderLayer(8, 2, 16, 0.1, "gelu", batch_first=True, rngs=nnx.Rngs(0))
    enc = TransformerEncoder(layer, 3)
    states = [nnx.state(enc.layers[i]) for i in range(3)]
    leaves = [nnx.to_flat_state(s) for s in states]
    for other in leaves[1:]:  # torch's deepcopy: the same values ...
        for (p0, v0), (p1, v1) in zip(leaves[0], other):
            assert p0 == p1 and jnp.array_equal(v0.get_value(), v1.get_value())
    check_own_buffers(nnx.state(enc), "encoder")  # ... in arrays of their own


@pytest.mark.parametrize("agent", ["none", "masking", "compositional"])
def test_train_state_of_every_agent_owns_its_buffers(agent):
    flags = ["--builtin", "--encoding_dim", "16", "--nhead", "2", "--num_layers", "2",
             "--gan_weight", "0.1", "--clip_seconds", "0.5"]
    if agent != "none":
        flags += ["--creative_agent", agent]
    cfg = parse_config(flags)
    state, _ = init_state(cfg, build_model(cfg), build_discriminator(cfg))  # checks
    check_own_buffers(state)


def test_a_shared_buffer_is_named():
    a = jnp.ones(3)
    with pytest.raises(ValueError, match=r"\['y'\] and \['x'\] share one device buffer"):
        check_own_buffers({"x": a, "y": a})
    with pytest.raises(ValueError, match="share one device buffer"):
        layer = TransformerEncoderLayer(8, 2, 16, rngs=nnx.Rngs(0))
        check_own_buffers(nnx.state(TransformerEncoder([layer, nnx.clone(layer)])), "encoder")
