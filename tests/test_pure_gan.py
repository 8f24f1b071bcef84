"""The pure-GAN curriculum: the original's alpha schedule, and the noise it mixes in."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaudio.training.cli import parse_config
from jaxaudio.training.trainer import curriculum_alpha, curriculum_counter
from tiny_step import tiny_batch, tiny_steps

TINY = ["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1", "--num_transformer_layers",
        "2", "--batch_size", "2", "--clip_seconds", "0.128", "--codec", "mdct", "--no_mlflow"]


def test_curriculum_follows_the_original():
    # The original: counter = epoch - start + 1 from the start epoch (0-based loop index),
    # alpha = min(ceiling, rate * counter).
    cfg = parse_config(TINY + ["--pure_gan_mode", "0.01", "--gan_curriculum_start_epoch", "86",
                               "--gan_noise_ceiling", "0.3"])
    assert curriculum_counter(cfg, 85) == 0 and curriculum_alpha(cfg, 85) == 0.0
    assert curriculum_counter(cfg, 86) == 1
    # host float64 products such as 0.01 * 15: an ulp (1e-17) from the decimal; approx for that
    assert curriculum_alpha(cfg, 86) == pytest.approx(0.01)
    assert curriculum_alpha(cfg, 100) == pytest.approx(0.15)
    assert curriculum_alpha(cfg, 115) == pytest.approx(0.30)
    assert curriculum_alpha(cfg, 199) == pytest.approx(0.30)  # held at the ceiling


@pytest.fixture(scope="module")
def prepared():
    cfg = parse_config(TINY + ["--pure_gan_mode", "0.5"])
    codec, _, steps = tiny_steps(cfg)
    batch = tiny_batch(cfg, codec, target_scale=[0.1, 0.4])
    prepare = jax.jit(lambda b, alpha: steps._prepare(b, codec, alpha, jax.random.key(5)))
    return codec, batch, prepare


def test_no_noise_before_the_curriculum(prepared):
    codec, batch, prepare = prepared
    in_lat, tgt_lat, in_audio, clean_tgt, fed_tgt, ref_lat = prepare(batch, jnp.float32(0.0))
    assert ref_lat is None  # cached fields: the input's audio is the cache's, nothing to decode
    np.testing.assert_array_equal(in_audio, batch["input_audio"])
    np.testing.assert_array_equal(in_lat, batch["input_latent"])
    np.testing.assert_array_equal(tgt_lat, batch["target_latent"])  # not re-encoded
    np.testing.assert_array_equal(fed_tgt, batch["target_audio"])
    np.testing.assert_array_equal(clean_tgt, batch["target_audio"])


def test_noise_is_mixed_per_sample_and_the_noisy_target_re_encoded(prepared):
    codec, batch, prepare = prepared
    alpha = 0.5
    in_lat, tgt_lat, _, clean_tgt, fed_tgt, _ = prepare(batch, jnp.float32(alpha))
    np.testing.assert_array_equal(clean_tgt, batch["target_audio"])  # losses see clean targets
    noise = (np.asarray(fed_tgt) - (1 - alpha) * np.asarray(batch["target_audio"])) / alpha
    want_std = np.std(np.asarray(batch["target_audio"]), axis=(1, 2), ddof=1)
    # sampling, not round-off: the std of 3072 noise samples errs by ~1/sqrt(2 * 3072) = 1.3%,
    # so 0.1 is ~8 sigma
    np.testing.assert_allclose(np.std(noise, axis=(1, 2)), want_std, rtol=0.1)  # 0.1 and 0.4
    # the same MDCT inside the jitted cond and eagerly: fusion round-off of 64-point FFTs,
    # ~log2(64) eps of coefficients up to ~1
    np.testing.assert_allclose(tgt_lat, codec.encode(fed_tgt), rtol=1e-5, atol=1e-6)
    in_noise = (np.asarray(in_lat) - (1 - alpha) * np.asarray(batch["input_latent"])) / alpha
    assert not np.allclose(in_lat, batch["input_latent"])
    # sampling: the mean of 2 * 32 * 96 = 6144 draws is ~0.013 of their std; 0.05 is ~4 sigma
    assert abs(np.mean(in_noise)) < 0.05 * np.std(in_noise)
