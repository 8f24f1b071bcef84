"""The performance switches on the CPU, where they fall back: attention route selection, the
LSTM scan's unroll, and the run's compilation cache / GPU flags helper."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio import runtime
from jaxaudio.codecs.encodec.lstm import GRAD_ENV, UNROLL_ENV, lstm_grad_mode, lstm_scan, scan_unroll
from jaxaudio.nn import MultiheadAttention
from jaxaudio.nn.attention import ATTENTION_ENV, attention_impl, cudnn_command_buffers_off


def test_attention_falls_back_to_the_float32_route_on_cpu(monkeypatch):
    monkeypatch.delenv(ATTENTION_ENV, raising=False)
    assert attention_impl(jnp.bfloat16, head_dim=16) == "xla"
    assert attention_impl(jnp.float32, head_dim=16) == "xla"
    # The bf16 module output on the CPU is the explicit route's, whatever the variable says.
    mha = MultiheadAttention(16, 2, dropout=0.0, batch_first=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    ref, _ = mha(x, x, x)
    monkeypatch.setenv(ATTENTION_ENV, "xla")
    chex.assert_trees_all_close(mha(x, x, x)[0], ref, atol=0, rtol=0)


def test_attention_env_is_checked(monkeypatch):
    monkeypatch.setenv(ATTENTION_ENV, "flash2")
    with pytest.raises(ValueError, match=ATTENTION_ENV):
        attention_impl(jnp.bfloat16, head_dim=16)
    for impl in ("cudnn", "pallas"):
        monkeypatch.setenv(ATTENTION_ENV, impl)
        with pytest.raises(ValueError, match=f"{ATTENTION_ENV}={impl} needs a CUDA GPU"):
            attention_impl(jnp.float32, head_dim=16)
    # need_weights always takes the explicit route (the weights must be materialised).
    assert attention_impl(jnp.bfloat16, head_dim=16, need_weights=True) == "xla"


def test_cudnn_command_buffer_flag_parsing():
    assert cudnn_command_buffers_off(runtime.GPU_COMMAND_BUFFER_FLAG)
    assert cudnn_command_buffers_off("--xla_gpu_enable_command_buffer=")
    assert not cudnn_command_buffers_off("")
    assert not cudnn_command_buffers_off("--xla_gpu_enable_command_buffer=FUSION,CUDNN")
    # the last occurrence wins, as in XLA's flag parsing
    assert not cudnn_command_buffers_off(runtime.GPU_COMMAND_BUFFER_FLAG
                                         + " --xla_gpu_enable_command_buffer=CUDNN")


def test_lstm_unroll_matches_the_rolled_scan(monkeypatch):
    monkeypatch.delenv(UNROLL_ENV, raising=False)
    assert scan_unroll() == 1  # CPU
    rng = np.random.default_rng(0)
    h = 8
    layers = [tuple(jnp.asarray(0.3 * rng.standard_normal(s), jnp.float32)
                    for s in ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,))) for _ in range(2)]
    x = jnp.asarray(rng.standard_normal((21, 3, h)), jnp.float32)  # 22 steps: 8 does not divide
    rolled = lstm_scan(x, layers, "highest", 1)
    for unroll in (8, 64):
        chex.assert_trees_all_close(lstm_scan(x, layers, "highest", unroll), rolled, atol=1e-6)
    g = jax.grad(lambda x, u: jnp.sum(lstm_scan(x, layers, "highest", u) ** 2))
    chex.assert_trees_all_close(g(x, 8), g(x, 1), atol=1e-5)
    monkeypatch.setenv(UNROLL_ENV, "4")
    assert scan_unroll() == 4
    monkeypatch.setenv(UNROLL_ENV, "0")
    with pytest.raises(ValueError, match=UNROLL_ENV):
        scan_unroll()


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_lstm_recomputed_gradient_equals_autodiff(monkeypatch, n_layers):
    """The scan's custom gradient (states kept, gates recomputed in one product, the reverse
    recurrence as a scan) against JAX's autodiff of the same scan: for the input and for every
    weight and bias, with idle wavefront steps (layers > 1) and an unroll that does not divide
    the steps. Also its memory: less XLA temporary space than autodiff at the codec's size."""
    monkeypatch.delenv(GRAD_ENV, raising=False)
    assert lstm_grad_mode() == "recompute"
    rng = np.random.default_rng(n_layers)
    h, t, b = 8, 13, 3
    layers = [tuple(jnp.asarray(0.4 * rng.standard_normal(s), jnp.float32)
                    for s in ((4 * h, 5 if l == 0 else h), (4 * h, h), (4 * h,), (4 * h,)))
              for l in range(n_layers)]
    x = jnp.asarray(rng.standard_normal((t, b, 5)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)

    def grads(mode):
        loss = lambda x, ls: jnp.sum(lstm_scan(x, ls, "highest", 4, mode) * ct)
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, layers)

    (v_r, g_r), (v_a, g_a) = grads("recompute"), grads("autodiff")
    # the same forward (kept states change XLA's fusion: float32 round-off apart)
    chex.assert_trees_all_close(v_r, v_a, rtol=1e-6)
    chex.assert_trees_all_close(g_r, g_a, rtol=1e-5, atol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(g_r))
    monkeypatch.setenv(GRAD_ENV, "bogus")
    with pytest.raises(ValueError, match=GRAD_ENV):
        lstm_grad_mode()


def test_lstm_recomputed_gradient_needs_less_memory():
    """At EnCodec's LSTM size (two layers of 512, 1200 frames, batch 8; weights frozen, the
    input's gradient only), XLA's buffer assignment for forward+backward needs at least 150 MiB
    less temporary space with the recomputed gradient than with autodiff at unroll 8 (on the
    CPU, 642 against 922 MiB; on an H200 the train step's peak fell by 0.30 GiB)."""
    h, t, b = 512, 1200, 8
    layers = [tuple(jnp.zeros(s, jnp.float32) for s in ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,)))] * 2
    x = jax.ShapeDtypeStruct((t, b, h), jnp.float32)

    def temp_mib(mode):
        f = jax.jit(jax.grad(lambda x: jnp.sum(lstm_scan(x, layers, None, 8, mode))))
        return f.lower(x).compile().memory_analysis().temp_size_in_bytes / 2**20

    assert temp_mib("autodiff") - temp_mib("recompute") > 150


@pytest.fixture
def restore_cache_dir():
    before = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_compilation_cache_under_run_dir_and_off_switch(tmp_path, monkeypatch, restore_cache_dir):
    monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
    folder = runtime.enable_compilation_cache(tmp_path / "run")
    assert folder == tmp_path / "run" / runtime.CACHE_SUBDIR
    # Not made yet: JAX makes it at the first compile, so a run refused for a bad flag leaves
    # no folder behind.
    assert not (tmp_path / "run").exists()
    assert jax.config.jax_compilation_cache_dir == str(folder)
    shared = tmp_path / "shared"
    monkeypatch.setenv(runtime.CACHE_ENV, str(shared))
    assert runtime.enable_compilation_cache(tmp_path / "run") == shared
    monkeypatch.setenv(runtime.CACHE_ENV, "off")
    jax.config.update("jax_compilation_cache_dir", None)
    assert runtime.enable_compilation_cache(tmp_path / "run") is None
    assert jax.config.jax_compilation_cache_dir is None


def test_gpu_flags_are_not_touched_once_a_backend_runs(monkeypatch):
    jax.devices()  # the CPU backend has started in this process
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/nonexistent")
    assert runtime.configure_gpu_flags() is False
    assert "command_buffer" not in runtime.os.environ["XLA_FLAGS"]
