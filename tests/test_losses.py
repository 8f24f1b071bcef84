"""jaxaudio.training.losses: parity with the original's numbers (``losses.npz``) and properties.

Parity reads every value, gradient, shape and option from the fixture: ``meta/config["calls"]``
names each call and its options; ``out/<call>_silent_target``, ``_silent_pred`` and ``_copy``
are variants of a call (zero target, zero prediction, output = input).
"""

from __future__ import annotations

import ast
import functools
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fixtures import (
    GRAD_TOL,
    GRAD_TOL_STFT,
    assert_grad_close,
    assert_scalar_close,
    load_fixture,
)
from jaxaudio.training import losses as L

LOSSES = {
    "rms_loss": L.rms_loss,
    "stft_loss": L.stft_loss,
    "mel_loss": L.mel_loss,
    "spectral_outlier_penalty": L.spectral_outlier_penalty,
    "modulation_correlation_penalty": L.modulation_correlation_penalty,
    "combined_loss": L.combined_loss,
}
# Gradients through STFT log-magnitudes have a float32 floor (fixtures README).
STFT_LOG_MAG = {"stft_loss", "combined_loss"}
VARIANTS = ("_silent_target", "_silent_pred", "_copy")
BUILDING_BLOCKS = ("mel_filterbank", "mel_spectrogram", "stft_mag_")  # tested in test_dsp.py


def parse_call(spec) -> dict:
    """Keyword options of one ``meta/config["calls"]`` entry (a dict, or ``"k=v, ..."`` text)."""
    if isinstance(spec, dict):
        return {k: v for k, v in spec.items() if k != "args"}
    kwargs = {}
    for key, text in re.findall(r"(\w+)=(\[[^\]]*\]|[^,\s]+)", spec):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            continue  # not an option, e.g. "output=pred"
        kwargs[key.lower()] = tuple(value) if isinstance(value, list) else value  # M_parts
    return kwargs


def _function_of(call: str) -> str:
    names = [n for n in LOSSES if call == n or call.startswith(n + "_")]
    assert names, f"losses.npz: meta/config call {call!r} matches no loss function"
    return max(names, key=len)


def fixture_cases(fx) -> list[tuple[str, str, str, dict]]:
    """``(out name, function, variant, kwargs)`` for every loss value in the file."""
    calls = fx.config["calls"]
    cases = []
    for key in fx.arrays:
        if not key.startswith("out/") or key[4:].startswith(BUILDING_BLOCKS):
            continue
        name = key[4:].split("/")[0]  # out/combined_loss/<field> -> combined_loss
        if any(c[0] == name for c in cases):
            continue
        variant = next((v for v in VARIANTS if name.endswith(v) and name[: -len(v)] in calls), "")
        call = name[: len(name) - len(variant)]
        if call not in calls:  # a variant of a call made with its defaults
            assert call in LOSSES, f"losses.npz: {key} matches no call of meta/config"
            spec = {}
        else:
            spec = parse_call(calls[call])
        cases.append((name, _function_of(call), variant, spec))
    return cases


@functools.lru_cache(maxsize=None)
def _jitted(fname: str, frozen_kwargs: tuple):
    """``(pred, input, target) -> (value, d value / d pred)``, jitted once per call options
    (the silent variants reuse their call's compilation); combined_loss's value is its tuple."""
    kwargs = dict(frozen_kwargs)
    fn = LOSSES[fname]
    args = {
        "combined_loss": lambda y, i, t: (y, i, t),
        "spectral_outlier_penalty": lambda y, i, t: (y,),
        "modulation_correlation_penalty": lambda y, i, t: (i, t, y),
    }.get(fname, lambda y, i, t: (y, t))

    def objective(y, i, t):
        out = fn(*args(y, i, t), **kwargs)
        return (out.total, out) if fname == "combined_loss" else (out, out)

    vg = jax.value_and_grad(objective, has_aux=True)
    return jax.jit(lambda y, i, t: (lambda r: (r[0][1], r[1]))(vg(y, i, t)))


def _run_case(fx, name, fname, variant, kwargs):
    pred, inp, tgt = fx["in/pred"], fx["in/input"], fx["in/target"]
    if variant == "_silent_target":
        tgt = np.zeros_like(tgt)
    elif variant == "_silent_pred":
        pred = np.zeros_like(pred)
    elif variant == "_copy":  # Pearson is symmetric: copying the target gives the same value
        pred = inp
    grad_ref = fx.arrays.get(f"grad/{name}")
    if grad_ref is not None:
        pred = pred.reshape(grad_ref.shape)
    elif fname in ("modulation_correlation_penalty", "combined_loss"):
        pred = pred[:, None]  # the original's [B, 1, N] interface
    if pred.ndim == 3:
        inp, tgt = inp[:, None], tgt[:, None]
    value, grad = _jitted(fname, tuple(sorted(kwargs.items())))(pred, inp, tgt)
    if fname == "combined_loss":
        for field, v in value._asdict().items():
            assert_scalar_close(v, fx[f"out/{name}/{field}"], f"{name}/{field}")
    else:
        assert_scalar_close(value, fx[f"out/{name}"], name)
    if grad_ref is not None:
        tol = GRAD_TOL_STFT if fname in STFT_LOG_MAG else GRAD_TOL
        assert_grad_close(grad, grad_ref, f"grad/{name}", tol=tol)


@pytest.fixture(scope="module")
def losses_fixture():
    return load_fixture("losses")


@pytest.mark.parametrize("fname", list(LOSSES))
def test_parity_with_original(losses_fixture, fname):
    cases = [c for c in fixture_cases(losses_fixture) if c[1] == fname]
    assert cases, f"losses.npz holds no value of {fname}"
    for name, fn, variant, kwargs in cases:
        _run_case(losses_fixture, name, fn, variant, kwargs)


def test_fixture_fully_covered(losses_fixture):
    names = {c[0] for c in fixture_cases(losses_fixture)}
    for key in losses_fixture.arrays:
        prefix, _, rest = key.partition("/")
        if prefix == "in" or rest.startswith(BUILDING_BLOCKS):
            continue
        assert prefix in ("out", "grad"), f"losses.npz: unexpected entry {key}"
        assert rest.split("/")[0] in names, f"losses.npz: {key} is not checked by any test"


# --- properties (own signals; no fixture needed) ----------------------------------------------

B, N = 2, 4096
SMALL = {  # small options so compilation stays cheap; defaults are covered by the parity tests
    "rms_loss": {},
    "stft_loss": dict(fft_sizes=(128,), hop_sizes=(32,), win_sizes=(96,)),
    "mel_loss": dict(sample_rate=16000, n_fft=256, n_mels=32, hop_length=64, fmax=None),
    "spectral_outlier_penalty": dict(n_fft=256, hop_length=64),
    "modulation_correlation_penalty": dict(m_parts=50),
    "combined_loss": dict(
        weight_input=0.3, weight_target=0.3, weight_spectral=0.01, weight_mel=0.02,
        weight_correlation=0.5,
    ),
}


def _signals(seed=0, n=N):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    env = 1 + np.sin(2 * np.pi * rng.uniform(1, 5, (3, B, 1)) * t)
    tone = np.sin(2 * np.pi * rng.uniform(100, 4000, (3, B, 1)) * t)
    x = 0.1 * env * (tone + 0.3 * rng.standard_normal((3, B, n)))
    return x.astype(np.float32)  # [3, B, N]: prediction/output, target, input


def _call(fname, y, t, i):
    """The loss with its prediction first: ``(pred, target, input) -> scalar``."""
    fn, kw = LOSSES[fname], SMALL[fname]
    if fname == "spectral_outlier_penalty":
        return fn(y, **kw)
    if fname == "modulation_correlation_penalty":
        return fn(i, t, y, **kw)
    if fname == "combined_loss":
        return fn(y, i, t, **kw).total
    return fn(y, t, **kw)


@pytest.mark.parametrize("fname", ["rms_loss", "stft_loss", "mel_loss"])
def test_identical_signals_give_zero_with_zero_gradient(fname):
    y, _, _ = _signals()
    value, grad = jax.jit(jax.value_and_grad(lambda a, b: _call(fname, a, b, b)))(y, y)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def _cases():
    """Four ``(pred, target, input)`` batches: random, silent prediction, silent target and
    identical inputs, stacked ``[4, B, N]``."""
    y, t, i = _signals()
    zeros = np.zeros_like(y)
    return np.stack([y, zeros, y, y]), np.stack([t, t, zeros, y]), np.stack([i, i, i, y])


@pytest.mark.parametrize("fname", [n for n in LOSSES if n != "combined_loss"])
def test_vmap_equals_loop_with_finite_gradients(fname):
    """The four cases vmapped over a leading axis in the ``[B, 1, N]`` layout equal a loop of
    ``[B, N]`` calls, and every gradient is finite."""
    ys, ts, is_ = _cases()
    vg = jax.value_and_grad(lambda a, b, c: _call(fname, a, b, c))
    values, grads = jax.jit(jax.vmap(vg))(ys[:, :, None], ts[:, :, None], is_[:, :, None])
    chex.assert_shape(grads, (4, B, 1, N))
    assert np.all(np.isfinite(np.asarray(values))), f"{fname}: non-finite value {values}"
    assert np.all(np.isfinite(np.asarray(grads))), f"{fname}: non-finite gradient"
    loop = jax.jit(vg)
    for k in range(4):
        v, g = loop(ys[k], ts[k], is_[k])
        # vmap batches the same ops; XLA may block the batched sums otherwise (bitwise on CPU):
        # round-off of sums over the spectrogram, amplified in gradients at small |X| (rtol 1e-4)
        np.testing.assert_allclose(values[k], v, rtol=1e-5, err_msg=f"{fname} case {k}")
        scale = float(np.max(np.abs(g))) or 1.0
        np.testing.assert_allclose(grads[k, :, 0], g, rtol=1e-4, atol=1e-5 * scale)


def test_combined_loss_finite_under_vmap():
    """Every weight on: finite values and gradients in the four cases (combined_loss is a
    weighted sum of the losses whose vmap equals their loop above)."""
    ys, ts, is_ = _cases()
    vg = jax.value_and_grad(lambda a, b, c: _call("combined_loss", a, b, c))
    values, grads = jax.jit(jax.vmap(vg))(ys, ts, is_)
    chex.assert_shape(grads, (4, B, N))
    assert np.all(np.isfinite(np.asarray(values))), f"non-finite value {values}"
    assert np.all(np.isfinite(np.asarray(grads))), "non-finite gradient"


def test_jit_equals_eager():
    # eager runs op by op (every primitive compiled on its own): the cheap losses only
    y, t, i = _signals(1)
    # jit fuses but keeps the float32 operations: a few ulps at most (bitwise on CPU)
    np.testing.assert_allclose(jax.jit(L.rms_loss)(y, t), L.rms_loss(y, t), rtol=1e-6)
    corr = functools.partial(L.modulation_correlation_penalty, m_parts=50)
    np.testing.assert_allclose(jax.jit(corr)(i, t, y), corr(i, t, y), rtol=1e-6)


def test_low_precision_input_is_computed_in_float32():
    y, t, i = _signals(2)
    y16, t16, i16 = (jnp.asarray(a, jnp.bfloat16) for a in (y, t, i))
    for fname in LOSSES:  # shapes and dtypes only: no compilation
        out = jax.eval_shape(lambda a, b, c: _call(fname, a, b, c), y16, t16, i16)
        assert out.dtype == jnp.float32, f"{fname}: {out.dtype}"
    fn = jax.jit(functools.partial(L.modulation_correlation_penalty, m_parts=50))
    ref = fn(*(a.astype(jnp.float32) for a in (i16, t16, y16)))
    # bf16 upcasts exactly, so the float32 computations are the same: exact in effect
    np.testing.assert_allclose(fn(i16, t16, y16), ref, rtol=1e-6)


def test_combined_loss_skips_concrete_zero_weights():
    y, t, i = _signals(3)
    jaxpr = str(jax.make_jaxpr(lambda a: L.combined_loss(a, i, t, 1.0, 0, 0.0, 0, 0.0))(y))
    assert "fft" not in jaxpr and "reduce_max" not in jaxpr
    out = L.combined_loss(y, i, t, 1.0, -2.0, 0.0, 0, 0.0)  # the original's `weight > 0`
    assert float(out.rms_input) > 0 and float(out.rms_target) == 0.0
    assert float(out.spectral) == float(out.mel) == float(out.corr_penalty) == 0.0
    # exact: the total is 1.0 * rms_input plus exact zeros
    chex.assert_trees_all_close(out.total, out.rms_input)


def test_combined_loss_traced_weights_match_concrete():
    y, t, i = _signals(4)

    def run(w_in, w_tg, w_corr):
        return L.combined_loss(y, i, t, w_in, w_tg, 0.0, 0.0, w_corr)

    traced = jax.jit(run)(0.3, 0.0, 0.5)
    # traced or constant float32 weights: the same products, a few ulps at most (bitwise on CPU)
    chex.assert_trees_all_close(traced, run(0.3, 0.0, 0.5), rtol=1e-6)
    assert float(traced.rms_target) == 0.0  # computed, but zeroed like the original's skip


def test_correlation_penalty_nan_guard():
    y, t, i = _signals(5)
    y = y.copy()
    y[1, 7] = np.nan
    value, grad = jax.jit(jax.value_and_grad(
        lambda o: L.modulation_correlation_penalty(i, t, o, m_parts=50)
    ))(y)
    assert float(value) == 0.0
    assert np.all(np.asarray(grad) == 0.0)


def test_layout_and_option_errors():
    y = np.zeros((2, 2, 4096), np.float32)
    with pytest.raises(ValueError, match=r"y_pred: expected mono audio \[B, 1, N\]"):
        L.stft_loss(y, y)
    with pytest.raises(ValueError, match="equal shapes"):
        L.rms_loss(np.zeros((2, 100)), np.zeros((2, 101)))
    with pytest.raises(ValueError, match="equal length"):
        L.stft_loss(y[:, 0], y[:, 0], fft_sizes=(64, 128), hop_sizes=(16,), win_sizes=(64,))
    with pytest.raises(ValueError, match="holds no STFT bin"):
        L.spectral_outlier_penalty(y[:, 0], n_fft=256, freq_bands=((1800, 1810),))
    with pytest.raises(ValueError, match="m_parts"):
        L.modulation_correlation_penalty(y[:, :1, :100], y[:, :1, :100], y[:, :1, :100])


def test_valid_weights_equal_the_unpadded_batch():
    """A padded batch with ``valid`` gives the losses of its valid rows alone (validation's
    last batch), also when the padding rows hold NaN."""
    from jaxaudio.training.losses import combined_loss

    key = jax.random.key(7)
    k1, k2, k3 = jax.random.split(key, 3)
    shape = (3, 1, 6000)
    out = 0.1 * jax.random.normal(k1, shape)
    inp = 0.2 * jax.random.normal(k2, shape)
    tgt = 0.3 * jax.random.normal(k3, shape)
    weights = (0.3, 0.4, 0.01, 0.02, 0.5)
    ref = combined_loss(out[:2], inp[:2], tgt[:2], *weights[:4], weight_correlation=weights[4])
    poison = lambda x: x.at[2].set(jnp.nan)
    got = jax.jit(lambda o, i, t, v: combined_loss(o, i, t, *weights[:4],
                                                     weight_correlation=weights[4], valid=v))(
        poison(out), poison(inp), poison(tgt), jnp.array([1.0, 1.0, 0.0]))
    for name, a, b in zip(ref._fields, got, ref):
        # valid-weighted sums over 3 rows (one weighted 0) vs plain means over 2: other float32
        # summation orders, ~log2(n) eps
        np.testing.assert_allclose(float(a), float(b), rtol=2e-6, err_msg=name)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("fname", list(LOSSES))
def test_non_finite_prediction_never_scores_finite(fname, bad):
    """A NaN or an infinity anywhere in the prediction gives a non-finite loss, jitted too.
    The one exception is the original's correlation-penalty guard (NaN output -> 0), which is
    part of its definition; combined_loss's total still goes NaN with it."""
    y, t, i = _signals(6)
    y = y.copy()
    y[1, 123] = bad
    value = float(jax.jit(lambda a, b, c: _call(fname, a, b, c))(y, t, i))
    if fname == "modulation_correlation_penalty" and np.isnan(bad):
        assert value == 0.0
    else:
        assert not np.isfinite(value), f"{fname} scored {value} on a prediction holding {bad}"


def test_combined_loss_total_is_nan_whatever_the_weights():
    y, t, i = _signals(7)
    y = y.copy()
    y[0, 5] = np.nan
    only_corr = L.combined_loss(y, i, t, 0.0, 0.0, 0.0, 0.0, weight_correlation=0.5)
    assert float(only_corr.corr_penalty) == 0.0  # the original's guard, kept
    assert np.isnan(float(only_corr.total))


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.bool_])
def test_integer_audio_is_refused_naming_the_dtype(dtype):
    y, t, _ = _signals(8)
    pcm = (np.clip(y, -1, 1) * 32767).astype(dtype)
    for fname in ("rms_loss", "stft_loss", "mel_loss"):
        with pytest.raises(TypeError, match=rf"floating-point audio.*{np.dtype(dtype).name}"):
            LOSSES[fname](pcm, t)
    with pytest.raises(TypeError, match=np.dtype(dtype).name):
        L.spectral_outlier_penalty(pcm)


def test_empty_batch_and_bad_mel_options_are_errors_naming_the_argument():
    y, t, i = _signals(9)
    with pytest.raises(ValueError, match=r"output: .*empty batch of shape \(0, "):
        L.rms_loss(y[:0], t[:0])
    with pytest.raises(ValueError, match=r"y_pred: .*empty batch"):
        L.stft_loss(y[:, :0], t[:, :0])
    with pytest.raises(ValueError, match="n_mels must be >= 1, got 0"):
        L.mel_loss(y, t, n_mels=0)
    with pytest.raises(ValueError, match="fmax=13000 Hz is above half the sample rate"):
        L.mel_loss(y, t, sample_rate=24000, fmax=13000.0)
    assert np.isfinite(float(L.mel_loss(y, t, sample_rate=24000, fmax=12000.0)))


def test_correlation_penalty_checks_its_shapes():
    y, t, i = _signals(10)
    with pytest.raises(ValueError, match=r"input_audio .* target_audio .* equal shapes"):
        L.modulation_correlation_penalty(i, t[:, :-100], y, m_parts=50)
    with pytest.raises(ValueError, match=r"valid must be a \[B\]"):
        L.modulation_correlation_penalty(i, t, y, m_parts=50, valid=np.ones(B + 1))
