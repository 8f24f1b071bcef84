"""MDCTCodec: exact round trip at any length, a true sine-window MDCT, orthogonal, jit/grad safe."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio.codecs import Codec, MDCTCodec, make_codec
from jaxaudio.codecs.mdct import frame_windows, sine_window


def _audio(n, batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 1, n)).astype(np.float32)


def test_round_trip_any_length():
    codec = MDCTCodec(dim=64)
    round_trip = jax.jit(lambda x: (codec.encode(x), codec.decode(codec.encode(x))))
    for n in (1, 65, 1000):  # shorter than a hop, one past it, not a multiple of it
        x = _audio(n, seed=n)
        z, y = round_trip(x)
        t = -(-n // 64)
        chex.assert_shape(z, (2, 64, t))
        chex.assert_shape(y, (2, 1, t * 64))
        y = np.asarray(y)
        # two 128-point float32 FFTs: ~log2(128) eps of |x| < ~4 (1e-6 measured); the tail holds
        # the round-off of the aliasing cancellation
        np.testing.assert_allclose(y[..., :n], x, atol=1e-5, rtol=0, err_msg=f"N={n}")
        np.testing.assert_allclose(y[..., n:], 0.0, atol=1e-5, err_msg=f"N={n}")


def test_default_is_hop_128_at_24khz():
    codec = MDCTCodec()
    assert isinstance(codec, Codec)
    assert (codec.dim, codec.hop_length, codec.sample_rate) == (128, 128, 24000)
    # exact: 187.5 in binary; approx is moot
    assert codec.frame_rate == pytest.approx(24000 / 128)
    x = _audio(24000, batch=1)
    z, y = jax.jit(lambda x: (codec.encode(x), codec.decode(codec.encode(x))))(x)
    chex.assert_shape(z, (1, 128, 188))
    # as above with 256-point FFTs: ~1e-6 on samples up to ~4
    np.testing.assert_allclose(np.asarray(y)[..., :24000], x, atol=1e-5, rtol=0)


def test_interior_frames_are_the_sine_window_mdct():
    m, n = 16, 200
    x = _audio(n, batch=1, seed=3)[0, 0].astype(np.float64)
    z = np.asarray(jax.jit(MDCTCodec(dim=m).encode)(x[None, None].astype(np.float32)))[0]
    k, i = np.arange(m)[:, None], np.arange(2 * m)[None, :]
    basis = np.sqrt(2.0 / m) * np.cos(np.pi / m * (i + 0.5 + m / 2) * (k + 0.5))  # dense, test only
    w = np.sin(np.pi * (np.arange(2 * m) + 0.5) / (2 * m))
    for t in range(1, z.shape[1] - 1):
        seg = x[t * m - m // 2 : t * m + 3 * m // 2]
        # a 32-point float32 FFT vs the float64 dense basis on float32-exact input: ~log2(32) eps
        # of the frame's norm (3e-7 measured)
        np.testing.assert_allclose(z[:, t], basis @ (w * seg), atol=1e-5)


def test_windows_satisfy_princen_bradley_and_edges_are_rectangular():
    m = 32
    w = sine_window(2 * m).astype(np.float64)
    # w is rounded to float32 (6e-8 relative), so w^2 sums to 1 within ~1.2e-7
    np.testing.assert_allclose(w[:m] ** 2 + w[m:] ** 2, 1.0, atol=1e-6)
    fw = frame_windows(m, 3)
    np.testing.assert_array_equal(fw[0, : m // 2], 0.0)
    np.testing.assert_array_equal(fw[0, m // 2 : m], 1.0)
    np.testing.assert_array_equal(fw[-1, m + m // 2 :], 0.0)
    np.testing.assert_array_equal(fw[1], sine_window(2 * m))


def test_orthogonal_encode_inverts_decode_and_preserves_energy():
    codec = MDCTCodec(dim=32)
    z = np.random.default_rng(1).standard_normal((2, 32, 9)).astype(np.float32)
    x = _audio(32 * 9)
    z_back, zx = jax.jit(lambda z, x: (codec.encode(codec.decode(z)), codec.encode(x)))(z, x)
    # decode then encode: 64-point float32 FFTs on coefficients ~N(0, 1), ~1e-6 (7e-7 measured)
    np.testing.assert_allclose(np.asarray(z_back), z, atol=1e-5)
    # energy of float32 coefficients vs float64 samples: twice their ~log2(64) eps relative error
    np.testing.assert_allclose(np.sum(np.asarray(zx) ** 2, axis=(1, 2)), np.sum(x**2, axis=(1, 2)), rtol=1e-5)


def test_jit_grad_vmap_and_no_state():
    codec = MDCTCodec(dim=32)
    assert not jax.tree_util.tree_leaves(nnx.state(codec))
    graphdef, state = nnx.split(codec)
    z = jnp.asarray(np.random.default_rng(2).standard_normal((2, 32, 6)).astype(np.float32))
    r = jnp.asarray(_audio(32 * 6, seed=5))
    silence = jnp.zeros((2, 1, 32 * 6))

    @jax.jit
    def run(state, z, r, silence):
        c = nnx.merge(graphdef, state)
        g = jax.grad(lambda z: jnp.sum(c.decode(z) * r))(z)
        g0 = jax.grad(lambda a: jnp.sum(c.decode(c.encode(a)) ** 2))(silence)
        per_item = jax.vmap(lambda a: c.encode(a[None])[0])(r)
        return g, g0, per_item, c.encode(r)

    g, g0, per_item, enc_r = run(state, z, r, silence)
    # decode is orthogonal, so the gradient of <decode(z), R> is encode(R)
    # autodiff's transposed FFTs vs the forward ones: other float32 roundings, ~eps of |z| < ~4
    np.testing.assert_allclose(np.asarray(g), np.asarray(enc_r), atol=1e-5)
    assert np.all(np.isfinite(np.asarray(g0)))
    # the same FFTs on batches of 1 and 2: an ulp of |z| < ~4 at most (bitwise equal on CPU)
    np.testing.assert_allclose(np.asarray(per_item), np.asarray(enc_r), atol=1e-6)


def test_make_codec_and_errors():
    assert make_codec("mdct", dim=64).identity() != make_codec("mdct").identity()
    with pytest.raises(ValueError, match="unknown codec 'wavelet'"):
        make_codec("wavelet")
    with pytest.raises(ValueError, match="no weights"):
        make_codec("mdct", weights="x.th")
    with pytest.raises(ValueError, match="even"):
        MDCTCodec(dim=7)
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        MDCTCodec().encode(jnp.zeros((2, 100)))
