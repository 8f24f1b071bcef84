"""MetricAccumulator: device-side sums read once, with the original's averaging rules."""

import jax.numpy as jnp
import numpy as np
import pytest

from jaxaudio.training.metrics import MetricAccumulator, summarize, tree_add


def _step(loss, disc, skipped, disc_update):
    return {"loss": jnp.float32(loss), "disc_loss": jnp.float32(disc),
            "count_skipped_steps": jnp.float32(skipped),
            "count_disc_updates": jnp.float32(disc_update), "_grad_norm_raw": jnp.float32(7.0)}


def test_means_skip_skipped_steps_and_average_disc_over_its_updates():
    acc = MetricAccumulator()
    acc.add(_step(1.0, 0.5, 0, 1))
    acc.add(_step(0.0, 0.0, 1, 0))  # a skipped step reports zeros
    acc.add(_step(3.0, 0.0, 0, 0))  # the discriminator did not update
    m = acc.means()
    assert acc.steps == 3
    # exact: float32 sums of these small values and one float64 division; approx is moot
    assert m["loss"] == pytest.approx(2.0)          # (1 + 3) / 2 steps that updated
    assert m["disc_loss"] == pytest.approx(0.5)     # over the one discriminator update
    assert m["count_skipped_steps"] == 1.0
    assert m["count_disc_updates"] == 1.0
    assert "_grad_norm_raw" not in m                # host-only keys are not accumulated


def test_state_round_trip_continues_the_sums():
    acc = MetricAccumulator()
    acc.add(_step(1.0, 0.5, 0, 1))
    acc.add(_step(2.0, 0.5, 0, 1))
    restored = MetricAccumulator.from_state(acc.state())
    restored.add(_step(6.0, 2.0, 0, 1))
    acc.add(_step(6.0, 2.0, 0, 1))
    # exact: sums of small integers and halves survive the float round trip unchanged
    assert restored.means() == pytest.approx(acc.means())
    assert restored.means()["loss"] == pytest.approx(3.0)


def test_empty_accumulator_and_names():
    assert MetricAccumulator().means() == {}
    assert MetricAccumulator().state() is None
    assert summarize("val", {"loss": 1.0, "mel": 2.0}) == {"val_loss": 1.0, "val_mel": 2.0}


def test_tree_add_adds_leaf_by_leaf():
    out = tree_add({"a": jnp.ones(()), "b": jnp.arange(3.0)}, {"a": jnp.ones(()), "b": jnp.ones(3)})
    # 1 + 1 and arange + 1 are exact in float32; the default rtol 1e-7 is under an ulp of 2
    np.testing.assert_allclose(out["a"], 2.0)
    np.testing.assert_allclose(out["b"], [1.0, 2.0, 3.0])
