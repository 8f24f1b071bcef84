"""EnCodec's LSTM with float16 operands for its recurrent products (the GPU's default at TF32),
on the CPU where the tests force them: their arithmetic against the float32 scan, the
backward's cotangent scaling, the choice by device and precision, the weights' range check,
and parity on the EnCodec fixture."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio.codecs.encodec import encodec_from_state_dict
from jaxaudio.codecs.encodec import lstm_scan as scan_module
from jaxaudio.codecs.encodec.lstm import (F16_MAX, SLSTM, lstm_scan, recurrent_products,
                                          scan_unroll)
from tests.fixtures import assert_grad_close, assert_output_close, load_fixture
from tests.jaxprs import eqns


def _layers(rng, n_layers, h, scale=0.3, h_in=None):
    return [tuple(jnp.asarray(scale * rng.standard_normal(s), jnp.float32)
                  for s in ((4 * h, (h_in or h) if l == 0 else h), (4 * h, h), (4 * h,), (4 * h,)))
            for l in range(n_layers)]


def _rel(a, b):
    return float(jnp.linalg.norm(jnp.ravel(a - b)) / jnp.linalg.norm(jnp.ravel(b)))


def _dot_operand_dtypes(fn, *args):
    """The operand dtypes of every dot_general in ``fn``'s jaxpr, nested bodies included."""
    return {tuple(str(v.aval.dtype) for v in e.invars)
            for e in eqns(jax.make_jaxpr(fn)(*args).jaxpr) if e.primitive.name == "dot_general"}


@pytest.mark.parametrize("scale", [1e-9, 1.0, 1e6])
def test_float16_products_are_float32_products_to_tf32_round_off(scale):
    """float16 operands keep TF32's 10 mantissa bits: forward and every gradient (input, weights,
    biases) within 1e-3 of the float32 scan, whatever the cotangents' scale. Without the
    backward's scaling, cotangents of 1e-9 underflow in float16 (the input's gradient is off by
    100 %) and 1e6 ones overflow (NaN)."""
    rng = np.random.default_rng(0)
    layers = _layers(rng, 2, 32, 0.15, h_in=24)
    x = jnp.asarray(rng.standard_normal((40, 3, 24)), jnp.float32)
    ct = jnp.asarray(scale * rng.standard_normal((40, 3, 32)), jnp.float32)

    def run(products):
        def loss(x, ls):
            y = lstm_scan(x, ls, "highest", 4, products=products)
            return jnp.sum(y * ct), y
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, layers)

    ((_, y16), g16), ((_, y32), g32) = run("float16"), run("float32")
    assert _rel(y16, y32) < 1e-3
    for a, b in zip(jax.tree.leaves(g16), jax.tree.leaves(g32)):
        assert a.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(a)))
        assert _rel(a, b) < 1e-3, _rel(a, b)
    # float16 really is what the recurrent products take (and float32 the input projection's)
    dtypes = _dot_operand_dtypes(lambda x: lstm_scan(x, layers, None, 4, products="float16"), x)
    assert ("float16", "float16") in dtypes and ("float32", "float32") in dtypes


def test_float16_backward_scales_each_clip_on_its_own():
    """Clips whose cotangents differ by 1e15 in one batch: each keeps its gradient, since each
    is scaled by its own power of two (one scale for the batch underflows the quiet clip's)."""
    rng = np.random.default_rng(4)
    layers = _layers(rng, 2, 16, 0.2)
    x = jnp.asarray(rng.standard_normal((20, 2, 16)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((20, 2, 16)), jnp.float32) * jnp.asarray([1e-9, 1e6])[:, None]

    def run(products):
        return jax.vjp(lambda x: lstm_scan(x, layers, "highest", 4, products=products), x)[1](ct)[0]

    g16, g32 = run("float16"), run("float32")
    for b in range(2):
        # float16 operands keep 11 significant bits (2^-11 a rounding): the first test's 1e-3
        assert _rel(g16[:, b], g32[:, b]) < 1e-3, (b, _rel(g16[:, b], g32[:, b]))


def test_float16_backward_needs_no_collective_on_a_sharded_batch():
    """The input's gradient under a 4-device mesh, batch sharded: the scaling adds no reduction
    across devices (a scale over the whole batch would be an all-reduce)."""
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = jax.make_mesh((4,), ("data",))
    rng = np.random.default_rng(5)
    layers = _layers(rng, 2, 8)
    x, ct = (jnp.asarray(rng.standard_normal((10, 8, 8)), jnp.float32) for _ in range(2))

    def dx(x, ct, layers):
        return jax.vjp(lambda x: lstm_scan(x, layers, None, 2, products="float16"), x)[1](ct)[0]

    batch = NamedSharding(mesh, PartitionSpec(None, "data", None))
    f = jax.jit(dx, in_shardings=(batch, batch, NamedSharding(mesh, PartitionSpec())),
                out_shardings=batch)
    hlo = f.lower(x, ct, layers).compile().as_text()
    assert "all-reduce" not in hlo and "all-gather" not in hlo
    # each clip's scaling and recurrence stay on its device (no sum across devices): at most
    # another code generation's round-off
    np.testing.assert_allclose(f(x, ct, layers), jax.jit(dx)(x, ct, layers), rtol=1e-6, atol=1e-7)


def test_float16_backward_on_zero_cotangents_is_zero():
    rng = np.random.default_rng(1)
    layers = _layers(rng, 2, 8)
    x = jnp.asarray(rng.standard_normal((9, 2, 8)), jnp.float32)
    g = jax.grad(lambda x: jnp.sum(lstm_scan(x, layers, None, 4, products="float16") * 0.0))(x)
    assert bool(jnp.all(g == 0.0))


def _force_float16(monkeypatch):
    """What a GPU at TF32 chooses, on the CPU: float16 operands for the recurrent products."""
    monkeypatch.setattr(scan_module, "recurrent_products", lambda precision=None: "float16")


def test_products_choice_by_device_and_precision(monkeypatch):
    """float32 on the CPU; on a GPU float16 exactly where float32 products run at TF32; the
    choice reaches the scan; a bad explicit form is refused."""
    assert recurrent_products() == recurrent_products("highest") == "float32"  # CPU
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert recurrent_products() == recurrent_products("default") == "float16"
    assert recurrent_products(jax.lax.Precision.DEFAULT) == "float16"
    assert recurrent_products("tensorfloat32") == "float16"
    for full in ("highest", "float32", "high", jax.lax.Precision.HIGHEST):
        assert recurrent_products(full) == "float32"
    with jax.default_matmul_precision("highest"):
        assert recurrent_products() == "float32"
    assert scan_unroll("float16") == 16 and scan_unroll("float32") == 8
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    rng = np.random.default_rng(2)
    layers = _layers(rng, 2, 8)
    x = jnp.asarray(rng.standard_normal((5, 2, 8)), jnp.float32)
    assert ("float16", "float16") not in _dot_operand_dtypes(
        lambda x: lstm_scan(x, layers, None, 2), x)
    _force_float16(monkeypatch)
    assert ("float16", "float16") in _dot_operand_dtypes(lambda x: lstm_scan(x, layers, None, 2), x)
    with pytest.raises(ValueError, match="products must be one of"):
        lstm_scan(x, layers, None, 2, products="half")


def test_slstm_keeps_float32_products_for_weights_outside_float16(monkeypatch):
    _force_float16(monkeypatch)
    lstm = SLSTM(8, rngs=nnx.Rngs(0))
    x = jnp.ones((2, 5, 8), jnp.float32)
    assert lstm.float16_range and lstm.check_float16_range()
    assert ("float16", "float16") in _dot_operand_dtypes(lambda x: lstm(x), x)
    lstm.weight_hh_l1[...] = lstm.weight_hh_l1[...].at[0, 0].set(2 * F16_MAX)
    assert not lstm.check_float16_range()
    assert ("float16", "float16") not in _dot_operand_dtypes(lambda x: lstm(x), x)
    assert bool(jnp.all(jnp.isfinite(lstm(x))))


def test_fixture_decode_with_float16_products(monkeypatch):
    """The EnCodec fixture (the encodec package's decoder, float64 references) decoded with
    float16 recurrent products meets the fixtures' own tolerances, audio and the latent's
    gradient (measured: 8.0e-7 and 9.6e-6 relative, against 7.7e-7 and 5.2e-7 with float32
    products)."""
    fx = load_fixture("encodec_seanet")
    codec = encodec_from_state_dict(fx.group("param"), source="encodec_seanet.npz")
    lstms = [m for _, m in nnx.iter_graph(codec) if isinstance(m, SLSTM)]
    assert lstms and all(m.float16_range for m in lstms)  # set from the loaded weights
    _force_float16(monkeypatch)
    z, r = jnp.asarray(fx["in/latent"]), jnp.asarray(fx["in/R"])
    dec = jax.jit(lambda z: codec.decode(z))(z)
    assert_output_close(dec, fx["out/decoded_latent"], "decoded_latent (float16 products)")
    grad = jax.jit(jax.grad(lambda z: jnp.sum(codec.decode(z) * r)))(z)
    assert_grad_close(grad, fx["grad/latent"], "grad/latent (float16 products)")
    assert ("float16", "float16") in _dot_operand_dtypes(lambda z: codec.decode(z), z)
