"""jaxaudio.losses as a library: the options the auraloss fixture does not exercise (phase,
chroma, ``reduction="sum"``) against direct NumPy computations of auraloss's definitions;
``jit``/``vmap``/``grad`` safety on silence and identical signals; ``valid`` masks;
multichannel input; the old import paths; and that importing it loads no trainer.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from fixtures import PROJECT_ROOT
from jaxaudio import filterbanks as fb
from jaxaudio import losses as L

SR = 16000
STFT1 = dict(fft_sizes=128, hop_sizes=32, win_lengths=96)
LOSSES = {  # small options so compilation stays cheap
    "mrstft": functools.partial(L.multi_resolution_stft_loss, fft_sizes=(128, 64),
                                hop_sizes=(32, 16), win_lengths=(96, 64)),
    "mrstft_all_terms": functools.partial(L.multi_resolution_stft_loss, **STFT1, w_lin_mag=1.0,
                                          w_phs=1.0, window="hamming", mag_distance="L2",
                                          scale_invariance=True),
    "mel": functools.partial(L.mel_stft_loss, sample_rate=SR, fft_sizes=256, hop_sizes=64,
                             win_lengths=256, n_mels=16),
    "chroma": functools.partial(L.chroma_stft_loss, sample_rate=SR, fft_sizes=256,
                                hop_sizes=64, win_lengths=256),
    "perceptual": functools.partial(L.multi_resolution_stft_loss, **STFT1,
                                    perceptual_weighting=True, sample_rate=SR),
    "sum_and_difference": functools.partial(L.sum_and_difference_stft_loss, **STFT1),
    "esr": L.esr_loss,
    "dc": L.dc_loss,
    "log_cosh": L.log_cosh_loss,
    "snr": L.snr_loss,
    "si_sdr": L.si_sdr_loss,
    "sd_sdr": L.sd_sdr_loss,
}
B, C, N = 2, 2, 2048


def _signals(seed=0, shape=(B, C, N)):
    rng = np.random.default_rng(seed)
    t = np.arange(shape[-1]) / SR
    tone = np.sin(2 * np.pi * rng.uniform(100, 3000, shape[:-1] + (1,)) * t)
    return (0.3 * tone + 0.1 * rng.standard_normal(shape)).astype(np.float32)


# --- NumPy references of auraloss's definitions ----------------------------------------------

def np_stft(x, n_fft, hop, win, window="hann"):
    """torch.stft (centred, reflect) with the float32 window auraloss uses: ``[..., F, T]``."""
    w = np.zeros(n_fft)
    left = (n_fft - win) // 2
    w[left:left + win] = fb.window(window, win, "float32")
    xp = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(n_fft // 2, n_fft // 2)], mode="reflect")
    t = 1 + (xp.shape[-1] - n_fft) // hop
    frames = np.stack([xp[..., i * hop:i * hop + n_fft] * w for i in range(t)], axis=-2)
    return np.swapaxes(np.fft.rfft(frames, axis=-1), -1, -2)


def np_mag(z, eps=1e-8):
    return np.sqrt(np.maximum(z.real**2 + z.imag**2, eps))


@pytest.fixture
def x64():
    """float64 for one test, restored afterwards (the phase jumps by 2 pi where a bin's
    imaginary part rounds across 0, so it is compared without float32 round-off)."""
    before = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", before)


def test_phase_term_is_the_mse_of_angles(x64):
    p, t = (x.astype(np.float64) for x in (_signals(1), _signals(2)))
    zp, zt = np_stft(p, 128, 32, 96), np_stft(t, 128, 32, 96)
    ref = np.mean((np.angle(zp) - np.angle(zt)) ** 2)
    got = L.multi_resolution_stft_loss(p, t, **STFT1, w_sc=0.0, w_log_mag=0.0, w_phs=1.0)
    np.testing.assert_allclose(float(got), ref, rtol=1e-5)
    # the weighted sum of the returned terms is the loss
    parts = L.multi_resolution_stft_loss(p, t, **STFT1, w_phs=0.5, w_lin_mag=2.0,
                                         return_components=True)
    total = parts.sc_mag[0] + parts.log_mag[0] + 2.0 * parts.lin_mag[0] + 0.5 * parts.phs[0]
    np.testing.assert_allclose(float(parts.loss), float(total), rtol=1e-6)
    np.testing.assert_allclose(float(parts.phs[0]), ref, rtol=1e-5)


def test_chroma_loss_is_auraloss_definition():
    p, t = (x.astype(np.float64) for x in (_signals(3), _signals(4)))
    chroma = librosa.filters.chroma(sr=SR, n_fft=256, n_chroma=12).astype(np.float64)
    xm, ym = (chroma @ np_mag(np_stft(s, 256, 64, 256)) for s in (p, t))
    ref = (np.linalg.norm(ym - xm) / np.linalg.norm(ym)
           + np.mean(np.abs(np.log(xm) - np.log(ym))))
    np.testing.assert_allclose(float(LOSSES["chroma"](p, t)), ref, rtol=1e-5)


def test_reduction_sum_and_none():
    p, t = (x.astype(np.float64) for x in (_signals(5), _signals(6)))
    xm, ym = (np_mag(np_stft(s, 128, 32, 96)) for s in (p, t))
    sc = np.linalg.norm(ym - xm) / np.linalg.norm(ym)
    log_l1 = np.abs(np.log(xm) - np.log(ym))
    got = L.multi_resolution_stft_loss(p, t, **STFT1, reduction="sum")
    np.testing.assert_allclose(float(got), sc + log_l1.sum(), rtol=1e-5)
    none = L.multi_resolution_stft_loss(p, t, **STFT1, reduction="none")
    assert none.shape == log_l1.shape  # [B, C, F, T]
    np.testing.assert_allclose(np.asarray(none), sc + log_l1, rtol=1e-4, atol=1e-6)
    for name in ("esr", "dc", "log_cosh", "snr", "si_sdr", "sd_sdr"):
        per = LOSSES[name](p, t, reduction="none")
        assert per.shape == (B, C), name
        np.testing.assert_allclose(float(LOSSES[name](p, t, reduction="sum")),
                                   float(jnp.sum(per)), rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(float(LOSSES[name](p, t)), float(jnp.mean(per)), rtol=1e-6)


def test_int_or_tuple_resolutions_and_jit_with_closed_options():
    p, t = _signals(7), _signals(8)
    as_int = L.multi_resolution_stft_loss(p, t, fft_sizes=128, hop_sizes=32, win_lengths=128)
    as_tuple = L.multi_resolution_stft_loss(p, t, fft_sizes=(128,), hop_sizes=[32],
                                            win_lengths=(128,))
    assert float(as_int) == float(as_tuple)
    fn = jax.jit(functools.partial(L.multi_resolution_stft_loss, fft_sizes=128, hop_sizes=32,
                                   win_lengths=128))
    np.testing.assert_allclose(float(fn(p, t)), float(as_int), rtol=1e-6)
    mono = p[:, :1], t[:, :1]
    np.testing.assert_allclose(float(L.stft_loss(*mono, fft_sizes=128, hop_sizes=32,
                                                 win_sizes=128)),
                               float(L.stft_loss(*mono, fft_sizes=(128,), hop_sizes=(32,),
                                                 win_sizes=(128,))), rtol=0)


def _cases():
    """``[5, B, C, N]`` predictions and targets: random, silent prediction, silent target,
    both silent, identical."""
    p, t = _signals(9), _signals(10)
    z = np.zeros_like(p)
    return np.stack([p, z, p, z, p]), np.stack([t, t, z, z, p])


@pytest.mark.parametrize("name", list(LOSSES))
def test_jit_vmap_grad_finite_on_silence_and_identical(name):
    ps, ts = _cases()
    vg = jax.value_and_grad(lambda a, b: LOSSES[name](a, b))
    values, grads = jax.jit(jax.vmap(vg))(ps, ts)
    assert np.all(np.isfinite(np.asarray(values))), f"{name}: {values}"
    assert np.all(np.isfinite(np.asarray(grads))), f"{name}: non-finite gradient"
    loop = jax.jit(vg)
    for k in range(ps.shape[0]):
        v, g = loop(ps[k], ts[k])
        # vmap batches the same float32 ops; XLA may order sums differently
        np.testing.assert_allclose(values[k], v, rtol=1e-4, atol=1e-5, err_msg=f"{name} {k}")
        scale = float(np.max(np.abs(g))) or 1.0
        np.testing.assert_allclose(grads[k], g, rtol=1e-3, atol=1e-4 * scale)
    # identical signals: the gradient is 0 (torch's |.|' = 0 at 0 and norm' = 0 at 0)
    if name not in ("si_sdr", "sd_sdr", "mrstft_all_terms"):  # their scale depends on it
        assert np.all(np.asarray(grads[4]) == 0.0), name


@pytest.mark.parametrize("name", list(LOSSES))
def test_valid_rows_equal_the_unpadded_batch(name):
    p, t = _signals(11, (3, C, N)), _signals(12, (3, C, N))
    ref = LOSSES[name](p[:2], t[:2])
    pp, tp = p.copy(), t.copy()
    pp[2], tp[2] = np.nan, np.nan
    valid = np.array([True, True, False])
    got, grad = jax.value_and_grad(lambda a: LOSSES[name](a, tp, valid=valid))(pp)
    np.testing.assert_allclose(float(got), float(ref), rtol=2e-5, err_msg=name)
    assert np.all(np.isfinite(np.asarray(grad[:2]))) and np.all(np.asarray(grad[2]) == 0)


def test_valid_with_reduction_none_and_sum():
    p, t = _signals(13, (3, C, N)), _signals(14, (3, C, N))
    valid = np.array([True, False, True])
    none = L.si_sdr_loss(p, t, reduction="none", valid=valid)
    assert np.all(np.asarray(none[1]) == 0)
    full = L.si_sdr_loss(p, t, reduction="none")
    np.testing.assert_allclose(float(L.si_sdr_loss(p, t, reduction="sum", valid=valid)),
                               float(full[0].sum() + full[2].sum()), rtol=1e-6)
    spec = L.multi_resolution_stft_loss(p, t, **STFT1, reduction="none", valid=valid)
    assert spec.shape[:2] == (3, C) and np.all(np.asarray(spec[1]) == 0)


@pytest.mark.parametrize("name", [n for n in LOSSES if n != "sum_and_difference"])
def test_channels_are_separate_signals(name):
    """``[B, C, N]`` gives the loss of the ``B * C`` signals ``[B * C, 1, N]`` (mean reduction)
    and ``[B, N]`` that of ``[B, 1, N]``."""
    p, t = _signals(15), _signals(16)
    flat = LOSSES[name](p.reshape(B * C, 1, N), t.reshape(B * C, 1, N))
    np.testing.assert_allclose(float(LOSSES[name](p, t)), float(flat), rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(float(LOSSES[name](p[:, 0], t[:, 0])),
                               float(LOSSES[name](p[:, :1], t[:, :1])), rtol=1e-6)


def test_sum_and_difference_definition():
    p, t = _signals(17), _signals(18)
    mr = functools.partial(L.multi_resolution_stft_loss, **STFT1)
    s = mr(p[:, 0] + p[:, 1], t[:, 0] + t[:, 1])
    d = mr(p[:, 0] - p[:, 1], t[:, 0] - t[:, 1])
    loss, s_got, d_got = L.sum_and_difference_stft_loss(p, t, **STFT1, w_sum=1.0, w_diff=0.5,
                                                        return_components=True)
    np.testing.assert_allclose([float(loss), float(s_got), float(d_got)],
                               [float(s + 0.5 * d) / 2, float(s), float(d)], rtol=1e-5)


def test_option_errors_name_the_option():
    p = _signals(19)
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.esr_loss(p, p, reduction="max")
    with pytest.raises(ValueError, match="needs one resolution"):
        LOSSES["mrstft"](p, p, reduction="none")
    with pytest.raises(ValueError, match="stereo"):
        L.sum_and_difference_stft_loss(p[:, :1], p[:, :1])
    with pytest.raises(ValueError, match="needs sample_rate"):
        L.multi_resolution_stft_loss(p, p, **STFT1, scale="mel", n_bins=16)
    with pytest.raises(ValueError, match="perceptual_weighting=True needs sample_rate"):
        L.multi_resolution_stft_loss(p, p, **STFT1, perceptual_weighting=True)
    with pytest.raises(ValueError, match="mag_distance"):
        L.multi_resolution_stft_loss(p, p, **STFT1, mag_distance="L3")
    with pytest.raises(ValueError, match="equal shapes"):
        L.dc_loss(p, p[:, :1])
    with pytest.raises(ValueError, match=r"valid must be a \[B\]"):
        L.dc_loss(p, p, valid=np.ones(3, bool))


def test_old_paths_keep_their_functions_and_order():
    from jaxaudio.training import losses as old_losses
    from jaxaudio.training import penalties as old_penalties

    assert old_losses.combined_loss is L.combined_loss
    y, t = _signals(26, (2, 1, 4000)), _signals(27, (2, 1, 4000))
    # the old paths take options by position; jaxaudio.losses only by keyword
    assert float(old_losses.stft_loss(y, t, (128,), (32,), (128,))) == float(
        L.stft_loss(y, t, fft_sizes=128, hop_sizes=32, win_sizes=128))
    assert float(old_losses.mel_loss(y, t, 16000, 256, 16, 64)) == float(
        L.mel_loss(y, t, sample_rate=16000, n_fft=256, n_mels=16, hop_length=64))
    assert float(old_penalties.spectral_outlier_penalty(y, 24000, 256, 64)) == float(
        L.spectral_outlier_penalty(y, n_fft=256, hop_length=64))
    with pytest.raises(TypeError):
        L.stft_loss(y, t, (128,), (32,), (128,))
    i, t, o = _signals(20, (2, 1, 4000)), _signals(21, (2, 1, 4000)), _signals(22, (2, 1, 4000))
    old = old_penalties.modulation_correlation_penalty(i, t, o, m_parts=50)
    assert old_losses.modulation_correlation_penalty is old_penalties.modulation_correlation_penalty
    assert float(L.modulation_correlation_penalty(o, i, t, m_parts=50)) == float(old)


def test_combined_loss_sample_rate():
    o, i, t = _signals(23, (2, 1, 6000)), _signals(24, (2, 1, 6000)), _signals(25, (2, 1, 6000))
    w = (0.3, 0.3, 0.01, 0.02)
    default = L.combined_loss(o, i, t, *w)
    assert default == L.combined_loss(o, i, t, *w, sample_rate=24000)
    other = L.combined_loss(o, i, t, *w, sample_rate=16000)
    assert float(other.mel) != float(default.mel)
    assert float(other.rms_input) == float(default.rms_input)
    assert float(other.spectral) == float(default.spectral)
    ref_mel = 0.5 * (L.mel_loss(o, i, sample_rate=16000) + L.mel_loss(o, t, sample_rate=16000))
    np.testing.assert_allclose(float(other.mel), float(ref_mel), rtol=1e-6)


def test_import_loads_no_trainer_and_no_librosa():
    code = ("import sys, jaxaudio.losses; "
            "print(sorted(m for m in sys.modules if m.startswith('jaxaudio.training') "
            "or m.split('.')[0] in ('librosa', 'orbax', 'mlflow', 'optax')))")
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=PROJECT_ROOT, env=env).stdout.strip()
    assert out == "[]", out
