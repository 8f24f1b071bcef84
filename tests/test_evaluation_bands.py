"""Band-wise measures with known answers: a hard crossover, the input itself, the song itself;
one onset definition for the full band and the bands; the names in clip_metrics, validation
and the table."""

from __future__ import annotations

import numpy as np
import pytest

from jaxaudio.data.synth import draw_song, render_drums, render_harmony
from jaxaudio.evaluation import BANDS, band_metrics, clip_metrics, format_table
from jaxaudio.evaluation.bands import BAND_NAMES, band_keys
from jaxaudio.evaluation.metrics import band_channels, onset_envelope
from jaxaudio.evaluation.quality import BAND_COLUMNS
from jaxaudio.training.validator import quality

SR = 24000
N = 2 * SR
MDCT_RATE = 187.5


def parts(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Drums and harmony of one synthetic song (2 s, float64)."""
    rng = np.random.default_rng([2026, seed])
    song = draw_song(rng)
    return (render_drums(song, N, SR, rng).astype(np.float64),
            render_harmony(song, N, SR, rng).astype(np.float64))


def brickwall(x: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """``x`` split exactly at ``cutoff`` Hz (FFT mask): ``(below, above)``, summing to ``x``."""
    spectrum, freqs = np.fft.rfft(x), np.fft.rfftfreq(x.size, 1.0 / SR)
    return (np.fft.irfft(np.where(freqs < cutoff, spectrum, 0), x.size),
            np.fft.irfft(np.where(freqs >= cutoff, spectrum, 0), x.size))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_crossover_at_1500_hz_scores_low_below_it(seed):
    """Output = harmony below 1.5 kHz + drums above: the full-band onset correlation is high
    (0.95-0.97 measured), the band below 250 Hz, holding no drums, is not."""
    drums, harmony = parts(seed)
    output = brickwall(harmony, 1500.0)[0] + brickwall(drums, 1500.0)[1]
    m = clip_metrics(output, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
    assert m["onset_corr_input"] > 0.9
    # measured (seeds 0, 1, 2): output 0.04, 0.10, 0.25; the song's ceiling 0.55, 0.40, 0.71
    assert m["onset_corr_0_250"] < 0.3
    assert m["song_onset_corr_0_250"] - m["onset_corr_0_250"] > 0.25
    # Above the crossover the drums are all there: 0.99-1.00 measured.
    assert m["onset_corr_2000_6000"] > 0.95 and m["onset_corr_6000_up"] > 0.95
    # Note: 250-2000 Hz straddles 1.5 kHz; its 1.5-2 kHz filters (5 of 24) carry the drums'
    # onsets, so it reads 0.6-0.8 there, above the song's own (-0.1-0.4): no assertion.


def test_the_input_as_output_scores_one_in_every_band_with_energy():
    drums, harmony = parts(0)
    m = band_metrics(drums, drums, SR, song=drums + harmony)
    for name in BAND_NAMES:
        # the same float64 envelope on both sides: Pearson within a few ulps of 1
        assert m[f"onset_corr_{name}"] == pytest.approx(1.0, abs=1e-12)
    # Drums without energy above 6 kHz: that band reads a flat floor, so 0, not 1. (Faded in
    # and out: the brickwall's circular ringing against the STFT's zero-padded ends would
    # click up to -49 dB above 6 kHz, measured; faded, it stays at the -80 dB floor.)
    fade = np.minimum(1.0, np.minimum(np.arange(N), np.arange(N)[::-1]) / 2400) ** 2
    low = brickwall(drums, 2000.0)[0] * fade
    m = band_metrics(low, low, SR)
    assert set(m) == {f"onset_corr_{n}" for n in BAND_NAMES}
    assert m["onset_corr_0_250"] == pytest.approx(1.0, abs=1e-12)
    assert m["onset_corr_6000_up"] == 0.0


def test_the_song_as_output_gives_energy_correlation_one():
    drums, harmony = parts(1)
    song = drums + harmony
    m = band_metrics(song, drums, SR, song=song)
    for name in BAND_NAMES:
        # the same float64 envelope on both sides: Pearson within a few ulps of 1
        assert m[f"energy_corr_{name}"] == pytest.approx(1.0, abs=1e-12)
        # exact: the output is the song, so both onset figures are one computation
        assert m[f"onset_corr_{name}"] == m[f"song_onset_corr_{name}"]
    silent = band_metrics(np.zeros(N), drums, SR, song=song)
    assert all(v == 0.0 for k, v in silent.items() if not k.startswith("song_")), silent


def test_full_band_onset_is_the_band_onsets_weighted_by_filter_count():
    """One definition: the full-band envelope is the mean over all 64 filters, so the
    filter-count-weighted mean of the envelopes of bands that partition the spectrum."""
    drums, harmony = parts(2)
    x = drums + harmony
    counts = [int(band_channels(SR, b).sum()) for b in BANDS]
    assert counts == [6, 24, 20, 14] and sum(counts) == 64
    weighted = sum(c * onset_envelope(x, SR, band=b) for c, b in zip(counts, BANDS)) / 64
    # float64 sums in another order: round-off only
    np.testing.assert_allclose(weighted, onset_envelope(x, SR), rtol=1e-12, atol=1e-12)
    # At 12 kHz nothing lies above 6 kHz: that band has no filter and reads zeros.
    assert not band_channels(12000, BANDS[-1]).any()
    assert not onset_envelope(x[::2], 12000, band=BANDS[-1]).any()


def test_band_names_in_clip_metrics_validation_and_table():
    drums, harmony = parts(0)
    with_song = clip_metrics(harmony, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE)
    assert set(band_keys()) <= set(with_song)
    assert "onset_corr_250_2000" in with_song and "energy_corr_6000_up" in with_song
    free = clip_metrics(harmony, drums, harmony, sample_rate=SR, frame_rate=MDCT_RATE,
                        song_mode="none")
    assert set(band_keys(with_song=False)) <= set(free)
    assert not any(k.startswith(("song_onset_corr", "energy_corr")) for k in free)
    audio = {k: v[None, None, : SR // 2].astype(np.float32)
             for k, v in (("input", drums), ("target", harmony), ("output", drums + harmony))}
    logged = quality(audio, num=1, sample_rate=SR, frame_rate=MDCT_RATE, song_mode="sum")
    assert {f"quality_{k}" for k in band_keys()} <= set(logged)
    table = format_table([with_song, free], ["a", "b"], columns=BAND_COLUMNS)
    header = table.splitlines()[0]
    assert "<250 onset" in header and ">6k onset" in header and "(song's)" in header
    assert table.splitlines()[3].split()[2] == "-"  # b has no song: its ceiling is "-"
