"""EnCodec's decode with bfloat16 matrix work (``decode(..., dtype=jnp.bfloat16)``, the train
step's ``--codec_precision bf16``): what runs in bfloat16, what stays float32, how far the
audio and its gradient move, and that validation is untouched."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio.codecs.encodec import random_encodec
from tests.jaxprs import eqns as _eqns

rel = lambda a, b: float(jnp.linalg.norm((a - b).ravel()) / jnp.linalg.norm(b.ravel()))


@pytest.fixture(scope="module")
def codec():
    return random_encodec(0, n_filters=4, dimension=16, ratios=(4, 2), lstm=2)


def test_bf16_decode_runs_its_convolutions_in_bf16_and_keeps_lstm_and_audio_float32(codec):
    z = jax.random.normal(jax.random.key(1), (2, 16, 40))
    jaxpr = jax.make_jaxpr(lambda z: codec.decode(z, dtype=jnp.bfloat16))(z).jaxpr
    convs = [e for e in _eqns(jaxpr) if e.primitive.name == "conv_general_dilated"]
    lhs = [str(e.invars[0].aval.dtype) for e in convs]
    # every convolution takes bfloat16 but the last layer's (n_filters -> channels; with the
    # small convolutions of its reflected edges), which ends the list
    first32 = lhs.index("float32")
    assert set(lhs[:first32]) == {"bfloat16"} and set(lhs[first32:]) == {"float32"}, lhs
    assert all(e.invars[0].aval.shape[-1] == 4 for e in convs[first32:]), lhs  # n_filters in
    assert len(lhs) - first32 < first32
    # the LSTM: states and sums float32, its products' operands bfloat16
    scans = [e for e in _eqns(jaxpr) if e.primitive.name == "scan"]
    for e in scans:  # carries h, c (and h again in the products' dtype); outputs float32
        stacked = [v.aval.ndim > 0 and v.aval.shape[0] == e.params["length"] for v in e.outvars]
        carries = [str(v.aval.dtype) for v, y in zip(e.outvars, stacked) if not y]
        assert carries[:2] == ["float32", "float32"] and set(carries[2:]) <= {"bfloat16"}
        assert all(str(v.aval.dtype) == "float32" for v, y in zip(e.outvars, stacked) if y)
    assert scans
    step_dots = [e for scan in scans for e in _eqns(scan.params["jaxpr"].jaxpr)
                 if e.primitive.name == "dot_general"]
    assert step_dots and all(str(v.aval.dtype) == "bfloat16" for e in step_dots
                             for v in e.invars), step_dots
    assert all(str(e.outvars[0].aval.dtype) == "float32" for e in step_dots)
    out = codec.decode(z, dtype=jnp.bfloat16)
    assert out.dtype == jnp.float32
    ref = codec.decode(z)
    # a float32 decode keeps float32 products everywhere
    jaxpr32 = jax.make_jaxpr(codec.decode)(z).jaxpr
    assert all(str(v.aval.dtype) == "float32" for e in _eqns(jaxpr32)
               if e.primitive.name in ("dot_general", "conv_general_dilated") for v in e.invars)
    # bfloat16 keeps 8 significant bits (2^-8 relative a rounding); a dozen layers of it
    err = rel(out, ref)
    assert 1e-4 < err < 3e-2, err  # not float32 (it did round), and close to it


def test_bf16_decode_gradient_is_finite_and_close(codec):
    z = jax.random.normal(jax.random.key(2), (2, 16, 40))
    t = jax.random.normal(jax.random.key(3), codec.decode(z).shape)
    loss = lambda dtype: (lambda z: jnp.mean((codec.decode(z, dtype=dtype) - t) ** 2))
    g16 = jax.jit(jax.grad(loss(jnp.bfloat16)))(z)
    g32 = jax.jit(jax.grad(loss(None)))(z)
    assert g16.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(g16)))
    # bf16 rounding (<= 2^-8 relative) in a dozen layers, forward and in the backward's
    # products: ~1e-2 (6.5e-3 measured)
    assert rel(g16, g32) < 5e-2
    # silence: finite
    g0 = jax.grad(lambda z: jnp.mean(codec.decode(z, dtype=jnp.bfloat16) ** 2))(jnp.zeros_like(z))
    assert bool(jnp.all(jnp.isfinite(g0)))


def test_bf16_decode_pair_decodes_the_reference_in_float32(codec):
    z = jax.random.normal(jax.random.key(4), (2, 16, 40))
    r = jax.random.normal(jax.random.key(5), (2, 16, 40))
    y, y_ref = codec.decode_pair(z, r, dtype=jnp.bfloat16)
    assert y.dtype == y_ref.dtype == jnp.float32
    # the reference is decoded as the cache decodes it (float32)
    # float32 both, r's rows batched with z's: round-off of another blocking (bitwise on CPU)
    np.testing.assert_allclose(y_ref, codec.decode(r), rtol=1e-5, atol=1e-6)
    # the one LSTM call over both batches runs in float32 (its rows share the products), so
    # z's decode differs from decode(z, dtype=bf16) by that LSTM's bf16 products alone
    lstm_only = rel(y, codec.decode(z, dtype=jnp.bfloat16))
    assert lstm_only < rel(codec.decode(z), codec.decode(z, dtype=jnp.bfloat16))
    # bf16 convolutions' rounding, as bounded in the first test (~1e-2 measured)
    assert 0 < rel(y, codec.decode(z)) < 3e-2


def test_train_step_with_bf16_codec_decode_and_float32_validation():
    from jaxaudio.data.cache import codec_fields
    from jaxaudio.training.cli import parse_config
    from tiny_step import tiny_steps

    codec = random_encodec(0, n_filters=2, dimension=32, ratios=(4, 2), lstm=2)
    rng = np.random.default_rng(0)
    n = 4096  # the spectral loss's largest n_fft (2048) needs more than 1024 samples
    x, y = (jnp.asarray(0.2 * rng.standard_normal((2, 1, n)), jnp.float32) for _ in range(2))
    batch = jax.jit(lambda a, b: codec_fields(codec, a, b))(x, y)
    results = {}
    for prec in ("fp32", "bf16"):
        cfg = parse_config(["--builtin", "--encoding_dim", "32", "--nhead", "2", "--num_layers",
                            "1", "--num_transformer_layers", "2", "--batch_size", "2",
                            "--codec", "mdct", "--no_mlflow", "--codec_precision", prec])
        _, state, steps = tiny_steps(cfg, codec=codec)
        args = (nnx.state(codec), jnp.float32(0.0), jnp.int32(0))
        val = steps.eval_step(state, {**batch, "valid": jnp.ones((2,), jnp.float32)},
                              nnx.state(codec))
        new, m = steps.train_step(state, dict(batch), *args)  # donates state
        raw = steps.train_step(tiny_steps(cfg, codec=codec)[1],
                               {"input_raw": x, "target_audio": y}, *args)[1]
        results[prec] = jax.device_get((m, val, raw, new.params))
    (m32, v32, _, _), (m16, v16, r16, p16) = results["fp32"], results["bf16"]
    for k in ("loss", "rms_input", "rms_target", "spectral"):
        assert np.isfinite(m16[k]) and np.isfinite(r16[k]), k
        assert m16[k] != m32[k], k  # the bf16 decode did run
        # the RMS terms are differences of levels near 0.1 (values ~1e-3): bf16's 1% of a
        # level is their absolute tolerance
        np.testing.assert_allclose(m16[k], m32[k], rtol=3e-2, atol=5e-4, err_msg=k)
        # raw clips: the same step (the input, the losses' reference, decoded in float32 as
        # the cache holds it), but the output's LSTM shares its float32 products with the
        # reference's rows where the cached step's own decode has bf16 ones: ~1e-3 relative
        # on the audio, a few 1e-6 on a term as small as rms_input (1.3e-3)
        np.testing.assert_allclose(r16[k], m16[k], rtol=1e-3, atol=1e-5, err_msg=k)
    for k in v32:  # validation decodes in float32 whatever --codec_precision says
        np.testing.assert_array_equal(v16[k], v32[k], err_msg=k)
    assert all(np.all(np.isfinite(a)) for a in jax.tree.leaves(p16))
