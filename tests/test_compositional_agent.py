"""CompositionalCreativeAgent against the original's numbers (``compositional_agent.npz``).

Configuration, shapes and weights come from the fixture files. The fixture's sequence is: one
train-mode forward (batch statistics, dropout 0), the BatchNorm buffers after it, then eval-mode
outputs and ``get_component_statistics`` in eval mode (which therefore see the updated buffers).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures import assert_output_close, assert_scalar_close, load_fixture
from jaxaudio.agents.compositional import COMPONENT_NAMES, CompositionalCreativeAgent
from jaxaudio.agents.compositional.composer import TransformerEncoder, TransformerEncoderLayer
from jaxaudio.agents.compositional.extractors import BN_MOMENTUM, BatchNorm1d, Conv1d

FIXTURE = "compositional_agent"


def torch_path(name: str) -> tuple:
    """``"composer.composer.layers.0.linear1.weight"`` -> NNX path (digits are list indices)."""
    return tuple(int(p) if p.isdigit() else p for p in name.split("."))


def load_torch_names(module: nnx.Module, params: dict[str, np.ndarray]) -> None:
    """Strict local loader: every torch name sets one variable, every variable is set.

    Values are cast to the variable's dtype (torch's int64 ``num_batches_tracked`` is float32 in
    the fixtures and int32 here).
    """
    assert params, "empty torch state dict"
    flat = {tuple(p): v for p, v in nnx.to_flat_state(nnx.state(module))}
    missing = [n for n in params if torch_path(n) not in flat]
    assert not missing, f"torch names without an NNX variable: {missing}"
    left = sorted(".".join(map(str, p)) for p in set(flat) - {torch_path(n) for n in params})
    assert not left, f"NNX variables not covered by the torch state dict: {left}"
    for name, value in params.items():
        var = flat[torch_path(name)]
        current = var.get_value()  # an array, or a ShapeDtypeStruct when built abstractly
        assert current.shape == value.shape, f"{name}: {current.shape} vs torch {value.shape}"
        var.set_value(jnp.asarray(value, dtype=current.dtype))


def build(config: dict, params: dict[str, np.ndarray], dropout: float = 0.0
          ) -> CompositionalCreativeAgent:
    """The agent of ``config`` with the torch weights ``params``, built abstractly (no init)."""
    agent = nnx.eval_shape(lambda: CompositionalCreativeAgent(
        encoding_dim=config["encoding_dim"], component_dim=config["component_dim"],
        composer_heads=config["composer_heads"], composer_layers=config["composer_layers"],
        dropout=dropout, rngs=nnx.Rngs(0)))
    load_torch_names(agent, params)
    return agent


def batch_stats(agent: nnx.Module) -> dict[str, np.ndarray]:
    return {".".join(map(str, p)): np.asarray(v[...])
            for p, v in nnx.to_flat_state(nnx.state(agent, nnx.BatchStat))}


@pytest.fixture(scope="module")
def fx():
    return load_fixture(FIXTURE)


@pytest.fixture(scope="module")
def ran(fx):
    """The fixture's sequence: one train forward, then eval forward and statistics."""
    agent = build(fx.config, fx.group("param"))
    x, y = jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"])
    before = batch_stats(agent)
    train = agent(x, y, train=True)
    after_train = batch_stats(agent)
    evals = agent(x, y, train=False)
    stats = agent.get_component_statistics(x, y)
    return dict(agent=agent, before=before, train=train, after_train=after_train,
                after_eval=batch_stats(agent), eval=evals, stats=stats)


def test_names_and_shapes_match_torch_state_dicts(fx):
    # The agent alone, and inside the cascade fixture (component_dim 64, 8 heads, 1 layer).
    build(fx.config, fx.group("param"))
    cascade = load_fixture("transformer_cascade_compositional")
    config = {"encoding_dim": cascade.config["encoding_dim"], **cascade.config["agent"]}
    prefix = "creative_agent."
    params = {k[len(prefix):]: v for k, v in cascade.group("param").items()
              if k.startswith(prefix)}
    build(config, params)


def test_train_forward_matches(fx, ran):
    out, loss, stats = ran["train"]
    assert_output_close(out, fx["out/train/output"], "train/output")
    assert_scalar_close(loss, fx["out/train/loss"], "train/loss")
    assert set(stats) == {f"{n}_{k}" for n in COMPONENT_NAMES for k in ("energy", "weight")}
    for value in stats.values():
        assert value.shape == () and np.isfinite(value)


def test_running_buffers_after_one_train_forward(fx, ran):
    running = fx.group("out/running")
    assert running, "fixture has no out/running/* buffers"
    for name, expected in running.items():
        assert_output_close(ran["after_train"][name], expected, f"running/{name}")
    for name, value in ran["after_train"].items():
        if name.endswith("num_batches_tracked"):
            assert int(value) == int(ran["before"][name]) + 1, name


def test_eval_forward_and_statistics_match(fx, ran):
    out, loss, stats = ran["eval"]
    assert_output_close(out, fx["out/eval/output"], "eval/output")
    assert_scalar_close(loss, fx["out/eval/loss"], "eval/loss")
    expected = fx.group("out/stats")
    assert set(expected) == set(stats) == set(ran["stats"])
    for name, ref in expected.items():
        assert_scalar_close(ran["stats"][name], ref, f"get_component_statistics/{name}")
        assert float(stats[name]) == float(ran["stats"][name]), f"__call__ stats/{name}"


def test_batchnorm_updates_once_per_train_forward_never_in_eval(fx, ran):
    for name, value in ran["after_eval"].items():
        np.testing.assert_array_equal(value, ran["after_train"][name], err_msg=f"eval: {name}")
    # A second train forward on the same batch sees the same batch statistics s, so one update
    # gives r2 = (1 - m) r1 + m s with s = (r1 - (1 - m) r0) / m.
    agent, m = ran["agent"], BN_MOMENTUM
    agent(jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"]), train=True)
    r0, r1, r2 = ran["before"], ran["after_train"], batch_stats(agent)
    for name in r1:
        if name.endswith("num_batches_tracked"):
            assert int(r2[name]) == int(r1[name]) + 1, name
            continue
        s = (r1[name].astype(np.float64) - (1 - m) * r0[name]) / m
        # r2 rounds (1 - m) r1 + m s in float32; s rebuilt from the rounded r1 errs by eps |r1| / m,
        # times m again: a few eps in all; atol where the two terms nearly cancel
        np.testing.assert_allclose(r2[name], (1 - m) * r1[name] + m * s, rtol=1e-5,
                                   atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def step(fx):
    """One compiled train step: ``(params, rest, x, y) -> ((objective, aux), grads)``.

    ``aux`` = (output, loss, stats, BatchStat state after the step); grads are taken with
    respect to the parameters and both inputs. Every jit test shares this one compilation.
    """
    graphdef, params, rest = nnx.split(build(fx.config, fx.group("param")), nnx.Param, ...)
    r = jax.random.normal(jax.random.key(0), fx["in/input"].shape)

    def objective(params, x, y, rest):
        # Fresh Variables at this trace level: the train forward writes the BN buffers.
        model = nnx.merge(graphdef, params, jax.tree.map(lambda v: v, rest))
        out, loss, stats = model(x, y, train=True)
        return jnp.sum(out * r) + loss, (out, loss, stats, nnx.state(model, nnx.BatchStat))

    fn = jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True))
    return fn, params, rest


def test_jit_matches_eager_and_carries_state(fx, ran, step):
    fn, params, rest = step
    (_, (out, loss, stats, new_stats)), _ = fn(
        params, jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"]), rest)
    e_out, e_loss, e_stats = ran["train"]
    assert_output_close(out, e_out, "jit output")
    assert_scalar_close(loss, e_loss, "jit loss")
    for name in e_stats:
        assert_scalar_close(stats[name], e_stats[name], f"jit stats/{name}")
    for path, value in nnx.to_flat_state(new_stats):
        name = ".".join(map(str, path))
        assert_output_close(value[...], ran["after_train"][name], f"jit buffer {name}")


def test_gradients_finite_including_silence(fx, step):
    fn, params, rest = step
    x, y = jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"])
    cases = {"fixture": (x, y), "silence": (jnp.zeros_like(x), jnp.zeros_like(y)),
             "identical": (x, x)}
    for case, (a, b) in cases.items():
        (obj, _), (g_params, g_x, g_y) = fn(params, a, b, rest)
        assert np.isfinite(float(obj)), case
        for path, g in nnx.to_flat_state(g_params):
            assert np.all(np.isfinite(g[...])), f"{case}: non-finite gradient at {path}"
        assert np.all(np.isfinite(g_x)) and np.all(np.isfinite(g_y)), f"{case}: inputs"
        assert float(jnp.max(jnp.abs(g_x))) > 0, f"{case}: no gradient reaches the input"
        if case == "fixture":
            # Train-mode BatchNorm removes any per-channel constant, so the 1x1 skip's bias
            # (added just before it) has a zero gradient up to float32 round-off.
            for ext in ("input_extractor", "target_extractor"):
                for branch in ("rhythm", "harmony", "timbre"):
                    skip = g_params[ext][f"{branch}_skip"]
                    scale = float(jnp.max(jnp.abs(skip["weight"][...])))
                    assert float(jnp.max(jnp.abs(skip["bias"][...]))) <= 1e-5 * scale


def poison_output_bias(bias: jax.Array) -> jax.Array:
    return bias.at[0].set(jnp.nan).at[1].set(jnp.inf).at[2].set(-jnp.inf)


def check_guarded(out: jax.Array, what: str) -> None:
    out = np.asarray(out)
    assert np.all(np.isfinite(out)), what
    np.testing.assert_array_equal(out[:, 0], 0.0, err_msg=what)  # NaN -> 0
    np.testing.assert_array_equal(out[:, 1], 50.0, err_msg=what)  # inf -> 100 -> 50
    np.testing.assert_array_equal(out[:, 2], -50.0, err_msg=what)
    assert np.max(np.abs(out)) <= 50.0, what


def test_nan_guard_and_clamps(fx, step):
    x, y = jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"])
    # Under jit, in training, with gradients: the guard is a `where`, so they stay finite.
    fn, params, rest = step
    params = jax.tree.map(lambda v: v, params)
    bias = params["composer"]["output_projection"][3]["bias"]
    bias.set_value(poison_output_bias(bias.get_value()))
    (obj, (out, loss, _, _)), (g_params, g_x, _) = fn(params, x, y, rest)
    check_guarded(out, "jit train")
    assert np.isfinite(float(loss)) and np.isfinite(float(obj))
    assert all(np.all(np.isfinite(g[...])) for _, g in nnx.to_flat_state(g_params))
    assert np.all(np.isfinite(g_x))
    # Eager, eval mode.
    agent = build(fx.config, fx.group("param"))
    bias = agent.composer.output_projection[3].bias
    bias[...] = poison_output_bias(bias[...])
    out, loss, _ = agent(x, y)
    check_guarded(out, "eager eval")
    assert np.isfinite(float(loss))


def test_dropout_needs_rngs_and_is_reproducible(fx):
    agent = build(fx.config, fx.group("param"), dropout=0.1)
    x, y = jnp.asarray(fx["in/input"]), jnp.asarray(fx["in/target"])
    with pytest.raises(ValueError, match="rngs"):
        agent(x, y, train=True)
    # Eager (no new compilation); each call is a train forward, so BN buffers move, but the
    # outputs use batch statistics and depend only on the dropout keys.
    a, b, c = (agent(x, y, train=True, rngs=nnx.Rngs(dropout=k))[0] for k in (1, 1, 2))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c), "different dropout keys gave the same output"
    ref = build(fx.config, fx.group("param"))
    ref_train = ref(x, y, train=True)[0]
    assert not np.allclose(a, ref_train), "dropout 0.1 changed nothing in training"
    # Dropout only acts in training: given the same buffers, eval outputs agree exactly.
    nnx.update(ref, nnx.state(agent, nnx.BatchStat))
    np.testing.assert_array_equal(agent(x, y)[0], ref(x, y)[0])


def test_every_fixture_output_is_checked(fx):
    # The parity tests above cover these groups; a new output in the file must get a test.
    checked = {"train/output", "train/loss", "eval/output", "eval/loss"}
    for key in fx.group("out"):
        assert key in checked or key.split("/")[0] in ("running", "stats"), f"unchecked out/{key}"


def test_initialisation_follows_torch_defaults():
    d_model, nhead, ff, layers = 8, 2, 16, 2
    rngs = nnx.Rngs(0)
    enc = TransformerEncoder(TransformerEncoderLayer(d_model, nhead, ff, 0.1, rngs=rngs), layers)
    # torch deep-copies one layer: every layer starts from the same values, as separate arrays.
    first, second = enc.layers[0], enc.layers[1]
    np.testing.assert_array_equal(first.linear1.weight[...], second.linear1.weight[...])
    first.linear1.weight[...] = first.linear1.weight[...] + 1.0
    assert not np.array_equal(first.linear1.weight[...], second.linear1.weight[...])
    attn = second.self_attn
    xavier = np.sqrt(6.0 / (d_model + 3 * d_model))
    w = np.asarray(attn.in_proj_weight[...])
    assert w.shape == (3 * d_model, d_model) and np.abs(w).max() <= xavier
    assert np.abs(w).max() > 0.5 * xavier
    np.testing.assert_array_equal(attn.in_proj_bias[...], 0.0)
    np.testing.assert_array_equal(attn.out_proj.bias[...], 0.0)
    lin = np.asarray(second.linear1.weight[...])
    assert np.abs(lin).max() <= 1 / np.sqrt(d_model) and np.abs(lin).max() > 0.5 / np.sqrt(d_model)
    np.testing.assert_array_equal(second.norm1.weight[...], 1.0)

    conv = Conv1d(4, 2, 21, padding=10, rngs=rngs)
    w = np.asarray(conv.weight[...])
    assert w.shape == (2, 4, 21) and np.abs(w).max() <= 1 / np.sqrt(4 * 21)
    norm = BatchNorm1d(2)
    np.testing.assert_array_equal(norm.running_mean[...], 0.0)
    np.testing.assert_array_equal(norm.running_var[...], 1.0)
    assert int(norm.num_batches_tracked[...]) == 0
