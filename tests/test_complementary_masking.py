"""Fixed complementary masks against the original's numbers, and the random ``spectral`` split."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures import assert_output_close, load_fixture
from jaxaudio.models.complementary_masking import (
    MASK_TYPES,
    apply_complementary_mask,
    get_mask_description,
    temporal_mask,
)

OPTION_KEYS = ("temporal_segment_frames", "freq_split_ratio", "channel_keep_ratio", "energy_threshold")


def _fixture_strategies(fx) -> list[str]:
    return sorted({k.split("/")[1] for k in fx.arrays if k.startswith("out/")})


def test_every_fixture_strategy_matches_original():
    fx = load_fixture("complementary_masking")
    options = {k: fx.config[k] for k in OPTION_KEYS if k in fx.config}
    x, t = jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"])
    strategies = _fixture_strategies(fx)
    assert strategies, "the fixture holds no strategy"
    for mask_type in strategies:
        masked_input, masked_target = jax.jit(
            lambda a, b, m=mask_type: apply_complementary_mask(a, b, m, **options)
        )(x, t)
        assert_output_close(masked_input, fx[f"out/{mask_type}/input"], f"{mask_type}/input")
        assert_output_close(masked_target, fx[f"out/{mask_type}/target"], f"{mask_type}/target")


def test_spectral_is_deterministic_given_the_key_and_complementary():
    x = jnp.ones((2, 10, 7))
    t = 2.0 * jnp.ones((2, 10, 7))
    a_in, a_tg = apply_complementary_mask(x, t, "spectral", channel_keep_ratio=0.3, key=jax.random.key(3))
    b_in, b_tg = apply_complementary_mask(x, t, "spectral", channel_keep_ratio=0.3, key=jax.random.key(3))
    np.testing.assert_array_equal(a_in, b_in)
    np.testing.assert_array_equal(a_tg, b_tg)
    keep_in = np.asarray(a_in[0, :, 0]) == 1.0
    keep_tg = np.asarray(a_tg[0, :, 0]) == 2.0
    assert keep_in.sum() == int(10 * 0.3)
    np.testing.assert_array_equal(keep_in, ~keep_tg)  # every channel goes to exactly one side
    # a whole channel is kept or dropped, the same for every sample and frame
    np.testing.assert_array_equal(np.asarray(a_in), np.broadcast_to(np.asarray(a_in[:1, :, :1]), a_in.shape))
    splits = {
        tuple(np.asarray(apply_complementary_mask(x, t, "spectral", key=jax.random.key(s))[0][0, :, 0]))
        for s in range(6)
    }
    assert len(splits) > 1, "different keys should give different channel splits"
    with pytest.raises(ValueError, match="key"):
        apply_complementary_mask(x, t, "spectral")


def test_temporal_masks_are_complementary_with_fades():
    mask = temporal_mask(700, 150)
    fade = min(10, 150 // 15)
    np.testing.assert_array_equal(mask[:140], 1.0)
    np.testing.assert_array_equal(mask[150:300], 0.0)
    # float32 mask vs float64 ramp: each fade factor is rounded once to float32 (6e-8 relative)
    np.testing.assert_allclose(mask[140:150], (fade - np.arange(fade)) / fade, rtol=1e-6)
    np.testing.assert_allclose(mask[300:310], np.arange(fade) / fade, rtol=1e-6)
    x = jax.random.normal(jax.random.key(0), (1, 4, 700))
    masked_input, masked_target = apply_complementary_mask(x, x, "temporal")
    # x * m + x * (1 - m) vs x * (m + (1 - m)): three float32 roundings, ~eps of |x|
    np.testing.assert_allclose(masked_input + masked_target, x * (mask + (1 - mask)), rtol=1e-6)


def test_energy_masks_split_loud_and_quiet_frames():
    x = np.random.default_rng(0).normal(size=(2, 4, 50)).astype(np.float32)

    @jax.jit
    def run(x):
        masked = apply_complementary_mask(x, x, "energy", energy_threshold=0.7)
        silent_grad = jax.grad(lambda a: jnp.sum(apply_complementary_mask(a, a, "energy")[0] ** 2))(0.0 * x)
        return masked, silent_grad

    (masked_input, masked_target), g = run(x)
    kept_in = np.any(np.asarray(masked_input) != 0, axis=1)
    kept_tg = np.any(np.asarray(masked_target) != 0, axis=1)
    np.testing.assert_array_equal(kept_in, ~kept_tg)  # same signal: loud frames vs the rest
    assert kept_in.sum(axis=1).tolist() == [15, 15]  # frames above the 0.7 quantile of 50
    assert np.all(np.isfinite(np.asarray(g)))


def test_none_and_unknown():
    x = jnp.ones((1, 2, 3))
    out = apply_complementary_mask(x, 2 * x)
    np.testing.assert_array_equal(out[0], x)
    np.testing.assert_array_equal(out[1], 2 * x)
    with pytest.raises(ValueError, match="unknown mask_type"):
        apply_complementary_mask(x, x, "stripes")
    for mask_type in MASK_TYPES:
        assert get_mask_description(mask_type) != get_mask_description("stripes")
