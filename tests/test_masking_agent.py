"""The masking creative agent against the original's numbers, and its properties.

Parity: ``creative_agent.npz`` (shared fixture: eval-mode masks, losses, masked encodings, style
scores) and ``tests/assets/creative_agent_reference.npz`` (made from the same weights by
``tests/assets/make_creative_agent_reference.py``: RMS restore, adversarial losses, rhythm
metrics and gradients). Configuration, shapes and weights come from the files.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fixtures import (
    GRAD_TOL,
    assert_grad_close,
    assert_output_close,
    assert_scalar_close,
    load_fixture,
)
from jaxaudio.agents.masking import (
    CreativeAgent,
    evaluate_rhythm_transfer,
    restore_rms,
)

ASSET = Path(__file__).parent / "assets" / "creative_agent_reference.npz"
ASSET_SCRIPT = "tests/assets/make_creative_agent_reference.py"


def load_torch_params(module: nnx.Module, params: dict[str, np.ndarray]) -> None:
    """Strictly load torch-named arrays: the torch name is the NNX path joined with dots."""
    found = {".".join(map(str, path)): var for path, var in nnx.iter_graph(module)
             if isinstance(var, nnx.Param)}
    missing, unexpected = sorted(set(found) - set(params)), sorted(set(params) - set(found))
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"
    for name, var in found.items():
        assert var.get_value().shape == params[name].shape, name
        var.set_value(jnp.asarray(params[name], jnp.float32))


@pytest.fixture(scope="module")
def fixture():
    return load_fixture("creative_agent")


@pytest.fixture(scope="module")
def agent(fixture):
    cfg = fixture.config
    # Built abstractly: the weights come from the file (random init compiles one RNG kernel per
    # shape, which is slow on a small CPU).
    model = nnx.eval_shape(lambda: CreativeAgent(cfg["encoding_dim"], cfg["use_discriminator"],
                                                 rngs=nnx.Rngs(0)))
    load_torch_params(model, fixture.group("param"))
    return model


@pytest.fixture(scope="module")
def inputs(fixture):
    return jnp.asarray(fixture["in/input"]), jnp.asarray(fixture["in/target"])


@pytest.fixture(scope="module")
def reference(fixture):
    with np.load(ASSET) as z:
        ref = {k: z[k] for k in z.files}
    config = json.loads(str(ref.pop("meta/config")))
    h = hashlib.sha256()
    for k in sorted(fixture.arrays):
        if k.startswith(("param/", "in/")):
            a = np.ascontiguousarray(fixture[k], dtype=np.float32)
            h.update(k.encode())
            h.update(str(a.shape).encode())
            h.update(a.tobytes())
    assert h.hexdigest() == config["source_fixture_sha256"], (
        f"{ASSET} was made from another creative_agent.npz; regenerate it with {ASSET_SCRIPT}")
    return ref


def test_variable_names_and_layouts_are_torch(agent, fixture):
    params = fixture.group("param")
    names = {".".join(map(str, p)): v.get_value().shape for p, v in nnx.iter_graph(agent)
             if isinstance(v, nnx.Param)}
    assert names == {k: v.shape for k, v in params.items()}


def _eval_forward(model: CreativeAgent, x: jax.Array, y: jax.Array, key: jax.Array):
    masks = model.mask_generator(x, y)
    hard = model.mask_generator(x, y, hard=True, rngs=nnx.Rngs(noise=key))
    return masks, model.generate_creative_masks(x, y), model.judge_quality(y), hard


@pytest.fixture(scope="module")
def eval_outputs(agent, inputs):
    """``(eager, jitted)`` results of :func:`_eval_forward` in eval mode."""
    graphdef, state = nnx.split(agent)
    jitted = jax.jit(lambda state, x, y, key: _eval_forward(nnx.merge(graphdef, state), x, y,
                                                            key))
    key = jax.random.key(5)
    return _eval_forward(agent, *inputs, key), jitted(state, *inputs, key)


def test_eval_parity_with_fixture(eval_outputs, fixture):
    masks, out, (real_fake, style), _ = eval_outputs[1]
    assert_output_close(masks.input_mask, fixture["out/input_mask"], "input_mask")
    assert_output_close(masks.target_mask, fixture["out/target_mask"], "target_mask")
    assert_output_close(out.masked_input, fixture["out/masked_input"], "masked_input")
    assert_output_close(out.masked_target, fixture["out/masked_target"], "masked_target")
    assert_scalar_close(out.reg_loss, fixture["out/reg_loss"], "reg_loss")
    assert_scalar_close(out.balance_loss, fixture["out/balance_loss"], "balance_loss")
    assert_output_close(real_fake, fixture["out/style/real_fake"], "style/real_fake")
    assert_output_close(style, fixture["out/style/style"], "style/style")


def onset_corr_tolerance(input_mask, encoded_input) -> float:
    """What float32 promises for ``mask_onset_corr``, the Pearson correlation of two series of
    frame differences: the mask's rises ``relu(diff(mean_D mask))`` and the input's onsets
    ``relu(diff(log mean_D x**2))``.

    Each difference is taken of values (the mask's channel mean, about 0.5; the log energy, a
    few units) that float32 rounds to ``eps * |value|``, and a few more eps come from the sums
    over ``D`` in another order (jit fuses them differently from eager). The difference does
    not shrink that error, so every term of a series errs by about ``eps * max|value|``, and
    the correlation by that error over the series' own spread. When the masks barely move, the
    spread is small and the correlation ill-conditioned: a relative tolerance of 1e-5 asks
    more than float32 gives there (jax 0.12.1 differed by 4.8e-5 relative). Bound, with a
    factor 4 for the two computations' roundings and sums: ``4 eps (max|mean mask| / std(rises) + max|level| / std(onsets))``.
    """
    m = np.asarray(input_mask, np.float64).mean(axis=1)
    x = np.asarray(encoded_input, np.float64)
    level = np.log(np.mean(x ** 2, axis=1) + 1e-6)
    rises = np.maximum(np.diff(m, axis=-1), 0.0)
    onsets = np.maximum(np.diff(level, axis=-1), 0.0)
    eps = float(np.finfo(np.float32).eps)
    return 4 * eps * (np.max(np.abs(m)) / np.std(rises) + np.max(np.abs(level)) / np.std(onsets))


def test_jit_equals_eager(eval_outputs, inputs):
    eager, jitted = eval_outputs
    flat = lambda tree: {jax.tree_util.keystr(p): (p, v)
                         for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
    flat_eager, flat_jit = flat(eager), flat(jitted)
    assert flat_eager.keys() == flat_jit.keys()
    corr_leaves = [k for k in flat_eager if "mask_onset_corr" in k]
    assert corr_leaves
    for name in corr_leaves:  # a correlation: bounded by 1, so compared in absolute terms
        path, want = flat_eager.pop(name)
        got = flat_jit.pop(name)[1]
        # the masks whose stats hold this leaf: the hard ones (3), else the soft ones (0),
        # which generate_creative_masks (1) also uses
        masks = eager[3] if path[0].idx == 3 else eager[0]
        tol = onset_corr_tolerance(masks.input_mask, inputs[0])
        assert tol < 1e-2, f"the bound {tol} says nothing: the masks do not move"
        assert abs(float(got) - float(want)) <= tol, (name, float(got), float(want), tol)
    flat_eager = {k: v for k, (_, v) in flat_eager.items()}
    flat_jit = {k: v for k, (_, v) in flat_jit.items()}
    # everything else: float32 round-off of well-conditioned values
    chex.assert_trees_all_close(flat_jit, flat_eager, rtol=1e-5, atol=1e-6)


def _music_stats(im, x):
    """The mask's temporal std and the correlation of its rises with the input's onsets."""
    change = np.maximum(np.diff(im.mean(axis=1), axis=-1), 0.0).ravel()
    level = np.log(np.mean(np.asarray(x, np.float64) ** 2, axis=1) + 1e-6)
    onset = np.maximum(np.diff(level, axis=-1), 0.0).ravel()
    return np.mean(np.std(im, axis=2)), np.corrcoef(change, onset)[0, 1]


def test_stats_match_the_masks(eval_outputs, inputs):
    masks, out, _, _ = eval_outputs[1]
    im = np.asarray(masks.input_mask, np.float64)
    tm = np.asarray(masks.target_mask, np.float64)
    overlap = np.mean(im * tm)
    coverage = np.mean((im + tm - 1.0) ** 2)
    v_in, v_tgt = np.mean(np.var(im, axis=2, ddof=1)), np.mean(np.var(tm, axis=2, ddof=1))
    diversity = max(0.05 - v_in, 0.0) + max(0.05 - v_tgt, 0.0)
    expected = {
        "input_mask_mean": im.mean(), "target_mask_mean": tm.mean(), "mask_overlap": overlap,
        "complementarity": 1.0 - overlap, "complementarity_raw": overlap,
        "coverage": coverage, "temporal_diversity": diversity,
        "input_mask_temporal_var": v_in, "target_mask_temporal_var": v_tgt,
        "balance": (im.mean() - 0.5) ** 2 + (tm.mean() - 0.5) ** 2, "balance_goal": 0.5,
    }
    expected["input_mask_temporal_std"], onset_corr = _music_stats(im, inputs[0])
    assert set(out.stats) == set(expected) | {"mask_onset_corr"}
    # A correlation of float32 frame differences: float32's bound for it, not a relative one.
    tol = onset_corr_tolerance(masks.input_mask, inputs[0])
    assert abs(float(out.stats["mask_onset_corr"]) - onset_corr) <= tol
    for key, value in expected.items():
        assert_scalar_close(out.stats[key], value, key)
        assert out.stats[key].shape == ()
    assert_scalar_close(out.reg_loss, 10 * overlap + 0.5 * coverage + 5 * diversity, "reg_loss")
    assert_scalar_close(out.balance_loss, out.stats["balance"], "balance_loss")


@pytest.fixture(scope="module")
def gradients(agent, inputs, reference):
    """One jitted step run on the fixture's inputs, on silence and on identical inputs.

    Gives, per case, the eval-mode parity objective of the reference asset (value, auxiliary
    outputs, gradients w.r.t. parameters and both inputs) and the gradients of a train-mode
    objective through hard (Gumbel, straight-through) masks with attention dropout.
    """
    graphdef, params, rest = nnx.split(agent, nnx.Param, ...)
    r_in, r_tgt = jnp.asarray(reference["in/R_input"]), jnp.asarray(reference["in/R_target"])

    def parity_objective(params, x, y):
        model = nnx.merge(graphdef, params, rest)
        out = model.generate_creative_masks(x, y)
        restored_input = restore_rms(out.masked_input, x)
        restored_target = restore_rms(out.masked_target, y)
        gen, disc = model.adversarial_loss(out.masked_input, y)
        _, style = model.judge_quality(out.masked_target)
        total = (jnp.sum(restored_input * r_in) + jnp.sum(restored_target * r_tgt)
                 + out.reg_loss + out.balance_loss + gen + disc + jnp.sum(style))
        return total, (restored_input, restored_target, gen, disc, style)

    def train_objective(params, x, y, key):
        model = nnx.merge(graphdef, params, rest)
        rngs = nnx.Rngs(dropout=key, noise=jax.random.fold_in(key, 1))
        out = model.generate_creative_masks(x, y, hard=True, train=True, rngs=rngs)
        masked_input = restore_rms(out.masked_input, x)
        gen, disc = model.adversarial_loss(masked_input, y)
        _, style = model.judge_quality(out.masked_target)
        return (jnp.sum(masked_input * r_in) + out.reg_loss + out.balance_loss + gen + disc
                + jnp.sum(style))

    @jax.jit
    def step(params, x, y, key):
        parity = jax.value_and_grad(parity_objective, argnums=(0, 1, 2), has_aux=True)(
            params, x, y)
        return parity, jax.grad(train_objective, argnums=(0, 1, 2))(params, x, y, key)

    x, _ = inputs
    silence = jnp.zeros_like(x)
    cases = {"fixture": inputs, "silence": (silence, silence), "identical": (x, x)}
    return {name: step(params, a, b, jax.random.key(0)) for name, (a, b) in cases.items()}


def test_losses_gradients_and_rms_restore_match_original(gradients, reference):
    ((total, aux), (g_params, g_x, g_y)), _ = gradients["fixture"]
    restored_input, restored_target, gen, disc, style = aux
    assert_output_close(restored_input, reference["out/restored_input"], "restored_input")
    assert_output_close(restored_target, reference["out/restored_target"], "restored_target")
    assert_scalar_close(gen, reference["out/adversarial/generator_loss"], "generator_loss")
    assert_scalar_close(disc, reference["out/adversarial/discriminator_loss"],
                        "discriminator_loss")
    assert_output_close(style, reference["out/style_score_masked_target"], "style score")
    assert_scalar_close(total, reference["out/objective"], "objective")

    assert_grad_close(g_x, reference["grad/in/input"], "grad/in/input")
    assert_grad_close(g_y, reference["grad/in/target"], "grad/in/target")
    grads = {".".join(map(str, p)): np.asarray(v.get_value(), np.float64)
             for p, v in nnx.to_flat_state(g_params)}
    norm_names = {k[len("gradnorm/param/"):] for k in reference if k.startswith("gradnorm/")}
    assert set(grads) == norm_names
    for name, g in grads.items():
        if f"grad/param/{name}" in reference:
            assert_grad_close(g, reference[f"grad/param/{name}"], name)
        norm = float(reference[f"gradnorm/param/{name}"])
        # Implied by ||g - G|| <= tol ||G||: |norm difference| <= tol ||G|| and
        # |sum difference| <= sqrt(n) tol ||G||.
        assert abs(np.linalg.norm(g) - norm) <= GRAD_TOL * norm, f"{name}: gradient norm"
        assert abs(g.sum() - float(reference[f"gradsum/param/{name}"])) <= (
            GRAD_TOL * norm * np.sqrt(g.size)), f"{name}: gradient sum"


@pytest.mark.parametrize("case", ["fixture", "silence", "identical"])
def test_gradients_finite_for_soft_and_hard_masks(gradients, case):
    parity, train_grads = gradients[case]
    for path, leaf in jax.tree_util.tree_leaves_with_path((parity, train_grads)):
        assert np.all(np.isfinite(leaf)), f"{case}: non-finite value at {path}"
    g_params = {".".join(map(str, p)): v.get_value() for p, v in nnx.to_flat_state(train_grads[0])}
    assert float(jnp.linalg.norm(g_params["mask_generator.input_analyzer.0.bias"])) > 0.0


def test_rhythm_transfer_matches_original(eval_outputs, inputs, reference):
    x, y = inputs
    out = eval_outputs[1][1]
    metrics = jax.jit(evaluate_rhythm_transfer)(x, y, out.masked_input + out.masked_target)
    expected = {k[len("out/rhythm/"):]: v for k, v in reference.items()
                if k.startswith("out/rhythm/")}
    assert set(metrics) == set(expected)
    for key, value in expected.items():
        if value.dtype == bool:
            assert bool(metrics[key]) == bool(value), key
        else:
            assert_scalar_close(metrics[key], value, key)


def test_train_mode_dropout_is_explicit(agent, inputs):
    x, y = inputs
    evaluated = agent.generate_creative_masks(x, y)
    with pytest.raises(ValueError, match="rngs"):
        agent.generate_creative_masks(x, y, train=True)
    a = agent.generate_creative_masks(x, y, train=True, rngs=nnx.Rngs(dropout=1))
    b = agent.generate_creative_masks(x, y, train=True, rngs=nnx.Rngs(dropout=1))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a.masked_input, evaluated.masked_input)

    attention = agent.mask_generator.cross_attention
    rate = attention.dropout
    attention.dropout = 0.0
    try:
        no_dropout = agent.generate_creative_masks(x, y, train=True)
    finally:
        attention.dropout = rate
    chex.assert_trees_all_close(no_dropout, evaluated, rtol=1e-6, atol=1e-7)


def test_hard_masks_are_binary_and_complementary(eval_outputs, agent, inputs):
    masks = eval_outputs[1][3]
    im, tm = np.asarray(masks.input_mask), np.asarray(masks.target_mask)
    assert set(np.unique(im)) == {0.0, 1.0}
    np.testing.assert_array_equal(tm, 1.0 - im)
    assert float(masks.stats["mask_overlap"]) == 0.0 and float(masks.stats["coverage"]) == 0.0
    with pytest.raises(ValueError, match="noise"):
        agent.mask_generator(*inputs, hard=True)


def test_clear_errors(agent, inputs):
    x, y = inputs
    with pytest.raises(ValueError, match="encoding_dim"):
        agent.generate_creative_masks(x[:, :-1], y[:, :-1])
    with pytest.raises(ValueError, match="T >= 16"):
        agent.judge_quality(y[:, :, :15])
    with pytest.raises(ValueError, match="window_size"):
        evaluate_rhythm_transfer(x[:, :, :20], y[:, :, :20], x[:, :, :20])
    no_disc = nnx.eval_shape(lambda: CreativeAgent(x.shape[1], use_discriminator=False,
                                                   rngs=nnx.Rngs(0)))
    assert no_disc.discriminator is None
    with pytest.raises(ValueError, match="use_discriminator=True"):
        no_disc.adversarial_loss(x, y)
