"""jaxaudio.dsp: STFT, magnitude, mel filterbank and mel spectrogram.

Parity with torch's building blocks comes from ``losses.npz``; the other checks compare with a
direct NumPy transcription of ``torch.stft``'s definition (frame, window, FFT).
"""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaudio import dsp
from fixtures import assert_output_close, load_fixture
from test_losses import parse_call


def numpy_stft(x, n_fft, hop, win, center=True, pad_mode="reflect"):
    """``torch.stft`` by its definition, float64: ``[B, N]`` -> ``[B, F, T]``."""
    w = np.zeros(n_fft)
    left = (n_fft - win) // 2
    w[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    if center:
        mode = {"replicate": "edge", "circular": "wrap"}.get(pad_mode, pad_mode)
        x = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode=mode)
    n_frames = 1 + (x.shape[-1] - n_fft) // hop
    frames = np.stack([x[:, t * hop : t * hop + n_fft] for t in range(n_frames)], axis=1)
    return np.fft.rfft(frames * w, axis=-1).swapaxes(-1, -2)


def test_hann_window_is_periodic_and_cached():
    n = 16
    w = dsp.hann_window(n)
    # exact: the same float64 formula on both sides
    np.testing.assert_allclose(w, 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n) / n), atol=1e-15)
    assert w[0] == 0.0 and w[n // 2] == 1.0  # periodic: no second zero at the end
    assert dsp.hann_window(n) is w and not w.flags.writeable


@pytest.mark.parametrize(
    "n_fft, hop, win, pad_mode",
    [
        (64, 16, 64, "reflect"),  # hop divides the window: n_fft / hop strided slices
        (64, 24, 48, "reflect"),  # window shorter than n_fft, hop not dividing it (gcd path)
        (50, 7, 45, "constant"),  # nearly coprime: more slices than _MAX_SLICES -> gather path
        (32, 8, 32, "replicate"),
        (32, 12, 20, "circular"),
    ],
)
def test_stft_matches_definition(n_fft, hop, win, pad_mode):
    x = np.random.default_rng(0).standard_normal((2, 301))
    got = jax.jit(dsp.stft, static_argnums=(1, 2, 3, 4, 5))(
        x.astype(np.float32), n_fft, hop, win, True, pad_mode
    )
    ref = numpy_stft(x, n_fft, hop, win, pad_mode=pad_mode)
    assert got.shape == ref.shape == (2, n_fft // 2 + 1, 1 + 301 // hop)
    assert got.dtype == jnp.complex64
    # float32 input and window through an FFT of <= 64 points: ~log2(n_fft) eps of the largest
    # bin (2e-7 measured)
    np.testing.assert_allclose(np.asarray(got), ref, atol=2e-5 * np.abs(ref).max())


def test_stft_uncentred_and_leading_axes():
    x = np.random.default_rng(1).standard_normal((3, 2, 200)).astype(np.float32)
    got = dsp.stft(x, 64, 32, 64, center=False)
    ref = numpy_stft(x.reshape(6, 200).astype(np.float64), 64, 32, 64, center=False)
    assert got.shape == (3, 2, 33, 1 + (200 - 64) // 32)
    # a 64-point float32 FFT of float32-exact input: ~log2(64) eps of bins up to ~12
    # (1.3e-6 measured)
    np.testing.assert_allclose(np.asarray(got).reshape(ref.shape), ref, atol=1e-4)


def test_stft_upcasts_bfloat16():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((1, 256)), jnp.bfloat16)
    z = dsp.stft(x, 64, 16)
    assert z.dtype == jnp.complex64
    ref = numpy_stft(np.asarray(x.astype(jnp.float32), np.float64), 64, 16, 64)
    # bf16 is upcast exactly, then as above: float32 FFT round-off (1.1e-6 measured)
    np.testing.assert_allclose(np.asarray(z), ref, atol=1e-4)


def test_stft_rejects_bad_sizes():
    x = jnp.zeros((1, 100))
    with pytest.raises(ValueError, match="win_length"):
        dsp.stft(x, 64, 16, 128)
    with pytest.raises(ValueError, match="reflect padding"):
        dsp.stft(x, 256, 64)
    with pytest.raises(ValueError, match="pad_mode"):
        dsp.stft(x, 32, 8, pad_mode="mirror")


def test_magnitude_gradient_zero_at_zero_and_exact_elsewhere():
    z = jnp.array([0.0 + 0.0j, 3.0 - 4.0j, -1e-3 + 2e-3j], jnp.complex64)
    g = jax.grad(lambda z: jnp.sum(dsp.magnitude(z) * jnp.array([1.0, 2.0, 3.0])))(z)
    g_abs = jax.grad(lambda z: jnp.sum(jnp.abs(z) * jnp.array([1.0, 2.0, 3.0])))(z)
    assert np.all(np.isfinite(np.asarray(g)))
    assert g[0] == 0
    # two float32 formulas for z / |z| (the custom JVP and jnp.abs's): an ulp or two
    np.testing.assert_allclose(np.asarray(g[1:]), np.asarray(g_abs[1:]), rtol=1e-6)
    # exact: magnitude's forward is jnp.abs itself
    chex.assert_trees_all_close(dsp.magnitude(z), jnp.abs(z))
    # through an STFT of silence: exactly zero, as torch
    gx = jax.jit(jax.grad(lambda x: jnp.sum(dsp.magnitude(dsp.stft(x, 32, 8)))))(jnp.zeros((1, 64)))
    assert np.all(np.asarray(gx) == 0)


def test_mel_filterbank_shape_cache_and_fmax_none():
    fb = dsp.mel_filterbank(16000, 512, 40, 0.0, None)
    assert fb.shape == (257, 40) and not fb.flags.writeable
    assert dsp.mel_filterbank(16000, 512, 40, 0.0, None) is fb
    # exact: fmax=None is the Nyquist 8000.0, the same float64 computation
    chex.assert_trees_all_close(fb, dsp.mel_filterbank(16000, 512, 40, 0.0, 8000.0))
    assert np.all(fb >= 0) and np.all(fb.max(axis=0) > 0)
    with pytest.raises(ValueError, match="fmin"):
        dsp.mel_filterbank(16000, 512, 40, 9000.0, 8000.0)


def test_mel_spectrogram_is_filterbank_times_power():
    x = np.random.default_rng(3).standard_normal((2, 1000))
    mel = jax.jit(dsp.mel_spectrogram, static_argnums=(1, 2, 3, 4, 5, 6))
    got = mel(x.astype(np.float32), 16000, 128, 20, 32, 0.0, None)
    power = np.abs(numpy_stft(x, 128, 32, 128)) ** 2
    ref = np.einsum("bft,fm->bmt", power, dsp.mel_filterbank(16000, 128, 20, 0.0, None))
    assert got.shape == (2, 20, 1 + 1000 // 32)
    # power doubles the STFT's float32 relative error and the filterbank sums it; the fixtures'
    # output tolerance (8e-7 relative measured)
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-5 * ref.max())
    # torchaudio's default hop is n_fft // 2
    default_hop = jax.eval_shape(lambda a: dsp.mel_spectrogram(a, 16000, 128, 20), x)
    assert default_hop.shape[-1] == 1 + 1000 // 64


# --- torch's building blocks from losses.npz --------------------------------------------------


@pytest.fixture(scope="module")
def losses_fixture():
    return load_fixture("losses")


def _mel_call(fx) -> dict:
    kw = parse_call(fx.config["calls"]["mel_loss"])
    return {k: kw[k] for k in ("sample_rate", "n_fft", "n_mels", "hop_length", "fmin", "fmax")}


def test_mel_filterbank_matches_torchaudio(losses_fixture):
    ref = losses_fixture["out/mel_filterbank"]
    kw = _mel_call(losses_fixture)
    n_fft, n_mels = 2 * (ref.shape[0] - 1), ref.shape[1]
    assert (n_fft, n_mels) == (kw["n_fft"], kw["n_mels"])
    fb = dsp.mel_filterbank(kw["sample_rate"], n_fft, n_mels, kw["fmin"], kw["fmax"])
    assert_output_close(fb, ref, "mel_filterbank")


def test_mel_spectrogram_matches_torchaudio(losses_fixture):
    ref = losses_fixture["out/mel_spectrogram"]
    kw = _mel_call(losses_fixture)
    got = dsp.mel_spectrogram(losses_fixture["in/pred"], **kw)
    assert_output_close(got, ref, "mel_spectrogram")


def test_stft_magnitude_matches_torch(losses_fixture):
    keys = [k for k in losses_fixture.arrays if k.startswith("out/stft_mag_")]
    assert keys, "losses.npz holds no out/stft_mag_<n_fft>_<hop> building block"
    for key in keys:
        n_fft, hop = map(int, re.fullmatch(r"out/stft_mag_(\d+)_(\d+)", key).groups())
        got = dsp.magnitude(dsp.stft(losses_fixture["in/pred"], n_fft, hop, n_fft))
        assert_output_close(got, losses_fixture[key], key)
