"""make_pairs: consecutive segments of songs, split by song, limits, no silent overwrite."""

import json

import numpy as np
import pytest
import soundfile as sf

import jaxaudio.data.make_pairs as mp
from jaxaudio.data.pairs import PairDataset

SR = 8000


def song(seconds, sr, seed, channels=2):
    rng = np.random.default_rng(seed)
    return 0.2 * rng.standard_normal((int(seconds * sr), channels))


@pytest.fixture
def songs(tmp_path):
    folder = tmp_path / "songs"
    (folder / "album").mkdir(parents=True)
    sf.write(folder / "a.wav", song(5.2, SR, 0), SR)  # 5 segments of 1 s -> 4 pairs
    sf.write(folder / "album" / "b.flac", song(3.5, 16000, 1, channels=1), 16000)  # -> 2 pairs
    (folder / "cover.jpg").write_bytes(b"not audio")
    return folder


def load_meta(out):
    return json.loads((out / "metadata.json").read_text())


def test_pairs_are_consecutive_segments_split_by_song(songs, tmp_path):
    out = tmp_path / "ds"
    summary = mp.make_pairs(songs, out, duration=1.0, sample_rate=SR, train_split=0.6,
                            progress=False)
    assert summary == load_meta(out)
    by_split = {s: {r["song"] for r in summary["pairs"] if r["split"] == s}
                for s in ("train", "val")}
    assert len(by_split["train"]) == len(by_split["val"]) == 1  # one song each, none in both
    assert summary["num_train"] + summary["num_val"] == 6
    for split in ("train", "val"):
        ds = PairDataset(out / split, sample_rate=SR)
        assert ds.clip_samples == SR
        n = len(ds)
        for k in range(n - 1):  # pair k's target is pair k+1's input
            np.testing.assert_array_equal(ds.load_target(k), ds.load_input(k + 1))
    a_pairs = [r for r in summary["pairs"] if r["song"].endswith("a.wav")]
    split_a = a_pairs[0]["split"]
    source = sf.read(songs / "a.wav", dtype="float32")[0]
    first, _ = sf.read(out / split_a / "pair_0000_input.wav", dtype="float32")
    np.testing.assert_allclose(first, source[:SR], atol=1 / 2**15)  # stereo kept, 16-bit


def test_limits_and_resampled_song(songs, tmp_path):
    summary = mp.make_pairs(songs, tmp_path / "ds", duration=1.0, sample_rate=SR,
                            max_pairs_per_song=3, max_total_pairs=4, train_split=1.0,
                            progress=False)
    assert (summary["num_train"], summary["num_val"]) == (4, 0)
    per_song = {}
    for r in summary["pairs"]:
        per_song[r["song"]] = per_song.get(r["song"], 0) + 1
    assert max(per_song.values()) <= 3
    info = sf.info(str(tmp_path / "ds" / "train" / "pair_0000_input.wav"))
    assert (info.samplerate, info.frames) == (SR, SR)


def test_refuses_overwrite_and_skips_bad_songs(songs, tmp_path, capsys):
    out = tmp_path / "ds"
    (songs / "broken.ogg").write_bytes(b"OggS garbage")
    sf.write(songs / "short.wav", song(1.5, SR, 2), SR)
    mp.main(["--input_dir", str(songs), "--output_dir", str(out), "--duration", "1",
             "--sample_rate", str(SR), "--train_split", "0.5"])
    text = capsys.readouterr().out
    assert "skipped 2 files" in text and "broken.ogg" in text and "short.wav" in text
    with pytest.raises(FileExistsError, match="not empty.*--overwrite"):
        mp.make_pairs(songs, out, duration=1.0, sample_rate=SR, progress=False)
    mp.make_pairs(songs, out, duration=0.5, sample_rate=SR, overwrite=True, progress=False)
    assert load_meta(out)["segment_duration"] == 0.5


def test_interrupted_run_leaves_no_dataset(songs, tmp_path, monkeypatch):
    calls, real_write = [], sf.write

    def failing_write(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)

    monkeypatch.setattr(mp.sf, "write", failing_write)
    with pytest.raises(KeyboardInterrupt):
        mp.make_pairs(songs, tmp_path / "ds", duration=1.0, sample_rate=SR, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["songs"]


def test_errors_name_the_flag(tmp_path):
    with pytest.raises(FileNotFoundError, match="--input_dir .* not a folder"):
        mp.make_pairs(tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="--input_dir .* no audio files"):
        mp.make_pairs(tmp_path / "empty", tmp_path / "out")


def test_mp3_song(tmp_path):
    folder = tmp_path / "mp3s"
    folder.mkdir()
    sf.write(folder / "c.mp3", song(3.3, 24000, 3), 24000, format="MP3")
    summary = mp.make_pairs(folder, tmp_path / "ds", duration=1.0, sample_rate=SR,
                            train_split=1.0, progress=False)
    assert summary["num_train"] == 2 and summary["skipped"] == []
    assert PairDataset(tmp_path / "ds" / "train", sample_rate=SR).clip_samples == SR
