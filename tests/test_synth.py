"""The built-in synthetic set: deterministic, right format, rhythmic inputs and tonal targets."""

import json

import librosa
import numpy as np
import pytest
import soundfile as sf

from jaxaudio.data.pairs import PairDataset
from jaxaudio.data.synth import (draw_song, main, make_synthetic_dataset, render_drums,
                                 render_harmony)

SR = 24000


def read(path):
    x, sr = sf.read(path, dtype="float32")
    assert sr == SR
    return x


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "set"
    make_synthetic_dataset(out, num_pairs=6, duration=3.0, seed=11, val_fraction=0.34)
    return out


def test_folder_format_split_and_metadata(dataset):
    meta = json.loads((dataset / "metadata.json").read_text())
    assert (meta["num_train"], meta["num_val"]) == (4, 2)
    train = PairDataset(dataset / "train", sample_rate=SR)
    val = PairDataset(dataset / "val", sample_rate=SR)
    assert len(train) == 4 and len(val) == 2 and train.clip_samples == 3 * SR
    assert [r["split"] for r in meta["pairs"]] == ["train"] * 4 + ["val"] * 2
    assert all(80 <= r["tempo"] <= 140 for r in meta["pairs"])


def test_deterministic_from_seed(dataset, tmp_path):
    again = make_synthetic_dataset(tmp_path / "again", num_pairs=6, duration=3.0, seed=11,
                                   val_fraction=0.34)
    other = make_synthetic_dataset(tmp_path / "other", num_pairs=6, duration=3.0, seed=12,
                                   val_fraction=0.34)
    for name in ("train/pair_0000_input.wav", "val/pair_0001_output.wav"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes()
        assert (other / name).read_bytes() != (dataset / name).read_bytes()


def test_input_is_rhythmic_at_the_tempo_and_target_is_tonal(dataset):
    meta = json.loads((dataset / "metadata.json").read_text())
    for rec in meta["pairs"][:4]:
        folder = dataset / rec["split"]
        drums = read(folder / f"{rec['name']}_input.wav")
        harmony = read(folder / f"{rec['name']}_output.wav")
        # Onsets fall on the sixteenth-note grid of the song's tempo.
        step = 60.0 / rec["tempo"] / 4
        onsets = librosa.onset.onset_detect(y=drums, sr=SR, units="time", hop_length=256)
        assert len(onsets) >= 2 * 3  # eighth-note hi-hats alone give more than two a second
        off_grid = np.abs(onsets / step - np.round(onsets / step)) * step
        # onsets come in hops of 256 samples (10.7 ms) and peak picking may land a hop or two off:
        # 25 ms; a tenth may be off the grid (0.905 to 1.0 measured, a narrow margin)
        assert np.mean(off_grid < 0.025) >= 0.9, (rec, onsets)
        # The onset envelope repeats after one beat, and not half a grid step off it.
        env = librosa.onset.onset_strength(y=drums, sr=SR, hop_length=256)
        env = env - env.mean()
        ac = np.correlate(env, env, "full")[env.size - 1:]
        frames = step * SR / 256  # one grid step in onset frames
        beat = int(round(4 * frames))
        off = np.concatenate([ac[int(np.ceil((j + 0.35) * frames)):int((j + 0.65) * frames) + 1]
                              for j in range(4)])
        assert ac[beat - 1:beat + 2].max() > 2 * off.max(), rec
        flat_drums = np.median(librosa.feature.spectral_flatness(y=drums))
        flat_harmony = np.median(librosa.feature.spectral_flatness(y=harmony))
        # flatness of a few sinusoids is ~1e-6, of noisy drums ~1e-2 (ratio 1e-5 to 2e-4 measured)
        assert flat_harmony < 0.01 * flat_drums, (rec, flat_drums, flat_harmony)


def test_parts_share_the_song_and_are_normalised():
    rng = np.random.default_rng(0)
    song = draw_song(rng)
    d = render_drums(song, SR, SR, rng)
    h = render_harmony(song, SR, SR, rng)
    assert d.dtype == h.dtype == np.float32 and d.shape == h.shape == (SR,)
    # x * (0.9 / peak) rounded to float32: 0.9 within an ulp (6e-8 relative)
    assert np.abs(d).max() == pytest.approx(0.9) and np.abs(h).max() == pytest.approx(0.9)


def test_continuation_pairs_are_consecutive_segments_split_by_song(tmp_path):
    out = make_synthetic_dataset(tmp_path / "cont", num_pairs=5, duration=1.0, seed=3,
                                 continuation=True, pairs_per_song=2, val_fraction=0.3)
    meta = json.loads((out / "metadata.json").read_text())
    songs = {s: {r["song"] for r in meta["pairs"] if r["split"] == s} for s in ("train", "val")}
    assert songs == {"train": {0, 1}, "val": {2}}  # 3 songs of 2, 2 and 1 pairs
    first, second = meta["pairs"][0], meta["pairs"][1]
    assert first["song"] == second["song"] and second["start_s"] == 1.0
    np.testing.assert_array_equal(read(out / "train" / "pair_0000_output.wav"),
                                  read(out / "train" / "pair_0001_input.wav"))


def test_reuse_refuse_and_cli(tmp_path, capsys):
    out = tmp_path / "set"
    main(["--output_dir", str(out), "--num_pairs", "2", "--duration", "0.5", "--seed", "1"])
    stamp = (out / "train" / "pair_0000_input.wav").stat().st_mtime_ns
    make_synthetic_dataset(out, num_pairs=2, duration=0.5, seed=1)  # same arguments: kept
    assert (out / "train" / "pair_0000_input.wav").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError, match="exists and is not empty.*--overwrite"):
        make_synthetic_dataset(out, num_pairs=2, duration=0.5, seed=2)
    make_synthetic_dataset(out, num_pairs=2, duration=0.5, seed=2, overwrite=True)
    assert json.loads((out / "metadata.json").read_text())["config"]["seed"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no staging folder left behind
