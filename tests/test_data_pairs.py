"""Pair folders: naming, mono/resampling/length rules, and every bad input named."""

import logging

import numpy as np
import pytest
import soundfile as sf

from jaxaudio.data.pairs import BadFileError, PairDataset, open_pair_folders

SR = 8000
N = 800


def tone(n, sr=SR, freq=440.0, channels=1, amp=0.5):
    t = np.arange(n) / sr
    x = amp * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.5 * x], 1)[:, :channels] if channels > 1 else x


def write(path, data, sr=SR, subtype="PCM_16"):
    sf.write(path, data, sr, subtype=subtype)
    return path


def good_pair(folder, stem, partner="output", n=N):
    write(folder / f"{stem}_input.wav", tone(n, freq=300))
    write(folder / f"{stem}_{partner}.wav", tone(n, freq=500))


def test_both_partner_suffixes_stereo_mean_and_order(tmp_path):
    write(tmp_path / "pair_0001_input.wav", tone(N, channels=2))
    write(tmp_path / "pair_0001_target.wav", tone(N, freq=700))
    good_pair(tmp_path, "pair_0000")
    (tmp_path / "notes.txt").write_text("ignored")
    ds = PairDataset(tmp_path, sample_rate=SR)
    assert [p.name for p in ds.pairs] == ["pair_0000", "pair_0001"]
    assert ds.pairs[1].target_path.name == "pair_0001_target.wav"
    assert ds.clip_samples == N and len(ds) == 2
    stereo, _ = sf.read(tmp_path / "pair_0001_input.wav", dtype="float32")
    clip = ds.load_input(1)
    assert clip.dtype == np.float32 and clip.shape == (N,)
    # exact: both sides take the same float32 channel mean of the same decoded samples, and a
    # mono file is read unchanged; atol 1e-7 is about an ulp of the tone's 0.5 peak
    np.testing.assert_allclose(clip, stereo.mean(1), atol=1e-7)
    target, _ = sf.read(tmp_path / "pair_0001_target.wav", dtype="float32")
    np.testing.assert_allclose(ds.load_target(1), target, atol=1e-7)


def make_bad(folder, kind):
    """Write one bad file (or pair) and return the path the error must name."""
    if kind == "missing_partner":
        return write(folder / "pair_0009_input.wav", tone(N))
    if kind == "orphan_partner":
        return write(folder / "pair_0009_output.wav", tone(N))
    if kind == "two_partners":
        good_pair(folder, "pair_0009")
        write(folder / "pair_0009_target.wav", tone(N))
        return folder / "pair_0009_input.wav"
    good_pair(folder, "pair_0009")
    path = folder / "pair_0009_output.wav"
    if kind == "corrupt_header":
        path.write_bytes(b"RIFF\x00\x00not really a wave file" * 4)
    elif kind == "corrupt_body":  # a valid header promising more data than there is
        data = path.read_bytes()
        path.write_bytes(data[:60])
    elif kind in ("nan", "inf"):
        x = tone(N).astype(np.float32)
        x[N // 2] = np.nan if kind == "nan" else np.inf
        write(path, x, subtype="FLOAT")
    elif kind == "too_short":
        write(path, tone(N // 2))
    return path


BAD_KINDS = ["missing_partner", "orphan_partner", "two_partners", "corrupt_header",
             "corrupt_body", "nan", "inf", "too_short"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_input_names_the_file_or_is_skipped(tmp_path, kind, caplog):
    good_pair(tmp_path, "pair_0000")
    bad = make_bad(tmp_path, kind)
    with pytest.raises(BadFileError) as err:
        PairDataset(tmp_path, sample_rate=SR, clip_samples=N)
    assert err.value.path == bad
    assert bad.name in str(err.value) and "expected" in str(err.value)
    with caplog.at_level(logging.WARNING, logger="jaxaudio.data.pairs"):
        ds = PairDataset(tmp_path, sample_rate=SR, clip_samples=N, skip_bad_files=True)
    assert [p.name for p in ds.pairs] == ["pair_0000"]
    assert [b.path for b in ds.skipped] == [bad]
    assert "skipped 1 bad file" in caplog.text


def test_messages_say_what_was_expected(tmp_path):
    good_pair(tmp_path, "pair_0000")
    make_bad(tmp_path, "too_short")
    with pytest.raises(BadFileError, match=r"0\.050 s long .*expected at least 0\.100 s"):
        PairDataset(tmp_path, sample_rate=SR, clip_samples=N)
    (tmp_path / "pair_0009_output.wav").unlink()
    with pytest.raises(BadFileError, match="has no partner pair_0009_output.wav"):
        PairDataset(tmp_path, sample_rate=SR, clip_samples=N)


def test_nan_found_at_load_time_when_contents_unchecked(tmp_path):
    good_pair(tmp_path, "pair_0000")
    bad = make_bad(tmp_path, "nan")
    ds = PairDataset(tmp_path, sample_rate=SR, clip_samples=N, check_contents=False)
    with pytest.raises(BadFileError, match="NaN or infinite") as err:
        ds.load_target(1)
    assert err.value.path == bad


def test_empty_folder_and_all_bad(tmp_path):
    with pytest.raises(BadFileError, match="no pair_XXXX_input.wav") as err:
        PairDataset(tmp_path, sample_rate=SR, skip_bad_files=True)
    assert err.value.path == tmp_path
    make_bad(tmp_path, "missing_partner")
    with pytest.raises(BadFileError, match="no usable pairs"):
        PairDataset(tmp_path, sample_rate=SR, skip_bad_files=True)
    with pytest.raises(BadFileError, match="not a folder"):
        PairDataset(tmp_path / "nope", sample_rate=SR)


def test_resampling_44k1_sine_to_24k_keeps_its_frequency(tmp_path, caplog):
    src_sr, dst_sr, freq, n = 44100, 24000, 1000.0, 4800
    write(tmp_path / "pair_0000_input.wav", tone(11025, sr=src_sr, freq=freq), sr=src_sr)
    write(tmp_path / "pair_0000_output.wav", tone(11025, sr=src_sr, freq=freq), sr=src_sr)
    with caplog.at_level(logging.INFO, logger="jaxaudio.data.pairs"):
        ds = PairDataset(tmp_path, sample_rate=dst_sr, clip_samples=n)
    clip = ds.load_input(0)
    assert clip.shape == (n,)
    spectrum = np.abs(np.fft.rfft(clip * np.hanning(n)))
    peak_hz = np.argmax(spectrum) * dst_sr / n
    # one FFT bin (5 Hz): the peak's frequency is known only to its bin
    assert abs(peak_hz - freq) <= dst_sr / n
    # resampling, not round-off: the filter's ripple and the clip's edges (5e-6 measured)
    assert clip.std() == pytest.approx(0.5 / np.sqrt(2), rel=1e-3)  # amplitude preserved
    assert "44100 Hz: resampling to the codec's 24000 Hz" in caplog.text


def test_crop_to_start_and_pad_when_allowed(tmp_path):
    good_pair(tmp_path, "pair_0000", n=2 * N)
    ds = PairDataset(tmp_path, sample_rate=SR, clip_samples=N)
    full, _ = sf.read(tmp_path / "pair_0000_input.wav", dtype="float32")
    np.testing.assert_array_equal(ds.load_input(0), full[:N])
    ds = PairDataset(tmp_path, sample_rate=SR, clip_samples=3 * N, min_samples=N)
    padded = ds.load_input(0)
    np.testing.assert_array_equal(padded[:2 * N], full)
    assert not padded[2 * N:].any()


def test_open_pair_folders(tmp_path):
    (tmp_path / "train").mkdir()
    good_pair(tmp_path / "train", "pair_0000", n=N)
    with pytest.raises(BadFileError, match="val.* is missing"):
        open_pair_folders(tmp_path, sample_rate=SR)
    (tmp_path / "val").mkdir()
    good_pair(tmp_path / "val", "pair_0000", n=2 * N)
    train, val = open_pair_folders(tmp_path, sample_rate=SR)
    assert train.clip_samples == val.clip_samples == N
