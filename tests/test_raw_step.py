"""The raw-clip train step (no latent cache, the original's semantics: input and target encoded
in the step, in one call, and the input decoded as the losses' reference) against the cached
one: the same step from the same clips."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from tiny_step import tiny_steps

AUDIO_TERMS = ("rms_input", "rms_target", "spectral", "output_input_corr", "output_target_corr")


def _both_steps(extra, encodec=False):
    from jaxaudio.data.cache import codec_fields
    from jaxaudio.training.cli import parse_config

    cfg = parse_config(["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
                        "--num_transformer_layers", "2", "--batch_size", "2", "--clip_seconds",
                        "0.128", "--codec", "mdct", "--no_mlflow", *extra])
    if encodec:  # a small random EnCodec: the raw step decodes output and input in one call
        from jaxaudio.codecs.encodec import random_encodec
        from jaxaudio.training.builders import build_discriminator, build_mesh, build_model
        from jaxaudio.training.state import init_state
        from jaxaudio.training.step import Steps

        codec = random_encodec(0, n_filters=2, dimension=32, ratios=(4, 2), lstm=2)
        state_raw, statics = init_state(cfg, build_model(cfg), build_discriminator(cfg))
        state_cached, _ = init_state(cfg, build_model(cfg), build_discriminator(cfg))
        steps = Steps(cfg, statics, nnx.graphdef(codec), build_mesh(jax.devices()[:1]))
    else:
        codec, state_raw, steps = tiny_steps(cfg)
        _, state_cached, _ = tiny_steps(cfg)
    n = int(cfg.clip_seconds * codec.sample_rate)
    rng = np.random.default_rng(0)
    x = jnp.asarray(0.2 * rng.standard_normal((2, 1, n)), jnp.float32)
    y = jnp.asarray(0.2 * rng.standard_normal((2, 1, n)), jnp.float32)
    # What the cache holds: each clip encoded, the input decoded on its own.
    cached = jax.jit(lambda a, b: codec_fields(codec, a, b))(x, y)
    init = jax.device_get(state_raw.params)
    args = (nnx.state(codec), jnp.float32(0.0), jnp.int32(0))
    new_raw, m_raw = steps.train_step(state_raw, {"input_raw": x, "target_audio": y}, *args)
    new_cached, m_cached = steps.train_step(state_cached, cached, *args)
    return (init, jax.device_get(new_raw.params), jax.device_get(m_raw),
            jax.device_get(new_cached.params), jax.device_get(m_cached))


@pytest.mark.parametrize("extra,encodec", [([], False), (["--unity_test", "true"], False),
                                           ([], True)])
def test_raw_clip_step_equals_the_cached_step(extra, encodec):
    """MDCT; and EnCodec, where the raw step decodes the input with the output (one LSTM
    call for both) while the cache decoded it on its own."""
    p_init, p_raw, m_raw, p_cached, m_cached = _both_steps(extra, encodec)
    assert m_raw.keys() == m_cached.keys()
    for k in m_raw:
        # the same float32 work in two compilations (the raw clips encoded in one 2B call): a few
        # ulps
        np.testing.assert_allclose(m_raw[k], m_cached[k], rtol=1e-6, atol=1e-7, err_msg=k)
    # The updates, leaf by leaf as a whole: AdamW's first step g / (|g| + eps) is sensitive to
    # round-off where |g| is near eps (biases that start at 0), so single elements may differ
    # by a part of the step while the leaf's update agrees.
    for a, b, p0 in zip(jax.tree.leaves(p_raw), jax.tree.leaves(p_cached),
                        jax.tree.leaves(p_init)):
        assert np.linalg.norm(a - b) <= 1e-3 * np.linalg.norm(a - p0)


def test_raw_clip_step_with_gan_and_agent_has_the_cached_steps_audio_terms():
    """With the GAN and the masking agent: the terms computed from the decoded audio agree.
    (Other figures may differ by more than round-off: the energy masks' percentile threshold
    and the hinge make the step discontinuous in its inputs, which two compilations give at
    float32 round-off apart.)"""
    _, _, m_raw, _, m_cached = _both_steps(["--gan_weight", "0.1", "--use_creative_agent", "true"])
    for k in (*AUDIO_TERMS, "disc_loss"):
        # as above; the discontinuous terms are left out
        np.testing.assert_allclose(m_raw[k], m_cached[k], rtol=1e-6, atol=1e-7, err_msg=k)


def test_raw_clip_step_with_encodec_on_four_devices_equals_one():
    """The paired decode's one LSTM call over output and reference rows, with the batch
    sharded over 4 devices, gives the step of one device: every term of the decoded output and
    input audio (``rms_input`` and ``output_input_corr`` read the decoded input)."""
    from jaxaudio.codecs.encodec import random_encodec
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.builders import build_discriminator, build_mesh, build_model, replicate
    from jaxaudio.training.state import init_state
    from jaxaudio.training.step import Steps

    assert len(jax.devices()) >= 4, "conftest configures 4 fake CPU devices"
    cfg = parse_config(["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
                        "--num_transformer_layers", "2", "--batch_size", "4", "--clip_seconds",
                        "0.128", "--codec", "mdct", "--no_mlflow"])
    codec = random_encodec(0, n_filters=2, dimension=32, ratios=(4, 2), lstm=2)
    n = int(cfg.clip_seconds * codec.sample_rate)
    rng = np.random.default_rng(0)
    batch = {"input_raw": jnp.asarray(0.2 * rng.standard_normal((4, 1, n)), jnp.float32),
             "target_audio": jnp.asarray(0.2 * rng.standard_normal((4, 1, n)), jnp.float32)}
    out = []
    for devices in (jax.devices()[:1], jax.devices()[:4]):
        mesh = build_mesh(devices)
        state, statics = init_state(cfg, build_model(cfg), build_discriminator(cfg))
        steps = Steps(cfg, statics, nnx.graphdef(codec), mesh)
        _, metrics = steps.train_step(replicate(state, mesh), batch,
                                      replicate(nnx.state(codec), mesh), jnp.float32(0.0),
                                      jnp.int32(0))
        out.append(jax.device_get(metrics))
    m1, m4 = out
    for k in AUDIO_TERMS + ("loss",):
        # batch means and spectral sums reduced across 4 shards in another order: ~log2(n) eps
        np.testing.assert_allclose(m4[k], m1[k], rtol=1e-5, err_msg=k)
    # The norm of this tiny gradient (5e-3) moves by 4e-4 between 1 and 4 devices whether the
    # two decodes are paired or not (measured both ways): sharded reduction order, not pairing.
    np.testing.assert_allclose(m4["grad_norm"], m1["grad_norm"], rtol=1e-3)
