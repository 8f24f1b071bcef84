"""Build a pair dataset from a folder of songs: consecutive segments become (input, target).

``python -m jaxaudio.data.make_pairs --input_dir DIR --output_dir dataset_pairs_wav --duration 16
--sample_rate 24000 --train_split 0.9 --max_pairs_per_song 10 --max_total_pairs 2000``

Every song (``.wav .flac .ogg .mp3 .aiff``, searched recursively; read by soundfile, with
librosa as the fallback for what soundfile cannot decode) is resampled to ``sample_rate`` and
cut into segments of ``duration`` seconds; pair k is (segment k, segment k+1), as in the
original, at most ``max_pairs_per_song`` per song. If there are more than ``max_total_pairs``,
a random subset (``--seed``) is kept. Songs, not pairs, are split between train and val, so no
song is heard in both. Files keep the song's channels (the loader averages them).

The dataset is written into a hidden staging folder and renamed into place at the end, so an
interrupted run never leaves a folder that looks complete; an existing non-empty
``output_dir`` is refused without ``--overwrite``. Unreadable or too-short songs are skipped
and listed in the summary.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from jaxaudio.data.audio_io import BadFileError, resample, resampled_length
from jaxaudio.data.staging import staged_dataset, write_metadata

log = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff")


@dataclass
class Song:
    path: Path
    num_pairs: int


def read_song(path: Path, sample_rate: int) -> np.ndarray:
    """float32 ``[N, C]`` at ``sample_rate``; soundfile first, then librosa."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as first:
        try:
            import librosa

            y, sr = librosa.load(str(path), sr=None, mono=False)
        except Exception as second:
            raise BadFileError(path, f"cannot be decoded (soundfile: {first}; librosa: "
                                     f"{second}); expected an audio file") from second
        data = np.atleast_2d(y).T.astype(np.float32)
    if data.size == 0 or not np.isfinite(data).all():
        raise BadFileError(path, "is empty or has NaN/infinite samples; expected finite audio")
    return resample(data, int(sr), sample_rate)


def _song_length(path: Path, sample_rate: int) -> int:
    """Samples at ``sample_rate``, from the header when soundfile can read it."""
    try:
        info = sf.info(str(path))
        if info.frames > 0:
            return resampled_length(info.frames, info.samplerate, sample_rate)
    except Exception:
        pass
    return read_song(path, sample_rate).shape[0]


def _plan(songs: list[Song], rng, train_split: float, max_total: int):
    """Pick the pairs ``[(song, k)]`` to keep and split the songs: ``(train, val)``."""
    pairs = [(i, k) for i, s in enumerate(songs) for k in range(s.num_pairs)]
    if len(pairs) > max_total:
        keep = np.sort(rng.choice(len(pairs), max_total, replace=False))
        pairs = [pairs[j] for j in keep]
    by_song: dict[int, list[int]] = {}
    for i, k in pairs:
        by_song.setdefault(i, []).append(k)
    order = [int(i) for i in rng.permutation(sorted(by_song))]
    total = len(pairs)
    want_val = int(round((1.0 - train_split) * total))
    if train_split < 1.0 and len(order) >= 2:
        want_val = max(want_val, 1)
    val, n_val = [], 0
    # Songs go to val from the end of the shuffled order; train always keeps at least one.
    while order and len(order) > 1 and n_val < want_val:
        i = order.pop()
        val.append(i)
        n_val += len(by_song[i])
    take = lambda ids: [(i, k) for i in sorted(ids) for k in by_song[i]]  # noqa: E731
    return take(order), take(val)


def make_pairs(input_dir: str | Path, output_dir: str | Path, *, duration: float = 16.0,
               sample_rate: int = 24000, train_split: float = 0.9, max_pairs_per_song: int = 10,
               max_total_pairs: int = 2000, seed: int = 0, overwrite: bool = False,
               progress: bool = True) -> dict:
    """Build the dataset; returns the summary (also written to ``metadata.json``)."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if not input_dir.is_dir():
        raise FileNotFoundError(f"--input_dir {input_dir} is not a folder; expected a folder "
                                "of songs")
    if not 0.0 < train_split <= 1.0 or duration <= 0 or max_pairs_per_song < 1:
        raise ValueError(f"train_split {train_split}, duration {duration}, max_pairs_per_song "
                         f"{max_pairs_per_song}: expected 0 < train_split <= 1 and positive sizes")
    files = sorted(p for p in input_dir.rglob("*")
                   if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"--input_dir {input_dir} contains no audio files "
                                f"({', '.join(AUDIO_EXTENSIONS)})")
    seg = int(round(duration * sample_rate))
    songs, skipped = _scan(files, sample_rate, seg, duration, max_pairs_per_song, progress)
    if not songs:
        raise ValueError(f"--input_dir {input_dir}: none of {len(files)} audio files gives a "
                         f"pair of {duration:g} s segments; skipped: {skipped[:3]}")
    rng = np.random.default_rng(seed)
    splits = dict(zip(("train", "val"), _plan(songs, rng, train_split, max_total_pairs)))
    records = []
    with staged_dataset(output_dir, overwrite) as stage:
        for split, pairs in splits.items():
            records += _write_split(stage / split, split, pairs, songs, sample_rate, seg,
                                    duration, skipped, progress)
        summary = {"generator": "jaxaudio.data.make_pairs", "input_dir": str(input_dir),
                   "segment_duration": duration, "sample_rate": sample_rate,
                   "samples_per_segment": seg, "seed": seed,
                   "num_songs": {s: len({r["song"] for r in records if r["split"] == s})
                                 for s in splits},
                   "num_train": sum(r["split"] == "train" for r in records),
                   "num_val": sum(r["split"] == "val" for r in records),
                   "skipped": skipped, "pairs": records}
        write_metadata(stage, summary)
    return summary


def _scan(files, sample_rate, seg, duration, max_pairs_per_song, progress):
    """``(songs long enough for a pair, skipped files with the reason)``."""
    songs, skipped = [], []
    for path in tqdm(files, desc="Scanning", disable=not progress):
        try:
            n = _song_length(path, sample_rate)
        except BadFileError as e:
            skipped.append({"file": str(path), "problem": e.problem})
            continue
        if n < 2 * seg:
            skipped.append({"file": str(path), "problem": f"{n / sample_rate:.1f} s is shorter "
                            f"than two segments ({2 * duration:g} s)"})
            continue
        songs.append(Song(path, min(n // seg - 1, max_pairs_per_song)))
    return songs, skipped


def _write_split(folder, split, pairs, songs, sample_rate, seg, duration, skipped,
                 progress) -> list[dict]:
    """Write one split's (input, continuation) WAVs; returns their records. A song that fails
    to read is added to ``skipped``."""
    folder.mkdir()
    records, count, current, audio = [], 0, None, None
    for i, k in tqdm(pairs, desc=f"Writing {split}", disable=not progress):
        if i != current:
            current = i
            try:
                audio = read_song(songs[i].path, sample_rate)
            except BadFileError as e:
                skipped.append({"file": str(songs[i].path), "problem": e.problem})
                audio = None
        if audio is None or audio.shape[0] < (k + 2) * seg:
            continue
        name = f"pair_{count:04d}"
        count += 1
        sf.write(folder / f"{name}_input.wav", audio[k * seg:(k + 1) * seg], sample_rate,
                 subtype="PCM_16")
        sf.write(folder / f"{name}_output.wav", audio[(k + 1) * seg:(k + 2) * seg],
                 sample_rate, subtype="PCM_16")
        records.append({"split": split, "name": name, "song": str(songs[i].path),
                        "start_s": k * duration})
    return records


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jaxaudio.data.make_pairs", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input_dir", required=True, help="folder of songs (searched recursively)")
    p.add_argument("--output_dir", default="dataset_pairs_wav")
    p.add_argument("--duration", type=float, default=16.0, help="seconds per segment")
    p.add_argument("--sample_rate", type=int, default=24000)
    p.add_argument("--train_split", type=float, default=0.9)
    p.add_argument("--max_pairs_per_song", type=int, default=10)
    p.add_argument("--max_total_pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0, help="for the subset and the song split")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty output_dir")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    s = make_pairs(a.input_dir, a.output_dir, duration=a.duration, sample_rate=a.sample_rate,
                   train_split=a.train_split, max_pairs_per_song=a.max_pairs_per_song,
                   max_total_pairs=a.max_total_pairs, seed=a.seed, overwrite=a.overwrite)
    print(f"\nDataset written to {a.output_dir}/")
    for split in ("train", "val"):
        print(f"  {split}: {s[f'num_{split}']} pairs from {s['num_songs'][split]} songs")
    print(f"  {s['samples_per_segment']} samples per clip ({a.duration:g} s at {a.sample_rate} Hz)")
    if s["skipped"]:
        print(f"  skipped {len(s['skipped'])} files:")
        for entry in s["skipped"]:
            print(f"    {entry['file']}: {entry['problem']}")


if __name__ == "__main__":
    main()
