"""jaxaudio.filterbanks: windows, mel and chroma filterbanks and the A-weighting FIR, against
scipy and librosa (test-time references only: jaxaudio builds them in NumPy)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import scipy.signal

from jaxaudio import dsp, filterbanks as fb

SIZES = [(24000, 1024, 64), (24000, 2048, 128), (16000, 512, 40), (22050, 2048, 80),
         (44100, 4096, 229)]


@pytest.mark.parametrize("sr,n_fft,n_mels", SIZES)
@pytest.mark.parametrize("htk", [False, True])
@pytest.mark.parametrize("norm", ["slaney", None])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, htk, norm, dtype):
    ours = fb.mel_filterbank(sr, n_fft, n_mels, htk=htk, norm=norm, dtype=dtype)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, htk=htk, norm=norm, dtype=dtype)
    # the same operations in the same dtype: bitwise
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref)
    assert not ours.flags.writeable
    assert fb.mel_filterbank(sr, n_fft, n_mels, htk=htk, norm=norm, dtype=dtype) is ours


def test_mel_filterbank_with_band_limits_equals_librosa():
    ours = fb.mel_filterbank(24000, 1024, 80, 50.0, 8000.0, htk=True, norm=None)
    ref = librosa.filters.mel(sr=24000, n_fft=1024, n_mels=80, fmin=50.0, fmax=8000.0, htk=True,
                              norm=None, dtype=np.float64)
    assert np.array_equal(ours, ref)


def test_dsp_mel_filterbank_is_librosa_htk_without_librosa():
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=40, htk=True, norm=None,
                              dtype=np.float64).T
    assert np.array_equal(dsp.mel_filterbank(16000, 512, 40, 0.0, None), ref)


@pytest.mark.parametrize("sr,n_fft", [(24000, 1024), (16000, 512), (44100, 2048), (22050, 600)])
@pytest.mark.parametrize("n_chroma", [12, 24, 6])
def test_chroma_filterbank_equals_librosa(sr, n_fft, n_chroma):
    ours = fb.chroma_filterbank(sr, n_fft, n_chroma)
    ref = librosa.filters.chroma(sr=sr, n_fft=n_fft, n_chroma=n_chroma)
    assert ours.dtype == ref.dtype and np.array_equal(ours, ref)


SCIPY_NAMES = {"hann": "hann", "hamming": "hamming", "blackman": "blackman",
               "bartlett": "bartlett", "kaiser": ("kaiser", 12.0)}


@pytest.mark.parametrize("name", sorted(fb.WINDOWS))
@pytest.mark.parametrize("n", [2, 7, 240, 600, 1024])
def test_windows_are_periodic_and_float32_variant_rounds_them(name, n):
    exact = fb.window(name, n)
    ref = scipy.signal.get_window(SCIPY_NAMES[name], n, fftbins=True)
    np.testing.assert_allclose(exact, ref, rtol=0, atol=1e-15)
    assert fb.window(f"{name}_window", n) is not None  # auraloss's spelling
    f32 = fb.window(name, n, "float32")
    # torch's float32 recipe: a few float32 roundings of values at most 1
    np.testing.assert_allclose(f32, exact, rtol=0, atol=4 * np.finfo(np.float32).eps)
    assert np.array_equal(f32, f32.astype(np.float32))  # float32 values
    assert fb.window(name, 1).tolist() == [1.0]


def test_hann_matches_dsp_window():
    np.testing.assert_array_equal(fb.window("hann", 512), dsp.hann_window(512))


def test_unknown_window_and_bad_lengths():
    with pytest.raises(ValueError, match="unknown window 'tukey'"):
        fb.window("tukey", 16)
    with pytest.raises(ValueError, match="length must be >= 1"):
        fb.window("hann", 0)
    with pytest.raises(ValueError, match="ntaps must be odd"):
        fb.a_weighting_taps(24000, 100)


def test_a_weighting_taps_follow_the_a_weighting_curve():
    taps = fb.a_weighting_taps(48000)
    assert taps.shape == (101,) and np.array_equal(taps, taps[::-1])  # linear phase
    assert np.array_equal(taps, taps.astype(np.float32))
    w, h = scipy.signal.freqz(taps, worN=[100.0, 1000.0, 4000.0], fs=48000)
    db = 20 * np.log10(np.abs(h))
    # A-weighting: about -19 dB at 100 Hz, 0 dB at 1 kHz, +1 dB at 4 kHz (a 101-tap fit)
    assert db[0] < -10 and abs(db[1]) < 1.5 and db[2] > -1
