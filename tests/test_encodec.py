"""EncodecCodec against the reference: the shared fixtures and the committed tiny assets.

Shapes and configuration come from the files (the sizes from the weights' shapes). Compiles
are the expensive part on a CPU, so each test jits one function that computes everything it
checks (``compiler_options`` lowers XLA's backend optimisation level: compile time only).
"""

import functools
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import rnn

from jaxaudio.codecs import Codec, FrozenWeight
from jaxaudio.codecs.encodec import EncodecCodec, encodec_from_state_dict, load_encodec, random_encodec
from jaxaudio.codecs.encodec.lstm import lstm_scan
from jaxaudio.codecs.encodec.torch_layout import abstract_codec
from jaxaudio.codecs.encodec.config import EncodecConfig
from tests.fixtures import assert_grad_close, assert_output_close, load_fixture

ASSETS = Path(__file__).resolve().parent / "assets"
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def _forward_all(graphdef, checks, state, audios, latent, r):
    """Every output a parity test checks, from one compile: encodes, decode, decode(encode), grad."""
    codec = nnx.merge(graphdef, state)
    encoded = [codec.encode(a) for a in audios]
    decoded = codec.decode(latent)
    round_trip = codec.decode(encoded[0]) if "round_trip" in checks else None
    grad = jax.grad(lambda z: jnp.sum(codec.decode(z) * r))(latent) if "grad" in checks else None
    return encoded, decoded, round_trip, grad


_run = jax.jit(_forward_all, static_argnums=(0, 1), compiler_options=FAST_COMPILE)


def _run_codec(codec, audios, latent, r=None, checks=()):
    graphdef, state = nnx.split(codec)
    r = None if r is None else jnp.asarray(r)
    return _run(graphdef, tuple(checks), state, [jnp.asarray(a) for a in audios], jnp.asarray(latent), r)


def test_seanet_fixture_jitted():
    fx = load_fixture("encodec_seanet")
    codec = encodec_from_state_dict(fx.group("param"), source="encodec_seanet.npz")
    assert isinstance(codec, Codec)
    (enc,), dec, dec_enc, grad = _run_codec(
        codec, [fx["in/audio"]], fx["in/latent"], fx["in/R"], checks=("round_trip", "grad")
    )
    assert_output_close(enc, fx["out/encoded"], "encoded")
    assert_output_close(dec, fx["out/decoded_latent"], "decoded_latent")
    assert_output_close(dec_enc, fx["out/decoded_encoded"], "decoded_encoded")
    assert_grad_close(grad, fx["grad/latent"], "grad/latent")


def test_hf_fixture_jitted():
    fx = load_fixture("encodec_hf")
    codec = encodec_from_state_dict(fx.group("param"), source="encodec_hf.npz")
    (enc,), dec, _, _ = _run_codec(codec, [fx["in/audio"]], fx["in/latent"])
    assert_output_close(enc, fx["out/encoded"], "encoded")
    assert_output_close(dec, fx["out/decoded_latent"], "decoded_latent")


def test_seanet_fixture_eager():
    fx = load_fixture("encodec_seanet")
    codec = encodec_from_state_dict(fx.group("param"), source="encodec_seanet.npz")
    assert_output_close(codec.encode(jnp.asarray(fx["in/audio"])), fx["out/encoded"], "encoded (eager)")
    assert_output_close(codec.decode(jnp.asarray(fx["in/latent"])), fx["out/decoded_latent"], "decoded (eager)")


def _asset_groups(ref, prefix):
    lengths = sorted(int(k.rsplit("_", 1)[1]) for k in ref.files if k.startswith(f"{prefix}/in/audio_"))
    return lengths, [ref[f"{prefix}/in/audio_{n}"] for n in lengths]


def test_odd_lengths_causal_reference_th():
    """Lengths shorter than the padding and not multiples of the hop; weights from a real .th."""
    ref = np.load(ASSETS / "encodec_tiny_ref.npz")
    codec = load_encodec(ASSETS / "encodec_tiny.th")
    lengths, audios = _asset_groups(ref, "a")
    assert any(n % codec.hop_length for n in lengths) and min(lengths) < codec.config.kernel_size
    encoded, dec, _, _ = _run_codec(codec, audios, ref["a/in/latent"])
    for n, enc in zip(lengths, encoded):
        chex.assert_shape(enc, (audios[0].shape[0], codec.dim, -(-n // codec.hop_length)))
        assert_output_close(enc, ref[f"a/out/encoded_{n}"], f"encoded N={n}")
    assert_output_close(dec, ref["a/out/decoded"], "decoded")


def test_non_causal_odd_strides_identity_skip_reference():
    ref = np.load(ASSETS / "encodec_tiny_ref.npz")
    meta = json.loads(str(ref["meta/config"]))["b"]["SEANet"]
    params = {k[len("b/param/") :]: ref[k] for k in ref.files if k.startswith("b/param/")}
    codec = encodec_from_state_dict(params, causal=meta["causal"], pad_mode=meta["pad_mode"], source="b/param")
    assert codec.config.ratios == tuple(meta["ratios"]) and codec.config.true_skip == meta["true_skip"]
    lengths, audios = _asset_groups(ref, "b")
    encoded, dec, _, grad = _run_codec(codec, audios, ref["b/in/latent"], ref["b/in/R"], checks=("grad",))
    for n, enc in zip(lengths, encoded):
        assert_output_close(enc, ref[f"b/out/encoded_{n}"], f"encoded N={n}")
    assert_output_close(dec, ref["b/out/decoded"], "decoded")
    assert_grad_close(grad, ref["b/grad/latent"], "grad/latent")


def test_weights_are_frozen_and_grad_flows_after_split_merge():
    codec = random_encodec(3, n_filters=2, dimension=8, ratios=(4,), lstm=1)
    assert not jax.tree_util.tree_leaves(nnx.state(codec, nnx.Param))
    graphdef, frozen = nnx.split(codec, FrozenWeight)
    assert jax.tree_util.tree_leaves(frozen)
    z = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 5)), jnp.float32)
    r = jnp.asarray(np.random.default_rng(1).standard_normal((2, 1, 5 * codec.hop_length)), jnp.float32)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def value_and_grad(frozen, z):
        return jax.value_and_grad(lambda z: jnp.sum(nnx.merge(graphdef, frozen).decode(z) * r))(z)

    value, g = value_and_grad(frozen, z)
    assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g) != 0)
    eager = jax.grad(lambda z: jnp.sum(codec.decode(z) * r))(z)  # no jit anywhere: the same numbers
    # jit fuses the convolutions and the LSTM and may reorder their sums: a few eps a layer
    np.testing.assert_allclose(np.asarray(g), np.asarray(eager), rtol=1e-5, atol=1e-6 * float(np.abs(eager).max()))


def test_decode_pair_is_two_decodes_with_one_lstm_call():
    """The raw-clip step decodes its output and the input reference together: the same audio
    as two decodes, the gradient only through the first, and the LSTM traced once for both."""
    from jaxaudio.codecs.base import decode_pair
    from jaxaudio.codecs.encodec import lstm as lstm_mod

    codec = random_encodec(3, n_filters=2, dimension=8, ratios=(4, 2), lstm=2)
    rng = np.random.default_rng(0)
    z, z_ref = (jnp.asarray(rng.standard_normal((2, 8, 6)), jnp.float32) for _ in range(2))
    r, r_ref = (jnp.asarray(rng.standard_normal((2, 1, 6 * codec.hop_length)), jnp.float32)
                for _ in range(2))

    def both(z, z_ref):
        y, y_ref = decode_pair(codec, z, z_ref)
        return jnp.sum(y * r) + jnp.sum(y_ref * r_ref), (y, y_ref)

    calls = []
    real_scan = lstm_mod.lstm_scan
    lstm_mod.lstm_scan = lambda x, *a, **k: (calls.append(x.shape), real_scan(x, *a, **k))[1]
    try:
        (_, (y, y_ref)), (g, g_ref) = jax.jit(jax.value_and_grad(both, (0, 1), has_aux=True),
                                              compiler_options=FAST_COMPILE)(z, z_ref)
    finally:
        lstm_mod.lstm_scan = real_scan
    assert [shape[1] for shape in calls] == [4]  # one LSTM call, both batches of 2
    dec = jax.jit(codec.decode, compiler_options=FAST_COMPILE)
    # one LSTM call over 2B rows vs B: other blockings of the same float32 sums
    np.testing.assert_allclose(y, dec(z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y_ref, dec(z_ref), rtol=1e-5, atol=1e-6)
    want = jax.grad(lambda z: jnp.sum(codec.decode(z) * r))(z)
    np.testing.assert_allclose(g, want, rtol=1e-5, atol=1e-6 * float(np.abs(want).max()))
    assert not np.any(np.asarray(g_ref))  # the reference carries no gradient
    with pytest.raises(ValueError, match="reference"):
        codec.decode_pair(z, z_ref[:, :4])


def test_lstm_scan_equals_jax_lstm_ref():
    rng = np.random.default_rng(0)
    h, t, b = 6, 7, 3
    for layers_n in (1, 3):  # (2 layers: the fixtures)
        shapes = ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,))
        layers = [tuple(jnp.asarray(rng.uniform(-0.5, 0.5, s), jnp.float32) for s in shapes) for _ in range(layers_n)]
        x = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)
        w_ih, w_hh, b_ih, b_hh = ({i: layer[j] for i, layer in enumerate(layers)} for j in range(4))
        zeros = jnp.zeros((layers_n, b, h))
        seq = jnp.full((b,), t, jnp.int32)
        want, _, _ = rnn.lstm_ref(
            jnp.swapaxes(x, 0, 1), zeros, zeros, w_ih, w_hh, b_ih, b_hh, seq, h, h, layers_n, 0.0, False
        )
        got = jax.jit(lambda x: lstm_scan(x, layers, "highest"), compiler_options=FAST_COMPILE)(x)
        # the same LSTM coded twice (scan vs lstm_ref): round-off of 6-term products on |h| < 1,
        # over 7 steps
        np.testing.assert_allclose(
            np.asarray(got), np.asarray(jnp.swapaxes(want, 0, 1)), atol=2e-6, err_msg=f"{layers_n} layers"
        )


def test_full_size_shapes_and_rates():
    config = EncodecConfig()  # the published 24 kHz model
    graphdef, state = nnx.split(abstract_codec(config))
    codec = nnx.merge(graphdef, state)
    assert (codec.dim, codec.hop_length, codec.frame_rate) == (128, 320, 75.0)
    n = 24000 + 1

    def shape_of(method, shape):
        fn = lambda s, a: getattr(nnx.merge(graphdef, s), method)(a)  # noqa: E731
        return jax.eval_shape(fn, state, jax.ShapeDtypeStruct(shape, jnp.float32)).shape

    assert shape_of("encode", (2, 1, n)) == (2, 128, -(-n // 320))
    assert shape_of("decode", (2, 128, 75)) == (2, 1, 75 * 320)


def test_random_codec_is_seeded_and_identity_tracks_weights():
    kw = dict(n_filters=2, dimension=8, ratios=(2,), lstm=1)
    a, b, c = random_encodec(0, **kw), random_encodec(0, **kw), random_encodec(1, **kw)
    assert isinstance(a, EncodecCodec) and a.identity() == b.identity() != c.identity()
    assert random_encodec(0, **(kw | {"causal": False})).identity() != a.identity()
    with pytest.raises(ValueError, match=r"\[B, 1, N\]"):
        a.encode(jnp.zeros((1, 2, 10)))
