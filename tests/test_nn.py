"""Properties of the shared torch-compatible layers in ``jaxaudio.nn`` that the model parity
tests do not reach: the attention's projection routes and dropout, the two ways to build an
encoder, the dropout detector, and torch's gradient conventions of the small helpers."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio.nn import (
    LayerNorm,
    LeakyReLU,
    MultiheadAttention,
    TransformerEncoder,
    TransformerEncoderLayer,
    l2_normalize,
    sample_rms,
    torch_abs,
    unbiased_std,
    uses_dropout,
)


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def test_attention_projection_routes_agree():
    """Self-attention (one packed product), key-is-value (two) and three separate projections."""
    mha = MultiheadAttention(8, 2, batch_first=True, rngs=nnx.Rngs(0))
    x, kv = _normal(0, (2, 5, 8)), _normal(1, (2, 7, 8))

    def copy(a):  # an equal array that is not the same object: another projection route
        return a + 0.0

    @jax.jit
    def routes(x, kv):
        return (mha(x, x, x)[0], mha(x, copy(x), copy(x))[0],
                mha(x, kv, kv)[0], mha(x, kv, copy(kv))[0])

    packed, separate, shared_kv, separate_kv = routes(x, kv)
    # one packed product vs separate ones: other blockings of 8-term sums, then softmax and the
    # output projection: a few ulps of outputs ~1
    np.testing.assert_allclose(packed, separate, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(shared_kv, separate_kv, rtol=1e-5, atol=1e-6)


def test_attention_dropout_acts_on_probabilities_and_needs_rngs():
    mha = MultiheadAttention(8, 2, dropout=0.5, batch_first=True, rngs=nnx.Rngs(0))
    x = _normal(2, (2, 6, 8))
    with pytest.raises(ValueError, match="rngs"):
        mha(x, x, x, train=True)

    @jax.jit
    def run(key):
        train = mha(x, x, x, need_weights=True, train=True, rngs=nnx.Rngs(dropout=key))
        return train, mha(x, x, x, need_weights=True)

    (a, wa), (_, w_eval) = run(jax.random.key(1))
    (b, _), _ = run(jax.random.key(1))
    (c, _), _ = run(jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    chex.assert_shape(wa, (2, 6, 6))
    # float32 softmax rows: 6 normalised terms sum to 1 within a few eps
    np.testing.assert_allclose(np.sum(np.asarray(w_eval), -1), 1.0, rtol=1e-5)
    # torch returns the weights after dropout: some rows no longer sum to one.
    assert np.max(np.abs(np.sum(np.asarray(wa), -1) - 1.0)) > 0.05
    mha.dropout = 0.0  # torch's attribute: the training forward is now deterministic
    # dropout 0 leaves the eval forward's float32 ops: an ulp at most
    np.testing.assert_allclose(mha(x, x, x, train=True)[0], mha(x, x, x)[0], rtol=1e-6)


def test_encoder_from_one_layer_or_from_a_list():
    rngs = nnx.Rngs(0)
    drawn = TransformerEncoder([TransformerEncoderLayer(8, 2, 16, rngs=rngs) for _ in range(2)])
    assert not np.array_equal(drawn.layers[0].linear1.weight[...], drawn.layers[1].linear1.weight[...])
    copied = TransformerEncoder(TransformerEncoderLayer(8, 2, 16, rngs=rngs), 2)
    np.testing.assert_array_equal(copied.layers[0].linear1.weight[...], copied.layers[1].linear1.weight[...])
    with pytest.raises(ValueError, match="num_layers"):
        TransformerEncoder(list(drawn.layers), 3)
    with pytest.raises(ValueError, match="activation"):
        TransformerEncoderLayer(8, 2, activation="swish", rngs=rngs)


def test_uses_dropout_sees_layers_and_attention_rates():
    layer = TransformerEncoderLayer(8, 2, 16, dropout=0.0, rngs=nnx.Rngs(0))
    assert not uses_dropout(layer)
    layer.self_attn.dropout = 0.1
    assert uses_dropout(layer)
    layer.self_attn.dropout = 0.0
    layer.dropout2.rate = 0.1
    assert uses_dropout(layer)


def test_layer_norm_matches_float64_reference():
    norm = LayerNorm(6)
    norm.weight[...] = _normal(3, (6,))
    norm.bias[...] = _normal(4, (6,))
    x = _normal(5, (3, 4, 6)) + 100.0  # an offset that a one-pass variance would lose
    x64 = np.asarray(x, np.float64)
    mean, var = x64.mean(-1, keepdims=True), x64.var(-1, keepdims=True)
    ref = (x64 - mean) / np.sqrt(var + 1e-5) * np.asarray(norm.weight[...]) + np.asarray(norm.bias[...])
    # at x ~ 100 the float32 mean carries ~eps * 100 = 1.2e-5 into centred values of size ~1:
    # ~1e-5 on the output
    np.testing.assert_allclose(jax.jit(lambda m, a: m(a))(norm, x), ref, rtol=1e-4, atol=1e-4)


def test_helpers_follow_torch_at_zero():
    zero = jnp.zeros((2, 3, 4))
    # LeakyReLU: torch's gradient at exactly 0 is the slope; |x| has gradient 0 there.
    # float32 0.2 is 1.5e-8 relative off float64 0.2, inside the default rtol 1e-7
    np.testing.assert_allclose(jax.grad(lambda z: LeakyReLU(0.2)(z))(0.0), 0.2)
    assert float(jax.grad(torch_abs)(0.0)) == 0.0
    grads = jax.jit(jax.grad(lambda z: jnp.sum(l2_normalize(z)) + unbiased_std(z)
                             + jnp.sum(sample_rms(z))))(zero)
    assert np.all(np.isfinite(np.asarray(grads)))
    np.testing.assert_array_equal(l2_normalize(zero), 0.0)
    x = _normal(6, (2, 3, 4))
    # float32 std of 4 values, two ways: a few ulps
    np.testing.assert_allclose(unbiased_std(x, axis=2), np.std(np.asarray(x), axis=2, ddof=1), rtol=1e-5)
    rms = np.sqrt(np.mean(np.asarray(x, np.float64) ** 2, axis=(1, 2), keepdims=True) + 1e-8)
    # float32 mean of 12 squares and a sqrt vs float64: ~2 eps relative
    np.testing.assert_allclose(sample_rms(x), rms, rtol=1e-6)
    norms = np.linalg.norm(np.asarray(l2_normalize(x, axis=1)), axis=1)
    # float32 division by the norm, re-normed in float32: a few eps
    np.testing.assert_allclose(norms, 1.0, rtol=1e-5)


def test_bf16_inputs_keep_statistics_in_float32():
    """Under --precision bf16 the norms, softmax and RMS levels reduce in float32."""
    from jaxaudio.nn.attention import attention_weights
    from jaxaudio.nn.functional import sample_rms
    from jaxaudio.nn.norm import BatchNorm1d, LayerNorm

    x = jax.random.normal(jax.random.key(0), (2, 5, 64)) * 3.0 + 100.0  # offset: bf16 sums lose it
    xb = x.astype(jnp.bfloat16)
    ln = LayerNorm(64)
    ref = ln(xb.astype(jnp.float32))  # float32 math on the same (rounded) inputs
    out = ln(xb)
    assert out.dtype == jnp.bfloat16
    # the output is rounded to bf16: half an ulp is 2^-8 relative, <= 0.008 for |y| < 4
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref), atol=2e-2)
    bn = BatchNorm1d(5)
    outb = bn(xb, train=True)
    assert outb.dtype == jnp.bfloat16 and bn.running_mean[...].dtype == jnp.float32
    # float32 means of 128 bf16-exact values ~100, two ways: ~log2(128) eps
    np.testing.assert_allclose(np.asarray(bn.running_mean[...]),
                               0.1 * np.asarray(xb, np.float32).mean(axis=(0, 2)), rtol=1e-5)
    q = xb.reshape(2, 5, 4, 16)
    p = attention_weights(q, q)
    assert p.dtype == jnp.bfloat16
    # each bf16 probability rounds by <= 2^-8 relative, so a row's sum by <= 2^-8 = 0.004
    np.testing.assert_allclose(np.asarray(p, np.float32).sum(-1), 1.0, atol=1e-2)
    r = sample_rms(xb)
    assert r.dtype == jnp.bfloat16
    # the RMS is rounded to bf16: <= 2^-8 = 0.4% relative
    np.testing.assert_allclose(np.asarray(r, np.float32).ravel(),
                               np.sqrt((np.asarray(xb, np.float64) ** 2).mean(axis=(1, 2))), rtol=1e-2)
