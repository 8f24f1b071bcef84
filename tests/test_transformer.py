"""SimpleTransformer against the original's numbers, and its building blocks' properties.

Every ``transformer_*`` fixture is checked for: eval outputs; train-mode outputs (every dropout
at 0 and anti_cheating 0, as the fixture was made); gradients of
``sum(output * R) + every other returned loss`` with respect to every parameter (by torch name,
through the converter's mapping) and to the inputs; and the spectral-norm buffers after that one
training forward. Configuration, shapes and weights come from the files. The agent fixtures need
``jaxaudio.agents.masking`` / ``jaxaudio.agents.compositional``.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures import GRAD_TOL, assert_grad_close, assert_output_close, assert_scalar_close, load_fixture
from jaxaudio.torch_port import from_torch_state_dict, torch_state_dict
from jaxaudio.models.layers import MultiheadAttention
from jaxaudio.models.spectral_norm import SpectralNormLinear
from jaxaudio.models.transformer import SimpleTransformer, _unbiased_std, rms_rescale

TRANSFORMER_FIXTURES = [
    "transformer_single",
    "transformer_cascade",
    "transformer_cascade_masking",
    "transformer_cascade_compositional",
]
CONSTRUCTOR_KEYS = (
    "encoding_dim",
    "nhead",
    "num_layers",
    "dropout",
    "num_transformer_layers",
    "anti_cheating",
    "use_creative_agent",
    "use_compositional_agent",
)
AGENT_KEYS = ("component_dim", "composer_heads", "composer_layers", "novelty_weight")


def compile_fast(fn, *args):
    """``jax.jit(fn)`` compiled for ``args`` at XLA's backend optimisation level 0.

    These tests are dominated by compile time, which this halves. Only code generation is less
    optimised: the operations are the same, and the results stay within the fixtures' tolerances.
    """
    options = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
    return jax.jit(fn).lower(*args).compile(options)


def run_compiled(fn, *args):
    return compile_fast(fn, *args)(*args)


def build_from_fixture(fx) -> SimpleTransformer:
    kwargs = {k: fx.config[k] for k in CONSTRUCTOR_KEYS if k in fx.config}
    agent = fx.config.get("agent", {})
    kwargs.update({k: agent[k] for k in AGENT_KEYS if k in agent})
    return from_torch_state_dict(
        lambda: SimpleTransformer(**kwargs, rngs=nnx.Rngs(0)), fx.group("param"), source=str(fx.path)
    )


def fixture_inputs(fx) -> list[jax.Array]:
    return [jnp.asarray(fx[f"in/{i}"]) for i in range(2) if f"in/{i}" in fx]


def zero_dropout(model: nnx.Module) -> None:
    """The fixture's train mode: every dropout rate set to 0.

    Covers ``nnx.Dropout`` layers and modules that keep torch's float attribute ``dropout``
    (e.g. an attention layer's probability dropout).
    """
    for _, node in nnx.iter_graph(model):
        if isinstance(node, nnx.Dropout):
            node.rate = 0.0
        elif isinstance(node, nnx.Module) and isinstance(getattr(node, "dropout", None), float):
            node.dropout = 0.0


def assert_zero_up_to_roundoff(g, scale: float, name: str) -> None:
    """A reference gradient that is zero analytically (float64 noise, e.g. a bias right before a
    training-mode BatchNorm): a relative error is meaningless there, so ours must be zero up to
    float32 round-off of the objective's gradient scale (the largest reference gradient norm)."""
    norm = float(np.linalg.norm(np.asarray(g, np.float64)))
    bound = float(np.finfo(np.float32).eps) * scale
    assert norm <= bound, f"{name}: analytically zero gradient, got norm {norm:.3e} > {bound:.3e}"


def check_returned(out, fx, mode: str) -> None:
    """Element i of the original's tuple against ``out/<mode>/i``; absent keys must be None."""
    assert_output_close(out[0], fx[f"out/{mode}/0"], f"{mode}/0")
    for i in (1, 2):
        key = f"out/{mode}/{i}"
        if key in fx:
            assert out[i] is not None, f"{key}: the original returns a value, we return None"
            assert_scalar_close(out[i], fx[key], key)
        else:
            assert out[i] is None, f"{key}: the original returns None, we return {out[i]}"


@functools.lru_cache(maxsize=None)
def fixture_run(name: str) -> SimpleNamespace:
    """One compiled program per fixture: the eval forward, and the train-mode forward with the
    gradient of ``sum(output * R) + every other returned loss`` w.r.t. parameters and inputs."""
    fx = load_fixture(name)
    model = build_from_fixture(fx)
    zero_dropout(model)  # the fixture's train mode; eval has no dropout anyway
    inputs = fixture_inputs(fx)
    r = jnp.asarray(fx["in/R"])
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def objective(params, inputs, rest):
        m = nnx.merge(graphdef, params, rest, copy=True)
        out = m(*inputs, train=True)  # no rngs: every random draw is switched off
        total = jnp.sum(out.output * r) + sum(x for x in out[1:3] if x is not None)
        return total, (out, nnx.state(m, nnx.Not(nnx.Param)))

    def both(params, inputs, rest):
        evaluated = nnx.merge(graphdef, params, rest, copy=True)(*inputs)
        return evaluated, jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(params, inputs, rest)

    compiled = compile_fast(both, params, inputs, rest)
    evaluated, ((_, (trained, new_rest)), (g_params, g_inputs)) = compiled(params, inputs, rest)
    grads = torch_state_dict(model, g_params)
    nnx.update(model, new_rest)
    return SimpleNamespace(
        fx=fx,
        eval=evaluated,
        train=trained,
        grads=grads,
        grad_inputs=g_inputs,
        buffers=torch_state_dict(model),
        rerun=lambda new_inputs: compiled(params, new_inputs, rest),  # same program, other inputs
    )


@pytest.mark.parametrize("name", TRANSFORMER_FIXTURES)
def test_eval_matches_original(name):
    run = fixture_run(name)
    check_returned(run.eval, run.fx, "eval")


@pytest.mark.parametrize("name", TRANSFORMER_FIXTURES)
def test_train_outputs_gradients_and_buffers_match_original(name):
    run = fixture_run(name)
    fx, ours = run.fx, run.grads
    check_returned(run.train, fx, "train")
    for i, g in enumerate(run.grad_inputs):
        assert_grad_close(g, fx[f"grad/in/{i}"], f"grad/in/{i}")

    full = fx.group("grad/param")
    norms, sums = fx.group("gradnorm/param"), fx.group("gradsum/param")
    missing = sorted((set(full) | set(norms)) - set(ours))
    assert not missing, f"parameters with a reference gradient but none here: {missing}"
    scale = max(float(np.linalg.norm(v)) for v in list(full.values()) + list(norms.values()))
    for key, g in ours.items():
        # float64 round-off of an analytically zero gradient is ~1e-16 of the scale; a real one is
        # far above 1e-12
        if key in full and np.linalg.norm(full[key]) <= 1e-12 * scale:
            assert_zero_up_to_roundoff(g, scale, f"grad/param/{key}")
        elif key in full:
            assert_grad_close(g, full[key], f"grad/param/{key}")
        elif key in norms:
            ref_norm = float(norms[key])
            norm = float(np.linalg.norm(np.asarray(g, np.float64)))
            total = float(np.sum(np.asarray(g, np.float64)))
            # Implied by ||g - G|| <= tol ||G||: the norm within tol, the sum within tol sqrt(n) ||G||.
            assert abs(norm - ref_norm) <= GRAD_TOL * ref_norm, f"gradnorm {key}: {norm} vs {ref_norm}"
            assert abs(total - float(sums[key])) <= GRAD_TOL * np.sqrt(g.size) * ref_norm, f"gradsum {key}"
        else:  # torch has no gradient (parameter unused in this forward): ours must be zero
            np.testing.assert_array_equal(np.asarray(g), 0.0, err_msg=f"{key} should get no gradient")

    for key, ref in fx.group("out/train_buffers").items():
        assert_output_close(run.buffers[key], ref, f"train_buffers/{key}")


def _small_factory(num_transformer_layers=2, dropout=0.1, anti_cheating=0.0):
    return lambda: SimpleTransformer(
        encoding_dim=16,
        nhead=2,
        num_layers=1,
        dropout=dropout,
        num_transformer_layers=num_transformer_layers,
        anti_cheating=anti_cheating,
        rngs=nnx.Rngs(0),
    )


def _small(**kwargs):
    """A small model with random weights, filled without eager initialisers (one compile each
    would dominate these tests' run time)."""
    factory = _small_factory(**kwargs)
    rng = np.random.default_rng(0)
    shapes = torch_state_dict(nnx.eval_shape(factory))
    weights = {k: (v if k.endswith(".pe") else rng.normal(0.0, 0.3, v.shape).astype(np.float32)) for k, v in shapes.items()}
    return from_torch_state_dict(factory, weights)


def _latents(seed=0, shape=(2, 16, 12)):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype(np.float32), 0.5 * rng.normal(size=shape).astype(np.float32)


def test_training_randomness_comes_from_the_call_rngs():
    x, t = _latents()
    model = _small(dropout=0.1, anti_cheating=0.3)
    with pytest.raises(ValueError, match="rngs"):
        model(x, t, train=True)
    with pytest.raises(ValueError, match="rngs"):
        _small(dropout=0.0, anti_cheating=0.5)(x, t, train=True)
    graphdef, state = nnx.split(model)

    def both(state, seed):  # (training output, eval output) with the same rngs
        m = nnx.merge(graphdef, state, copy=True)
        rngs = nnx.Rngs(dropout=jax.random.fold_in(seed, 0), noise=jax.random.fold_in(seed, 1))
        return m(x, t, train=True, rngs=rngs).output, m(x, t, train=False, rngs=rngs).output

    run = compile_fast(both, state, jax.random.key(0))
    (a, e1), (b, _), (c, e2) = run(state, jax.random.key(1)), run(state, jax.random.key(1)), run(state, jax.random.key(2))
    np.testing.assert_array_equal(a, b)
    assert np.max(np.abs(np.asarray(a) - np.asarray(c))) > 1e-3
    np.testing.assert_array_equal(e1, e2)  # eval: no dropout, no noise, whatever the rngs
    assert np.max(np.abs(np.asarray(e1) - np.asarray(a))) > 1e-3


def test_rms_rescale_is_clamped_to_the_original_range():
    y = np.random.default_rng(0).normal(size=(3, 4, 10)) * np.array([1.0, 1e-3, 1e3])[:, None, None]
    y, goal = y.astype(np.float32), np.ones((3, 1, 1), np.float32)
    scale = np.asarray(jax.jit(rms_rescale)(y, goal)) / y  # one factor per sample
    # one float32 product y * s, then / y: within an ulp or two of s
    np.testing.assert_allclose(scale, np.broadcast_to(scale[:, :1, :1], scale.shape), rtol=1e-6)
    rms0 = np.sqrt(np.mean(np.asarray(y[0], np.float64) ** 2) + 1e-8)
    # float32 RMS of 40 values, and the clamp bounds rounded to float32: a few eps
    np.testing.assert_allclose(scale[:, 0, 0], [1.0 / (rms0 + 1e-8), 1.5, 0.7], rtol=1e-5)


@pytest.mark.parametrize("name", TRANSFORMER_FIXTURES)
def test_finite_on_silence_and_identical_inputs(name):
    """The fixture's program (eval forward, train forward and gradients) on silent inputs and
    on input == target: everything stays finite."""
    run = fixture_run(name)
    x = fixture_inputs(run.fx)
    for label, inputs in (("silence", [np.zeros(a.shape, np.float32) for a in x]), ("identical", [x[0]] * len(x))):
        results = run.rerun(inputs)
        for leaf in jax.tree.leaves(results):
            assert np.all(np.isfinite(np.asarray(leaf))), f"{name} on {label}: non-finite output or gradient"


def test_unbiased_std_has_a_zero_gradient_on_silence():
    # the anti-cheating noise scales with std(x), whose gradient torch leaves NaN on silence
    np.testing.assert_array_equal(jax.grad(_unbiased_std)(jnp.zeros((2, 3))), 0.0)
    # float32 std of 4 integers: a couple of ulps of sqrt(5/3)
    np.testing.assert_allclose(_unbiased_std(jnp.arange(4.0)), np.std(np.arange(4.0), ddof=1), rtol=1e-6)


def test_input_validation():
    x, t = _latents()
    cascade = nnx.eval_shape(_small_factory())  # the checks run before any arithmetic
    with pytest.raises(ValueError, match="encoded_target is required"):
        cascade(x)
    with pytest.raises(ValueError, match="encoding_dim=16"):
        cascade(np.zeros((2, 8, 12)), np.zeros((2, 8, 12)))
    with pytest.raises(ValueError, match="encoded_target shape"):
        cascade(x, t[:, :, :5])


def test_spectral_norm_buffers_and_sigma():
    layer = SpectralNormLinear(6, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6)), jnp.float32)
    u0 = np.asarray(layer.weight_u[...])
    layer(x)  # eval keeps the stored vectors
    np.testing.assert_array_equal(layer.weight_u[...], u0)
    for _ in range(60):  # each training forward is one power iteration
        layer(x, train=True)
    assert not np.allclose(layer.weight_u[...], u0)
    w = np.asarray(layer.weight_orig[...])
    sigma = np.linalg.svd(w, compute_uv=False)[0]
    # 60 power iterations at sigma2 / sigma1 = 0.72 have converged (0.72^120 ~ 1e-17): only
    # float32 round-off is left, ~1e-7 here and below
    np.testing.assert_allclose(np.linalg.svd(np.asarray(layer.normalized_weight()))[1][0], 1.0, rtol=1e-5)
    u, v = np.asarray(layer.weight_u[...]), np.asarray(layer.weight_v[...])
    np.testing.assert_allclose(u @ w @ v, sigma, rtol=1e-5)


def test_spectral_norm_keeps_a_bf16_layer_in_bf16():
    """Its float32 u, v buffers must not promote a bf16 weight (nor the layer's output, and with
    it the cascade's next stage) to float32; sigma is still taken from the rounded weight."""
    layer = SpectralNormLinear(6, 4, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 6)), jnp.float32)
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
    low = nnx.merge(graphdef, jax.tree.map(lambda a: a.astype(jnp.bfloat16), params), rest)
    assert low.weight_u[...].dtype == jnp.float32  # buffers stay float32
    for train in (False, True):
        y = low(x.astype(jnp.bfloat16), train=train)
        assert y.dtype == jnp.bfloat16 and low.normalized_weight().dtype == jnp.bfloat16
    w = np.asarray(low.weight_orig[...], np.float32)
    u, v = np.asarray(low.weight_u[...]), np.asarray(low.weight_v[...])
    ref = np.asarray(x.astype(jnp.bfloat16), np.float32) @ (w / (u @ w @ v)).T + np.asarray(
        low.bias[...], np.float32)
    # bf16 products and a bf16 output (half an ulp: 2^-8 relative) on |y| < 1: a few ulps
    np.testing.assert_allclose(np.asarray(y, np.float32), ref, rtol=3e-2, atol=3e-2)


def test_bf16_step_runs_every_attention_call_in_bf16():
    """Under --precision bf16 every attention call of the train step, the cascade's second
    stage included (it takes the first stage's output), gets bf16 q, k, v: on a GPU that is
    cuDNN's fused attention, where a float32 call would take the float32 kernel."""
    from jaxaudio.nn.attention import record_routes
    from jaxaudio.training.cli import parse_config
    from tiny_step import tiny_batch, tiny_steps

    seen = {}
    for prec in ("fp32", "bf16"):
        cfg = parse_config(["--builtin", "--encoding_dim", "16", "--nhead", "2", "--num_layers",
                            "1", "--num_transformer_layers", "2", "--batch_size", "2",
                            "--use_creative_agent", "true", "--clip_seconds", "0.25", "--no_mlflow",
                            "--precision", prec])
        codec, state, steps = tiny_steps(cfg)
        batch = tiny_batch(cfg, codec)
        with record_routes() as routes:
            steps.train_step.lower(state, batch, nnx.state(codec), jnp.float32(0.0),
                                   jnp.int32(0))
        seen[prec] = routes
    # widths 16 (stage 1: 32 / 2 heads), 24 (stage 2: 48 / 2) and the masking agent's
    widths = {w for _, w, _ in seen["bf16"]}
    assert {16, 24} <= widths, seen["bf16"]
    assert {dt for dt, _, _ in seen["bf16"]} == {"bfloat16"}, seen["bf16"]
    assert {dt for dt, _, _ in seen["fp32"]} == {"float32"}, seen["fp32"]
    assert len(seen["bf16"]) == len(seen["fp32"])


def test_attention_fused_and_explicit_paths_agree():
    mha = MultiheadAttention(8, 2, dropout=0.0, batch_first=True, rngs=nnx.Rngs(0))
    rng = np.random.default_rng(1)
    q, kv = rng.normal(size=(2, 5, 8)).astype(np.float32), rng.normal(size=(2, 7, 8)).astype(np.float32)

    def paths(mha, q, kv):
        fused, none = mha(q, kv, kv)
        explicit, weights = mha(q, kv, kv, need_weights=True)
        mha.batch_first = False  # torch's default layout [T, B, E], same weights
        swapped, _ = mha(*(jnp.swapaxes(z, 0, 1) for z in (q, kv, kv)))
        return fused, none, explicit, weights, jnp.swapaxes(swapped, 0, 1)

    fused, none, explicit, weights, swapped = run_compiled(paths, mha, q, kv)
    assert none is None
    # fused vs explicit softmax and the [T, B, E] layout: other reduction orders, a few ulps of
    # outputs ~1
    np.testing.assert_allclose(fused, explicit, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(swapped, fused, rtol=1e-5, atol=1e-6)
    chex.assert_shape(weights, (2, 5, 7))
    # float32 softmax rows of 7 terms: within a few eps of 1
    np.testing.assert_allclose(np.sum(np.asarray(weights), -1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("update", ["gain", "additive"])
def test_cascade_update_gain_cannot_create_content(update):
    """The buzz's cause pinned down at the model: with ``cascade_update="gain"`` a latent cell
    that is silent in both parts stays silent (a gain cannot create content, so nothing smooth
    in time can be added for the codec to turn into a frame-rate comb); the original's additive
    update fills it."""
    model = SimpleTransformer(encoding_dim=16, nhead=2, num_layers=1, dropout=0.0,
                              num_transformer_layers=2, cascade_update=update,
                              rngs=nnx.Rngs(params=0))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 16, 24)).astype(np.float32)
    y = rng.standard_normal((2, 16, 24)).astype(np.float32)
    x[:, 3], y[:, 3] = 0.0, 0.0  # channel 3 silent in both parts
    out = np.asarray(model(jnp.asarray(x), jnp.asarray(y)).output)
    if update == "gain":
        np.testing.assert_array_equal(out[:, 3], 0.0)
        assert np.all(np.isfinite(out)) and np.std(out) > 0.1
    else:
        assert np.sqrt(np.mean(out[:, 3] ** 2)) > 1e-2
