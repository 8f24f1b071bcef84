"""The Pallas flash attention (``jaxaudio.nn.flash_attention``) in Pallas's interpreter on the
CPU: forward and gradients against the explicit route with the same dropout masks, the masks'
statistics, and the per-device run under a ``data`` mesh. The GPU compiles the same kernels
(``experiments/bench_kernels.py`` checks them there)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxaudio.nn import attention as att
from jaxaudio.nn import flash_attention as flash


def _qkv(shape_q, shape_kv, seed=0):
    ks = jax.random.split(jax.random.key(seed), 4)
    q = jax.random.normal(ks[0], shape_q)
    k, v = (jax.random.normal(ks[i], shape_kv) for i in (1, 2))
    return q, k, v, jax.random.normal(ks[3], shape_q)


def _explicit(q, k, v, rate, key):
    """The explicit route (softmax, dropout with the flash masks, @ v), not rematerialised."""
    probs = att.attention_weights(q, k)
    if rate > 0:
        probs = att._dropout(probs, rate, key)
    return jnp.einsum("bhqk,bkhd->bqhd", probs, v)


@pytest.fixture
def built(monkeypatch):
    """A list that records every kernel built (passes through ``flash_kernels._call``) as
    ``{"name", "grid", "warps", "stages", "out_shapes"}``."""
    log = []
    real_call = flash.kernels._call

    def spy(kernel, grid, in_specs, out_specs, out_shape, interpret, name, warps, stages):
        log.append(dict(name=name, grid=grid, warps=warps, stages=stages,
                        out_shapes=[tuple(o.shape) for o in out_shape]))
        return real_call(kernel, grid, in_specs, out_specs, out_shape, interpret, name, warps,
                         stages)

    monkeypatch.setattr(flash.kernels, "_call", spy)
    return log


@pytest.mark.parametrize("rate", [0.0, 0.3])
@pytest.mark.parametrize("tq,tk,heads,d", [(100, 100, 2, 16), (70, 130, 1, 32), (100, 64, 1, 16),
                                           (90, 90, 2, 48), (40, 70, 1, 12)])
def test_flash_matches_the_explicit_route_with_the_same_masks(rate, tq, tk, heads, d):
    # frames not a multiple of the 64-frame tile; cross attention with more keys than queries,
    # and with fewer (a whole tile of padded keys); head widths the kernel zero-pads (48 -> 64,
    # the cascade's second stage; 12 -> 16), whose scale must stay 1/sqrt(d)
    q, k, v, g = _qkv((2, tq, heads, d), (2, tk, heads, d))
    key = jax.random.key(7)
    with jax.default_matmul_precision("highest"):
        def loss(fn):
            return lambda q, k, v: jnp.sum(fn(q, k, v) * g)
        fl = lambda q, k, v: flash.flash_attention(q, k, v, rate=rate, key=key, interpret=True)
        ex = lambda q, k, v: _explicit(q, k, v, rate, key)
        out, ref = jax.jit(fl)(q, k, v), jax.jit(ex)(q, k, v)
        grads = jax.jit(jax.grad(loss(fl), (0, 1, 2)))(q, k, v)
        ref_grads = jax.jit(jax.grad(loss(ex), (0, 1, 2)))(q, k, v)
    chex.assert_shape(out, (2, tq, heads, d))
    # online softmax over key tiles rescales partial sums: a few ulps of O(1) values (~1e-6 on
    # the CPU); the gradients' second tiled reduction gets 5e-5
    np.testing.assert_allclose(out, ref, rtol=2e-5, atol=2e-5)
    for a, b in zip(grads, ref_grads):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=5e-5)
    if rate > 0:  # the masks did act: dropout moves the output
        assert float(jnp.max(jnp.abs(out - _explicit(q, k, v, 0.0, key)))) > 0.1


@pytest.mark.parametrize("fwd,bwd", [((32, 4, 2), (128, 4, 1)), ((128, 8, 3), (16, 2, 2))])
def test_each_pass_takes_its_own_tiles(monkeypatch, built, fwd, bwd):
    """Forward and backward with different blocks (frames padded to both), from the table of
    tiles: the same output and gradients as the explicit route, and the tiles the kernels were
    built with are the table's."""
    monkeypatch.setitem(flash.TILES, ("fwd", 32), fwd)
    monkeypatch.setitem(flash.TILES, ("bwd", 32), bwd)
    assert flash.tiles(32, "fwd") == fwd and flash.tiles(32, "bwd") == bwd
    assert flash.tiles(64, "bwd") == flash.DEFAULT_TILES
    with pytest.raises(ValueError, match="kind"):
        flash.tiles(64, "backward")
    q, k, v, g = _qkv((2, 100, 1, 32), (2, 100, 1, 32), seed=3)
    key = jax.random.key(5)
    fl = lambda q, k, v: flash.flash_attention(q, k, v, rate=0.3, key=key, interpret=True)
    ex = lambda q, k, v: _explicit(q, k, v, 0.3, key)
    with jax.default_matmul_precision("highest"):
        grads = jax.jit(jax.grad(lambda *a: jnp.sum(fl(*a) * g), (0, 1, 2)))(q, k, v)
        ref = jax.jit(jax.grad(lambda *a: jnp.sum(ex(*a) * g), (0, 1, 2)))(q, k, v)
        # tiled online softmax vs one softmax, as in the test above
        np.testing.assert_allclose(jax.jit(fl)(q, k, v), jax.jit(ex)(q, k, v), rtol=2e-5,
                                   atol=2e-5)
    for a, b in zip(grads, ref):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=5e-5)
    t = max(fwd[0], bwd[0])  # 100 frames padded to a multiple of both blocks
    kernels = {b["name"]: (b["grid"], b["warps"], b["stages"]) for b in built}
    assert kernels["flash_attention_fwd"] == ((t // fwd[0], 2, 1), *fwd[1:])
    assert kernels["flash_attention_bwd"] == ((2, 1, t // bwd[0]), *bwd[1:])


def test_head_chunks():
    assert flash.head_chunks(48) == (32, 16)  # the cascade's second stage
    assert flash.head_chunks(32) == (32,)
    assert flash.head_chunks(12) == (16,)
    assert flash.head_chunks(96) == (64, 32)  # the musical recipe's second stage
    assert flash.head_chunks(100) == (64, 32, 16)  # 112 = 64 + 32 + 16
    with pytest.raises(ValueError, match="head width 128 must be in"):
        q = jnp.zeros((1, 8, 1, 128))
        flash.flash_attention(q, q, q, interpret=True)


def test_dq_partials_for_narrow_chunks_and_short_sequences_only(monkeypatch, built):
    assert flash.dq_form((32,), 19) == "partials"  # 1200 frames in 64-frame blocks
    assert flash.dq_form((32, 16), 19) == "partials"  # the cascade's second stage, split
    assert flash.dq_form((64,), 19) == "recompute"  # the masking agent's heads
    # long sequences recompute: the partials' buffer grows with the square of the frames
    assert flash.dq_form((32,), flash.PARTIALS_MAX_SLOTS) == "partials"
    assert flash.dq_form((32,), flash.PARTIALS_MAX_SLOTS + 1) == "recompute"
    # flash_attention counts the slots it runs: 16-frame blocks, 512 and 528 frames (traced
    # only) give a dQ buffer of 32 slots, then the recomputing form's plain dQ
    monkeypatch.setitem(flash.TILES, ("fwd", 16), (16, 1, 1))
    monkeypatch.setitem(flash.TILES, ("bwd", 16), (16, 1, 1))
    for frames in (512, 528):
        q = jnp.zeros((1, frames, 1, 16))
        jax.eval_shape(jax.grad(lambda q: jnp.sum(flash.flash_attention(q, q, q, interpret=True))),
                       q)
    dq_shapes = [b["out_shapes"][0] for b in built if b["name"] == "flash_attention_bwd"]
    assert dq_shapes == [(32, 1, 512, 1, 16), (1, 528, 1, 16)]


@pytest.mark.parametrize("dq_form", ["partials", "recompute"])
def test_both_dq_forms_match_the_explicit_route(monkeypatch, built, dq_form):
    """Each dQ form at widths 48 (run as 32 + 16) and 32 with dropout: the explicit route's
    output and gradients, and the kernels take the chunks and the dQ buffer the form names.
    Which form a width takes is dq_form's rule; here the rule's width limit is moved so that
    both forms run at both widths."""
    monkeypatch.setattr(flash, "PARTIALS_MAX_CHUNK", 64 if dq_form == "partials" else 0)
    key = jax.random.key(11)
    for d in (48, 32):
        built.clear()
        q, k, v, g = _qkv((2, 90, 2, d), (2, 90, 2, d), seed=d)
        fl = lambda q, k, v: flash.flash_attention(q, k, v, rate=0.3, key=key, interpret=True)
        ex = lambda q, k, v: _explicit(q, k, v, 0.3, key)
        with jax.default_matmul_precision("highest"):
            out, grads = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(fl(*a) * g), (0, 1, 2)))(
                q, k, v)
            ref, ref_grads = jax.jit(jax.value_and_grad(lambda *a: jnp.sum(ex(*a) * g),
                                                        (0, 1, 2)))(q, k, v)
        # the loss sums the tiled outputs: round-off as in the first test
        np.testing.assert_allclose(out, ref, rtol=2e-5)
        for a, b in zip(grads, ref_grads):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=5e-5)
        chunks = flash.head_chunks(d)
        shapes = {b["name"]: b["out_shapes"] for b in built}
        fwd_shapes, bwd_shapes = shapes["flash_attention_fwd"], shapes["flash_attention_bwd"]
        assert [s[-1] for s in fwd_shapes[:-1]] == list(chunks)  # one output per chunk
        dq_shapes = bwd_shapes[:len(chunks)]
        slots = 128 // 64  # 90 frames padded to 128: two key blocks of 64
        expect = [((slots, 2, 128, 2, w) if dq_form == "partials" else (2, 128, 2, w))
                  for w in chunks]
        assert dq_shapes == expect


def test_the_rematerialised_training_route_draws_the_same_masks():
    q, k, v, g = _qkv((2, 40, 2, 16), (2, 40, 2, 16), seed=1)
    key = jax.random.key(3)
    with jax.default_matmul_precision("highest"):
        remat = jax.jit(jax.value_and_grad(
            lambda v: jnp.sum(att._attend_with_dropout(q, k, v, 0.2, key) * g)))(v)
        fl = jax.jit(jax.value_and_grad(lambda v: jnp.sum(
            flash.flash_attention(q, k, v, rate=0.2, key=key, interpret=True) * g)))(v)
    # the same masks; the kernel's tiled online softmax rounds as in the first test
    chex.assert_trees_all_close(remat, fl, rtol=2e-5, atol=2e-5)


def test_dropout_masks_keep_the_rate_and_are_independent():
    rate = 0.1
    keep = np.asarray(flash.dropout_keep(jax.random.key(0), (4, 8, 512, 512), rate))
    n = keep.size
    # the keep rate within 5 standard deviations of 1 - rate
    assert abs(keep.mean() - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)
    # neighbours along keys, along queries and across heads are independent: P(both kept)
    p2 = (1 - rate) ** 2
    tol = 5 * np.sqrt(p2 * (1 - p2) / (n // 2))
    for a, b in ((keep[..., 1:], keep[..., :-1]), (keep[..., 1:, :], keep[..., :-1, :]),
                 (keep[:, 1:], keep[:, :-1])):
        assert abs(np.mean(a & b) - p2) < tol
    # per-row keep counts spread like a binomial (no row or column structure)
    rows = keep.sum(-1).ravel()
    # the std of 16384 row counts errs by ~1/sqrt(2 * 16384) = 0.6% by chance: 0.1 is 16 sigma
    assert abs(rows.std() / np.sqrt(512 * rate * (1 - rate)) - 1) < 0.1
    other = np.asarray(flash.dropout_keep(jax.random.key(1), (4, 8, 512, 512), rate))
    assert abs(np.mean(keep & other) - p2) < tol  # another key, another mask
    np.testing.assert_array_equal(
        keep, np.asarray(flash.dropout_keep(jax.random.key(0), (4, 8, 512, 512), rate)))


def test_flash_runs_per_device_under_a_data_mesh():
    assert len(jax.devices()) >= 4, "conftest configures 4 fake CPU devices"
    mesh = Mesh(np.asarray(jax.devices()[:4]), ("data",))
    q, k, v, g = _qkv((4, 50, 2, 16), (4, 50, 2, 16), seed=2)
    key = jax.random.key(5)

    def loss(q, k, v):
        return jnp.sum(flash.flash_attention(q, k, v, rate=0.1, key=key, interpret=True) * g)

    with jax.default_matmul_precision("highest"):
        one = jax.jit(jax.value_and_grad(loss, (0, 1, 2)))(q, k, v)
        sharding = NamedSharding(mesh, P("data"))

        def sharded(q, k, v):
            with flash.batch_sharded(mesh):
                return jax.value_and_grad(loss, (0, 1, 2))(q, k, v)

        fn = jax.jit(sharded, in_shardings=(sharding,) * 3)
        four = fn(*(jax.device_put(a, sharding) for a in (q, k, v)))
        text = fn.lower(q, k, v).as_text()
    assert "shard_map" in text or "sdy.manual_computation" in text  # the kernels run per device
    # Each device draws its rows' masks from the same row keys: the result is the same.
    # each row runs the same kernels on any device; only the loss's sum over the 4 shards is
    # reduced in another order
    chex.assert_trees_all_close(four, one, rtol=1e-5, atol=1e-5)


def test_flash_rejects_bad_arguments():
    q, k, v, _ = _qkv((1, 8, 1, 16), (1, 8, 1, 16))
    wide = jnp.zeros((1, 8, 1, 264))
    with pytest.raises(ValueError, match="head width 264"):
        flash.flash_attention(wide, wide, wide, interpret=True)
    with pytest.raises(ValueError, match="dropout key"):
        flash.flash_attention(q, k, v, rate=0.1, interpret=True)
    with pytest.raises(ValueError, match=r"k \(1, 8, 1, 16\), v \(1, 9, 1, 16\)"):
        flash.flash_attention(q, k, jnp.zeros((1, 9, 1, 16)), interpret=True)


def test_the_module_takes_the_kernel_on_a_gpu_and_draws_the_explicit_routes_masks(monkeypatch):
    """``MultiheadAttention`` in training: the route a CUDA GPU would take for float32 (the
    kernel, here in the interpreter) gives the explicit route's output and gradients, dropout
    included, from the same ``rngs``."""
    import functools

    from flax import nnx

    from jaxaudio.nn import MultiheadAttention

    monkeypatch.setattr(att, "cudnn_attention_available", lambda: True)
    monkeypatch.setattr(att, "cudnn_command_buffers_off", lambda: True)
    assert att.attention_impl(jnp.float32, head_dim=16) == "pallas"
    # widths the kernel runs as chunks take it too (measured faster on an H200)
    assert att.attention_impl(jnp.float32, head_dim=48) == "pallas"
    assert att.attention_impl(jnp.float32, head_dim=96) == "pallas"
    # wider than any width run on a GPU: 256 asked an H100 for more shared memory than it has
    assert att.attention_impl(jnp.float32, head_dim=128) == "xla"
    assert att.attention_impl(jnp.float32, head_dim=256) == "xla"
    assert att.attention_impl(jnp.bfloat16, head_dim=16) == "cudnn"
    monkeypatch.setattr(flash, "flash_attention",
                        functools.partial(flash.flash_attention, interpret=True))
    mha = MultiheadAttention(32, 2, dropout=0.2, batch_first=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(4), (2, 50, 32))

    def run():
        def loss(x):
            out, _ = mha(x, x, x, train=True, rngs=nnx.Rngs(dropout=jax.random.key(9)))
            return jnp.sum(out ** 2)
        with jax.default_matmul_precision("highest"):
            return jax.jit(jax.value_and_grad(loss))(x)

    kernel = run()
    monkeypatch.setattr(att, "cudnn_attention_available", lambda: False)
    explicit = run()
    # the kernel's tiled online softmax vs the explicit one: round-off as in the first test
    chex.assert_trees_all_close(kernel, explicit, rtol=2e-5, atol=2e-5)
