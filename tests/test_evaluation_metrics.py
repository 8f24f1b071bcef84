"""Quality metrics on signals with known answers: a pure comb, white noise, a sine, a copy of
the song, click tracks, triads, silence; and the named per-clip metrics and their medians."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxaudio.data.synth import draw_song, render_drums, render_harmony
from jaxaudio.evaluation import (aggregate, chroma_similarity, clip_metrics, comb_contrast_db,
                                 distance_ratio, evaluate_batch, format_table,
                                 high_frequency_share, log_spectral_distance, onset_correlation)
from jaxaudio.evaluation.metrics import onset_envelope

SR = 24000
N = 2 * SR
MDCT_RATE = 187.5  # 24 kHz / the MDCT hop of 128


def noise(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def sine(freq: float, n: int = N) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(n) / SR)


def triad(midis, n: int = N) -> np.ndarray:
    """Three notes with two overtones each."""
    t = np.arange(n) / SR
    return sum(np.sin(2 * np.pi * 440 * 2 ** ((m - 69) / 12) * h * t) / h
               for m in midis for h in (1, 2, 3))


def click_track(seed: int = 0, n: int = N) -> np.ndarray:
    """Decaying noise bursts at irregular times (so the reversed track does not line up)."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    x[np.sort(rng.choice(n - 4000, 10, replace=False))] = 1.0
    burst = rng.standard_normal(2000) * np.exp(-np.arange(2000) / 150)
    return np.convolve(x, burst)[:n]


@pytest.fixture(scope="module")
def pair():
    """Drums and harmony of one synthetic song (2 s)."""
    rng = np.random.default_rng([2026, 0])
    song = draw_song(rng)
    # float64, as clip_metrics sums the song: a float32 sum differs by rounding.
    return (render_drums(song, N, SR, rng).astype(np.float64),
            render_harmony(song, N, SR, rng).astype(np.float64))


def test_comb_contrast_of_a_pure_comb_noise_and_silence():
    comb = np.zeros(N)
    comb[::128] = 1.0  # a pulse train at 187.5 Hz: every harmonic, nothing between
    assert comb_contrast_db(comb, SR, MDCT_RATE) > 20.0
    for seed in range(3):
        for rate in (MDCT_RATE, 75.0):  # the MDCT and EnCodec frame rates
            # noise's Welch spectrum is flat but for averaging noise: within ~0.2 dB of 0 (measured)
            assert abs(comb_contrast_db(noise(seed), SR, rate)) < 3.0
    # A comb at another rate is not this rate's comb.
    other = np.zeros(N)
    other[::97] = 1.0
    assert comb_contrast_db(other, SR, MDCT_RATE) < 0.5 * comb_contrast_db(comb, SR, MDCT_RATE)
    assert comb_contrast_db(np.zeros(N), SR, MDCT_RATE) == 0.0
    with pytest.raises(ValueError, match="frame_rate"):
        comb_contrast_db(noise(), SR, 0.0)


def test_high_frequency_share_of_noise_sine_and_silence():
    # sampling: each half of the band holds 12000 chi-square bins, so the share varies by ~0.3
    # points (0.58 off here); 1.5 is ~5 sigma
    assert high_frequency_share(noise(), SR) == pytest.approx(50.0, abs=1.5)
    # both sines make whole periods in 2 s: no leakage, only float64 round-off (~1e-23 %)
    assert high_frequency_share(sine(1000.0), SR) < 1e-6
    assert high_frequency_share(sine(8000.0), SR) > 99.9
    assert high_frequency_share(np.zeros(N), SR) == 0.0


def test_log_spectral_distance_properties():
    x, y = noise(0), triad([60, 64, 67])
    assert log_spectral_distance(x, x, SR) == 0.0
    # float64: RMS normalisation makes 3x and x equal up to round-off (3e-16 measured)
    assert log_spectral_distance(3.0 * x, x, SR) == pytest.approx(0.0, abs=1e-9)  # level-free
    d = log_spectral_distance(x, y, SR)
    # exact: |log a - log b| is symmetric bit for bit; approx is moot
    assert d > 1.0 and d == pytest.approx(log_spectral_distance(y, x, SR))
    assert log_spectral_distance(x, noise(1), SR) < 0.5 * d  # another noise is nearer than a chord
    assert log_spectral_distance(np.zeros(N), np.zeros(N), SR) == 0.0
    assert math.isfinite(log_spectral_distance(np.zeros(N), x, SR))


def test_distance_ratio_copy_parts_and_silence(pair):
    drums, harmony = pair
    song = drums + harmony
    # a copy gives delta / (D + delta) < delta = 1e-3: its own distance is exactly 0
    assert distance_ratio(song, drums, harmony, song, SR) < 1e-3
    closer, farther = sorted((drums, harmony), key=lambda p: log_spectral_distance(p, song, SR))
    # exact: the same distance computed twice on the same arrays; approx is moot
    assert distance_ratio(closer, drums, harmony, song, SR) == pytest.approx(1.0)
    assert distance_ratio(farther, drums, harmony, song, SR) > 1.0
    assert distance_ratio(noise(), drums, harmony, song, SR) > 1.0
    z = np.zeros(N)
    assert distance_ratio(z, z, z, z, SR) == 1.0


def test_onset_correlation_self_reversed_and_flat():
    clicks = click_track()
    # float64 sum(a * a) / sqrt(sum(a * a) ** 2): within an ulp of 1
    assert onset_correlation(clicks, clicks, SR) == pytest.approx(1.0)
    # unrelated sparse click envelopes correlate by chance only (0.03 and 0.11 measured)
    assert abs(onset_correlation(clicks, clicks[::-1], SR)) < 0.3
    assert onset_correlation(clicks, click_track(5), SR) < 0.3
    assert onset_correlation(np.zeros(N), clicks, SR) == 0.0
    assert onset_correlation(np.zeros(N), np.zeros(N), SR) == 0.0
    # a steady tone's envelope is nearly flat: chance correlation only (-0.03 measured)
    assert onset_correlation(sine(440.0), clicks, SR) == pytest.approx(0.0, abs=0.1)


def test_onset_envelope_agrees_with_librosa(pair):
    import librosa  # a cross-check only: the metrics never import it (not on the GPU image)

    drums = pair[0]
    ours = onset_envelope(drums, SR)
    theirs = librosa.onset.onset_strength(y=drums.astype(np.float32), sr=SR, n_fft=1024,
                                          hop_length=256, n_mels=64, lag=1, max_size=1,
                                          center=True)
    # librosa delays its envelope by n_fft / 2 samples (2 frames); ours is at frame centres.
    shift = 1024 // (2 * 256)
    n = min(ours.size, theirs.size) - shift
    # librosa differs in details (float32 input, Slaney-normalised mel filters): 0.996 measured
    assert np.corrcoef(ours[:n], theirs[shift:shift + n])[0, 1] > 0.98


def test_chroma_similarity_of_triads_and_silence():
    c_major, f_sharp_major = triad([60, 64, 67]), triad([66, 70, 73])
    # float64 cosine of a chroma with itself or a scaled copy: within an ulp or two of 1
    assert chroma_similarity(c_major, c_major, SR) == pytest.approx(1.0)
    assert chroma_similarity(0.1 * c_major, c_major, SR) == pytest.approx(1.0)
    assert chroma_similarity(f_sharp_major, c_major, SR) < 0.2
    # The same chord an octave up is the same harmony.
    assert chroma_similarity(triad([72, 76, 79]), c_major, SR) > 0.9
    assert chroma_similarity(np.zeros(N), c_major, SR) == 0.0
    assert chroma_similarity(c_major, np.zeros(N), SR) == 0.0


def test_clip_metrics_of_a_copy_of_the_song_is_perfect(pair):
    drums, harmony = pair
    m = clip_metrics(drums + harmony, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
    # exact: output == song gives a distance and excesses of exactly 0, and the gain is this
    # very difference: these tolerances are moot; the ratio is delta / (D + delta) < delta
    assert m["distance_output_song"] == pytest.approx(0.0, abs=1e-9)
    assert m["distance_ratio"] < 1e-3
    assert m["comb_db_excess"] == pytest.approx(0.0, abs=1e-6)
    assert m["hf_share_excess"] == pytest.approx(0.0, abs=1e-6)
    assert m["chroma_sim_target"] > m["chroma_sim_input_baseline"] + 0.3
    assert m["onset_corr_input"] > 0.7
    assert m["chroma_sim_gain"] == pytest.approx(
        m["chroma_sim_target"] - m["chroma_sim_input_baseline"])


def test_clip_metrics_see_a_buzz_and_hiss(pair):
    drums, harmony = pair
    song = drums + harmony
    comb = np.zeros(N)
    comb[::128] = 0.5 * np.abs(song).max()
    buzz = clip_metrics(song + comb, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
    hiss = clip_metrics(song + 0.3 * noise(), drums, harmony, sample_rate=SR,
                        frame_rate=MDCT_RATE)
    # white noise adds no comb: as for noise alone, a few tenths of a dB (0.6 measured)
    assert buzz["comb_db_excess"] > 5.0 and abs(hiss["comb_db_excess"]) < 3.0
    assert hiss["hf_share_excess"] > 10.0
    assert hiss["distance_ratio"] > 1.0


def test_reference_free_mode_and_silence_are_finite(pair):
    drums, harmony = pair
    m = clip_metrics(harmony, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE,
                     song_mode="none")
    assert "distance_ratio" not in m and "comb_db_excess" not in m
    assert {"onset_corr_input", "chroma_sim_target", "chroma_sim_input_baseline",
            "comb_db_output", "hf_share_output"} <= set(m)
    # harmony against itself: a float64 cosine within an ulp of 1
    assert m["chroma_sim_target"] == pytest.approx(1.0)
    z = np.zeros(N)
    silent = clip_metrics(z, z, z, sample_rate=SR, frame_rate=MDCT_RATE)
    assert all(math.isfinite(v) for v in silent.values()), silent
    assert silent["distance_ratio"] == 1.0 and silent["comb_db_excess"] == 0.0
    with pytest.raises(ValueError, match="song_mode"):
        clip_metrics(z, z, z, sample_rate=SR, frame_rate=MDCT_RATE, song_mode="mix")


def test_aggregate_batch_and_table(pair):
    drums, harmony = pair
    song = drums + harmony
    outputs = np.stack([song, drums, harmony])
    batch = evaluate_batch(outputs, np.stack([drums] * 3), np.stack([harmony] * 3),
                           sample_rate=SR, frame_rate=MDCT_RATE)
    single = [clip_metrics(o, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
              for o in outputs]
    assert batch["count"] == 3.0
    for key in single[0]:
        # exact: the batch runs clip_metrics clip by clip on the same float64 values
        assert batch[key] == pytest.approx(float(np.median([s[key] for s in single])))
    assert aggregate([{"a": 1.0}, {"a": 3.0, "b": 2.0}]) == {"a": 2.0, "b": 2.0, "count": 2.0}
    table = format_table(single, ["song", "drums", "harmony"])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["pair", "distance"] and lines[-1].startswith("median (3)")
    assert len(lines) == 7 and "0.00" in lines[2]
    with pytest.raises(ValueError, match=r"\[B, N\]"):
        evaluate_batch(song, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
