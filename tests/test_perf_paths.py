"""The fast paths against their references on the CPU: attention route selection, the LSTM
scan's unroll, recomputed gradient and step barrier, the codec's convolutions without padded
copies, and the run's compilation cache / GPU flags helper."""

import itertools

import chex
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxaudio import runtime
from jaxaudio.codecs.encodec.conv import SConv1d, SConvTranspose1d
from jaxaudio.codecs.encodec.lstm import lstm_scan, scan_unroll
from jaxaudio.nn import MultiheadAttention
from jaxaudio.nn import attention as att
from jaxaudio.runtime import cudnn_command_buffers_off
from references import dilated_sconv_transpose1d, lstm_scan_autodiff, padded_sconv1d


def test_attention_takes_the_float32_route_on_cpu():
    assert att.attention_impl(jnp.bfloat16, head_dim=16) == "xla"
    assert att.attention_impl(jnp.float32, head_dim=16) == "xla"
    mha = MultiheadAttention(16, 2, dropout=0.0, batch_first=True, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(1), (2, 5, 16))
    out, _ = mha(x, x, x)
    chex.assert_shape(out, (2, 5, 16))


def test_attention_routes_on_a_gpu(monkeypatch):
    """By dtype and width, as a CUDA GPU would route them; need_weights always explicit."""
    monkeypatch.setattr(att, "cudnn_attention_available", lambda: True)
    monkeypatch.setattr(att, "cudnn_command_buffers_off", lambda: True)
    assert att.attention_impl(jnp.bfloat16, head_dim=16) == "cudnn"
    assert att.attention_impl(jnp.float32, head_dim=48) == "pallas"
    assert att.attention_impl(jnp.float32, head_dim=128) == "xla"
    assert att.attention_impl(jnp.bfloat16, head_dim=16, need_weights=True) == "xla"
    # cuDNN's dropout state inside XLA's command buffers crashed: bf16 then stays explicit
    monkeypatch.setattr(att, "cudnn_command_buffers_off", lambda: False)
    assert att.attention_impl(jnp.bfloat16, head_dim=16) == "xla"


def test_cudnn_command_buffer_flag_parsing():
    assert cudnn_command_buffers_off(runtime.GPU_COMMAND_BUFFER_FLAG)
    assert cudnn_command_buffers_off("--xla_gpu_enable_command_buffer=")
    assert not cudnn_command_buffers_off("")
    assert not cudnn_command_buffers_off("--xla_gpu_enable_command_buffer=FUSION,CUDNN")
    # the last occurrence wins, as in XLA's flag parsing
    assert not cudnn_command_buffers_off(runtime.GPU_COMMAND_BUFFER_FLAG
                                         + " --xla_gpu_enable_command_buffer=CUDNN")


def test_lstm_unroll_matches_the_rolled_scan(monkeypatch):
    assert scan_unroll() == 1  # CPU
    rng = np.random.default_rng(0)
    h = 8
    layers = [tuple(jnp.asarray(0.3 * rng.standard_normal(s), jnp.float32)
                    for s in ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,))) for _ in range(2)]
    x = jnp.asarray(rng.standard_normal((21, 3, h)), jnp.float32)  # 22 steps: 8 does not divide
    rolled = lstm_scan(x, layers, "highest", 1)
    for unroll in (8, 64):
        # unrolling regroups the same steps: an ulp or so of |h| < 1 a step (bitwise on CPU)
        chex.assert_trees_all_close(lstm_scan(x, layers, "highest", unroll), rolled, atol=1e-6)
    g = jax.grad(lambda x, u: jnp.sum(lstm_scan(x, layers, "highest", u) ** 2))
    # gradients up to ~0.3 back through 22 steps: a few ulps a step (1.5e-8 measured)
    chex.assert_trees_all_close(g(x, 8), g(x, 1), atol=1e-5)
    assert scan_unroll(jnp.bfloat16) == 1
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    # on a GPU: 8 steps an iteration, 16 with bfloat16 or float16 products
    assert scan_unroll() == scan_unroll(jnp.float32) == 8
    assert scan_unroll(jnp.bfloat16) == scan_unroll(jnp.float16) == 16


@pytest.mark.parametrize("n_layers", [1, 2, 3])
def test_lstm_recomputed_gradient_equals_autodiff(n_layers):
    """The scan's custom gradient (states kept, gates recomputed in one product, the reverse
    recurrence as a scan) against JAX's autodiff of the same scan (tests/references.py): for
    the input and for every weight and bias, with idle wavefront steps (layers > 1) and an
    unroll that does not divide the steps."""
    rng = np.random.default_rng(n_layers)
    h, t, b = 8, 13, 3
    layers = [tuple(jnp.asarray(0.4 * rng.standard_normal(s), jnp.float32)
                    for s in ((4 * h, 5 if l == 0 else h), (4 * h, h), (4 * h,), (4 * h,)))
              for l in range(n_layers)]
    x = jnp.asarray(rng.standard_normal((t, b, 5)), jnp.float32)
    ct = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)

    def grads(scan):
        def loss(x, ls):
            y = scan(x, ls)
            return jnp.sum(y * ct), y
        return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(x, layers)

    ((_, y_r), g_r) = grads(lambda x, ls: lstm_scan(x, ls, "highest", 4, products="float32"))
    ((_, y_a), g_a) = grads(lambda x, ls: lstm_scan_autodiff(x, ls, "highest", 4))
    # the same forward, element by element (kept states change XLA's fusion: float32 round-off
    # apart; the scalar loss is a sum with cancellation, whose own round-off is larger)
    chex.assert_trees_all_close(y_r, y_a, rtol=1e-6, atol=1e-7)
    chex.assert_trees_all_close(g_r, g_a, rtol=1e-5, atol=1e-5)
    assert all(float(jnp.max(jnp.abs(g))) > 0 for g in jax.tree.leaves(g_r))


def _scan_primitives(jaxpr):
    """Every primitive name inside the scans of a closed jaxpr (their bodies, nested calls too)."""
    names = []

    def walk(jx, inside):
        for eqn in jx.eqns:
            if inside:
                names.append(eqn.primitive.name)
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub, inside or eqn.primitive.name == "scan")

    walk(jaxpr.jaxpr, False)
    return names


def test_lstm_step_barrier():
    """Each forward step's states pass an optimisation barrier, in the forward and in the
    gradient's forward, so that XLA cannot recompute earlier steps' cells inside later ones on
    the GPU."""
    rng = np.random.default_rng(3)
    h, t, b = 8, 12, 2
    layers = [tuple(jnp.asarray(0.4 * rng.standard_normal(s), jnp.float32)
                    for s in ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,))) for _ in range(2)]
    x = jnp.asarray(rng.standard_normal((t, b, h)), jnp.float32)
    fwd = lambda x: lstm_scan(x, layers, "highest", 4)
    for fn in (fwd, jax.grad(lambda x: jnp.sum(fwd(x) ** 2))):
        assert "optimization_barrier" in _scan_primitives(jax.make_jaxpr(fn)(x))


def test_lstm_recomputed_gradient_needs_less_memory():
    """At EnCodec's LSTM size (two layers of 512, 1200 frames, batch 8; weights frozen, the
    input's gradient only), XLA's buffer assignment for forward+backward needs at least 150 MiB
    less temporary space with the recomputed gradient than with autodiff at unroll 8 (on the
    CPU, 642 against 922 MiB; on an H200 the train step's peak fell by 0.30 GiB)."""
    h, t, b = 512, 1200, 8
    layers = [tuple(jnp.zeros(s, jnp.float32) for s in ((4 * h, h), (4 * h, h), (4 * h,), (4 * h,)))] * 2
    x = jax.ShapeDtypeStruct((t, b, h), jnp.float32)

    def temp_mib(scan):
        f = jax.jit(jax.grad(lambda x: jnp.sum(scan(x))))
        return f.lower(x).compile().memory_analysis().temp_size_in_bytes / 2**20

    recompute = temp_mib(lambda x: lstm_scan(x, layers, None, 8, products="float32"))
    assert temp_mib(lambda x: lstm_scan_autodiff(x, layers, None, 8)) - recompute > 150


@pytest.fixture
def restore_cache_dir():
    before = jax.config.jax_compilation_cache_dir
    yield
    jax.config.update("jax_compilation_cache_dir", before)


def test_compilation_cache_under_run_dir_and_off_switch(tmp_path, monkeypatch, restore_cache_dir):
    monkeypatch.delenv(runtime.CACHE_ENV, raising=False)
    jax_dir = tmp_path / "jax_own"  # JAX's own variable (the tests set one) comes second
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(jax_dir))
    assert runtime.enable_compilation_cache(tmp_path / "run") == jax_dir
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR")
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


def _against(reference, module, x):
    """(reference, fast) outputs and input gradients of ``module`` at ``x``."""
    out = []
    for fn in (lambda x: reference(module, x), module):
        y, vjp = jax.vjp(fn, x)
        out.append((y, vjp(jnp.cos(y))[0]))
    return out


CONV_CASES = [(7, 1, 1), (3, 1, 1), (3, 1, 2), (1, 1, 1), (4, 2, 1), (16, 8, 1), (10, 5, 1), (5, 3, 1)]


@pytest.mark.parametrize("causal,mode", [(True, "reflect"), (False, "reflect"), (True, "constant"),
                                         (False, "constant"), (False, "replicate")])
def test_codec_conv_matches_the_padded_reference(causal, mode):
    """The convolution without a padded copy (symmetric padding inside the convolution,
    reflected edges recomputed) gives the reference's outputs and input gradients (pad, then a
    VALID convolution) for every kernel, stride, dilation and length, including inputs shorter
    than the padding and lengths that need extra padding."""
    rng = np.random.default_rng(0)
    for (k, s, d), n in itertools.product(CONV_CASES, (1, 2, 5, 9, 17, 41)):
        conv = SConv1d(3, 4, k, stride=s, dilation=d, causal=causal, pad_mode=mode,
                       precision="highest", rngs=nnx.Rngs(k * 10 + s))
        x = jnp.asarray(rng.standard_normal((2, n, 3)), jnp.float32)
        (ya, ga), (yb, gb) = _against(padded_sconv1d, conv, x)
        assert ya.shape == yb.shape == (2, -(-n // s), 4), (k, s, d, n)
        # padding inside the convolution or before it: the same k * 3 products summed in another
        # order, ~log2(48) eps of their magnitudes
        chex.assert_trees_all_close(yb, ya, atol=2e-6, rtol=1e-5, custom_message=f"{k, s, d, n}")
        chex.assert_trees_all_close(gb, ga, atol=2e-6, rtol=1e-5, custom_message=f"{k, s, d, n}")


@pytest.mark.parametrize("causal,ratio", [(True, 1.0), (True, 0.5), (True, 0.0), (False, 1.0)])
def test_codec_transposed_conv_phases_agree(causal, ratio):
    """The transposed convolution as ``stride`` phases of one undilated convolution equals the
    convolution of the dilated input, for kernels that are and are not multiples of the stride."""
    rng = np.random.default_rng(1)
    for (k, s), n in itertools.product([(4, 2), (16, 8), (10, 5), (5, 2), (7, 3), (3, 3), (2, 1)],
                                       (1, 2, 7)):
        conv = SConvTranspose1d(3, 4, k, stride=s, causal=causal, trim_right_ratio=ratio,
                                precision="highest", rngs=nnx.Rngs(k * 10 + s))
        x = jnp.asarray(rng.standard_normal((2, n, 3)), jnp.float32)
        (ya, ga), (yb, gb) = _against(dilated_sconv_transpose1d, conv, x)
        assert ya.shape == yb.shape, (k, s, n)
        # phases vs the dilated input: the same products without the zeros, in another order
        chex.assert_trees_all_close(yb, ya, atol=2e-6, rtol=1e-5, custom_message=f"{k, s, n}")
        chex.assert_trees_all_close(gb, ga, atol=2e-6, rtol=1e-5, custom_message=f"{k, s, n}")


def _eqns(jaxpr):
    """Every equation of ``jaxpr`` and of the jaxprs inside its equations (pjit, custom_vjp...)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr's jaxpr
                if hasattr(sub, "eqns"):
                    yield from _eqns(sub)


def _clean(fn, x, n):
    """No ``pad`` or ``concatenate`` larger than a few edge samples (XLA hands cuDNN only
    symmetric padding; anything else becomes a padded copy of the whole input) and no
    asymmetric convolution padding in ``fn``'s program."""
    eqns = list(_eqns(jax.make_jaxpr(fn)(x).jaxpr))
    big = [e for e in eqns if e.primitive.name in ("pad", "concatenate")
           and e.outvars[0].aval.shape[1] > n // 2]
    convs = [e for e in eqns if e.primitive.name == "conv_general_dilated"]
    return not big and not any(lo != hi for e in convs for lo, hi in e.params["padding"])


def test_codec_convolutions_copy_no_padded_input():
    """What makes the convolutions fast on a GPU, checked in their programs (the reference's
    literal order is not clean): no padded copy of the input, no asymmetric convolution
    padding, no dilated input."""
    n = 4800
    x = jnp.zeros((2, n, 8), jnp.float32)
    layers = [SConv1d(8, 8, 7, causal=True, rngs=nnx.Rngs(0)),
              SConv1d(8, 8, 3, causal=True, rngs=nnx.Rngs(1)),
              SConv1d(8, 16, 8, stride=4, causal=True, rngs=nnx.Rngs(2)),
              SConv1d(8, 8, 7, causal=False, rngs=nnx.Rngs(3))]
    for layer in layers:
        assert _clean(lambda x: layer(x), x, n), (layer.kernel_size, layer.causal)
        assert not _clean(lambda x: padded_sconv1d(layer, x), x, n)
    up = SConvTranspose1d(8, 4, 16, stride=8, causal=True, rngs=nnx.Rngs(4))
    for fn, dilated in ((lambda x: dilated_sconv_transpose1d(up, x), True), (up, False)):
        convs = [e for e in _eqns(jax.make_jaxpr(fn)(x[:, :600]).jaxpr)
                 if e.primitive.name == "conv_general_dilated"]
        assert any(e.params["lhs_dilation"] != (1,) for e in convs) == dilated
