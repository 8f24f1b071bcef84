"""Procedural music pairs: jaxaudio's built-in dataset, made in seconds, deterministic from a seed.

Each song draws a tempo (80-140 BPM), a key and mode, a chord progression, an instrument
(``piano``: struck on every beat, bright attack mellowing as it decays; ``pad``: slow attack,
sustained, detuned and with tremolo) and a drum kit with a 16-step pattern (kick, snare on
beats 2 and 4 with ghost notes, eighth or sixteenth hi-hats). Everything is vectorised NumPy:
drums are impulse trains convolved with synthesised hits, harmony is wavetable additive
synthesis.

Pairs (same folder format as :mod:`jaxaudio.data.pairs`):

- default: input = the song's drums, target = its harmony over the same bars (same tempo);
- ``continuation=True``: consecutive segments of one song (drums + harmony mixed), pair k being
  (segment k, segment k+1), ``pairs_per_song`` pairs per song; the split is by song.

``python -m jaxaudio.data.synth --output_dir DIR --num_pairs N --duration S --seed K``
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf

from jaxaudio.data.staging import METADATA, check_output_dir, staged_dataset, write_metadata

log = logging.getLogger(__name__)

_SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 0), (0, 3, 4, 3), (0, 6, 5, 6),
                 (0, 5, 2, 6))
_KICKS = ((0, 8), (0, 6, 8), (0, 8, 10), (0, 3, 8, 11), (0, 7, 8))
_KEYS = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")
_TABLE_BITS = 12
_TABLE = 1 << _TABLE_BITS


@dataclass(frozen=True)
class Song:
    tempo: float  # beats per minute
    key: int  # tonic pitch class, 0 = C
    mode: str
    progression: tuple[int, ...]  # scale degrees, one chord per `beats_per_chord` beats
    sevenths: bool
    beats_per_chord: int
    instrument: str  # "piano" or "pad"
    kick_steps: tuple[int, ...]
    hat_sixteenths: bool


def draw_song(rng: np.random.Generator) -> Song:
    return Song(tempo=float(np.round(rng.uniform(80, 140), 1)), key=int(rng.integers(12)),
                mode=str(rng.choice(list(_SCALES))),
                progression=_PROGRESSIONS[rng.integers(len(_PROGRESSIONS))],
                sevenths=bool(rng.random() < 0.3), beats_per_chord=int(rng.choice([2, 4])),
                instrument=str(rng.choice(["piano", "pad"])),
                kick_steps=_KICKS[rng.integers(len(_KICKS))],
                hat_sixteenths=bool(rng.random() < 0.4))


def _drum_hits(rng, sr):
    """One kick, snare and closed hi-hat sample, float64 ``[L]`` each."""
    t = np.arange(int(0.5 * sr)) / sr
    f = rng.uniform(40, 55) + rng.uniform(70, 110) * np.exp(-t / rng.uniform(0.025, 0.05))
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / rng.uniform(0.12, 0.25))
    t = t[: int(0.3 * sr)]
    noise = np.diff(rng.standard_normal(t.size + 1))
    snare = (0.6 * noise * np.exp(-t / rng.uniform(0.05, 0.09))
             + np.sin(2 * np.pi * rng.uniform(160, 220) * t) * np.exp(-t / 0.05))
    t = t[: int(0.12 * sr)]
    hat = np.diff(rng.standard_normal(t.size + 2), 2) * np.exp(-t / rng.uniform(0.01, 0.025))
    return kick, snare, hat / 3


def render_drums(song: Song, num_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The rhythmic part: float32 ``[num_samples]``, peak 0.9."""
    step = 60.0 / song.tempo / 4  # a sixteenth note, in seconds
    n_steps = int(num_samples / (step * sr)) + 1
    onsets = np.round(np.arange(n_steps) * step * sr).astype(np.int64)
    pos = np.arange(n_steps) % 16
    kick_v = np.isin(pos, song.kick_steps).astype(float)
    snare_v = np.isin(pos, (4, 12)) + 0.3 * (np.isin(pos, (7, 14)) & (rng.random(n_steps) < 0.4))
    hat_v = ((pos % 4 == 0) * 1.0 + (pos % 4 != 0) * 0.55) * (
        1.0 if song.hat_sixteenths else (pos % 2 == 0))
    out = np.zeros(num_samples)
    for hit, vel, gain in zip(_drum_hits(rng, sr), (kick_v, snare_v, hat_v), (1.0, 0.7, 0.35)):
        vel = gain * vel * rng.uniform(0.85, 1.0, n_steps)
        # A few dozen hits per clip: adding slices beats a full-length convolution.
        for at, v in zip(onsets[vel > 0], vel[vel > 0]):
            seg = out[at:at + hit.size]
            seg += v * hit[:seg.size]
    return _peak(out)


@lru_cache(maxsize=None)
def _wavetable(rolloff: float, harmonics: int) -> np.ndarray:
    """One period of a harmonic waveform with partial ``k`` at amplitude ``k ** -rolloff``."""
    phase = np.arange(_TABLE) / _TABLE
    k = np.arange(1, harmonics + 1)[:, None]
    table = (np.sin(2 * np.pi * k * phase) / k**rolloff).sum(0)
    return (table / np.abs(table).max()).astype(np.float32)


def _chords(song: Song) -> tuple[np.ndarray, np.ndarray]:
    """Frequencies and gains ``[chords, notes]``: a bass note and a triad (or seventh chord)."""
    scale = np.array(_SCALES[song.mode])
    freqs, gains = [], []
    for degree in song.progression:
        steps = degree + np.array([0, 2, 4, 6])
        midi = 60 + song.key + scale[steps % 7] + 12 * (steps // 7)
        midi = np.concatenate([[midi[0] - 24], midi])
        freqs.append(440.0 * 2 ** ((midi - 69) / 12))
        gains.append([0.8, 1, 1, 1, 0.7])
    notes = 5 if song.sevenths else 4
    return np.array(freqs)[:, :notes], np.array(gains, np.float32)[:, :notes]


def render_harmony(song: Song, num_samples: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """The harmonic part: float32 ``[num_samples]``, peak 0.9."""
    freqs, gains = _chords(song)
    beat = 60.0 / song.tempo * sr  # in samples
    out = np.zeros(num_samples, np.float32)
    at = lambda beats: min(int(round(beats * beat)), num_samples)  # noqa: E731
    if song.instrument == "piano":
        # Every strike of a chord sounds the same, so one strike is rendered and placed.
        n = int(np.ceil(beat))
        t = np.arange(n, dtype=np.float32) / sr
        bright = np.exp(-t / 0.15)
        env = ((1 - np.exp(-t / 0.003)) * np.exp(-t / np.float32(rng.uniform(0.5, 1.0)))
               * np.clip((n - 1 - t * sr) / np.float32(0.01 * sr), 0, 1))
        strikes = {}
        b = 0
        while at(b) < num_samples:
            c = (b // song.beats_per_chord) % len(freqs)
            if c not in strikes:
                inc, g = freqs[c] / sr, gains[c]
                strikes[c] = env * (bright * (_lookup(_wavetable(0.9, 10), inc, n) @ g)
                                    + (1 - bright) * (_lookup(_wavetable(2.5, 10), inc, n) @ g))
            seg = out[at(b):at(b + 1)]
            seg += strikes[c][:seg.size]
            b += 1
        return _peak(out)
    attack, rate = rng.uniform(0.15, 0.35), rng.uniform(3.5, 6.0)
    tremolo = 1 + 0.12 * np.sin(2 * np.pi * rate * np.arange(num_samples) / sr)
    table = _wavetable(1.6, 6)
    k = 0
    while at(k * song.beats_per_chord) < num_samples:
        s0, s1 = at(k * song.beats_per_chord), at((k + 1) * song.beats_per_chord)
        c, n = k % len(freqs), s1 - s0
        t = np.arange(n, dtype=np.float32)
        inc = freqs[c] / sr
        g = gains[c] * np.float32(0.5)
        wave = _lookup(table, inc * 1.004, n) @ g + _lookup(table, inc * 0.996, n) @ g
        env = (1 - np.exp(-t / np.float32(attack * sr))) * np.clip((n - 1 - t) / (0.03 * sr), 0, 1)
        out[s0:s1] = wave * env * tremolo[s0:s1]
        k += 1
    return _peak(out)


def _lookup(table: np.ndarray, inc: np.ndarray, n: int) -> np.ndarray:
    """``[n, notes]`` samples of ``table`` at ``inc`` cycles per sample, from phase 0.

    The phase is a 32-bit fixed-point fraction of a cycle; uint32 products wrap around, which
    is exactly the modulo by one cycle.
    """
    step = np.round(np.asarray(inc) * 2.0**32).astype(np.uint32)
    phase = np.arange(n, dtype=np.uint32)[:, None] * step[None, :]
    return table[phase >> np.uint32(32 - _TABLE_BITS)]


def _peak(x: np.ndarray, peak: float = 0.9) -> np.ndarray:
    m = np.abs(x).max()
    return (x * (peak / m) if m > 0 else x).astype(np.float32)


def _split_sizes(units: int, val_fraction: float) -> int:
    """How many of ``units`` (pairs or songs) go to val: at least one when both can be non-empty."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n_val = int(round(val_fraction * units))
    if val_fraction > 0 and units >= 2:
        n_val = min(max(n_val, 1), units - 1)
    return n_val


def _examples(num_pairs, n, seed, sr, continuation, pairs_per_song, val_fraction):
    """Yield ``(split, song_index, song, start_s, input [n], target [n])`` in order."""
    if not continuation:
        n_val = _split_sizes(num_pairs, val_fraction)
        for i in range(num_pairs):
            rng = np.random.default_rng([seed, i])
            song = draw_song(rng)
            split = "val" if i >= num_pairs - n_val else "train"
            drums = render_drums(song, n, sr, rng)
            yield split, i, song, 0.0, drums, render_harmony(song, n, sr, rng)
        return
    num_songs = -(-num_pairs // pairs_per_song)
    n_val = _split_sizes(num_songs, val_fraction)
    for j in range(num_songs):
        rng = np.random.default_rng([seed, j, 1])
        song = draw_song(rng)
        k = min(pairs_per_song, num_pairs - j * pairs_per_song)
        total = (k + 1) * n
        mix = _peak(0.5 * render_drums(song, total, sr, rng)
                    + 0.5 * render_harmony(song, total, sr, rng))
        split = "val" if j >= num_songs - n_val else "train"
        for s in range(k):
            yield split, j, song, s * n / sr, mix[s * n:(s + 1) * n], mix[(s + 1) * n:(s + 2) * n]


def make_synthetic_dataset(output_dir: str | Path, num_pairs: int = 200, duration: float = 4.0,
                           seed: int = 0, *, sample_rate: int = 24000,
                           continuation: bool = False, pairs_per_song: int = 4,
                           val_fraction: float = 0.1, overwrite: bool = False) -> Path:
    """Write ``output_dir/{train,val}/pair_XXXX_{input,output}.wav`` and ``metadata.json``.

    If ``output_dir`` already holds a dataset made with the same arguments it is returned
    as it is; any other non-empty folder is refused unless ``overwrite``.
    """
    output_dir = Path(output_dir)
    if num_pairs < 1 or duration <= 0 or sample_rate <= 0 or pairs_per_song < 1 or seed < 0:
        raise ValueError(f"num_pairs {num_pairs}, duration {duration}, sample_rate "
                         f"{sample_rate}, pairs_per_song {pairs_per_song}, seed {seed}: expected "
                         "positive sizes and a non-negative seed")
    config = {"num_pairs": num_pairs, "duration": float(duration), "seed": seed,
              "sample_rate": sample_rate, "continuation": continuation,
              "pairs_per_song": pairs_per_song if continuation else 1,
              "val_fraction": float(val_fraction)}
    try:
        existing = json.loads((output_dir / METADATA).read_text())
    except (OSError, ValueError):
        existing = None
    if isinstance(existing, dict) and existing.get("config") == config and not overwrite:
        log.info("%s already holds this synthetic dataset; reusing it", output_dir)
        return output_dir
    check_output_dir(output_dir, overwrite, flag="--overwrite (overwrite=True)")
    n = int(round(duration * sample_rate))
    records, counts = [], {"train": 0, "val": 0}
    with staged_dataset(output_dir, overwrite) as stage:
        for split in counts:
            (stage / split).mkdir()
        for split, song_idx, song, start, x, y in _examples(
                num_pairs, n, seed, sample_rate, continuation, pairs_per_song, val_fraction):
            name = f"pair_{counts[split]:04d}"
            counts[split] += 1
            sf.write(stage / split / f"{name}_input.wav", x, sample_rate, subtype="PCM_16")
            sf.write(stage / split / f"{name}_output.wav", y, sample_rate, subtype="PCM_16")
            records.append({"split": split, "name": name, "song": song_idx, "start_s": start,
                            **asdict(song), "key_name": _KEYS[song.key]})
        write_metadata(stage, {"generator": "jaxaudio.data.synth", "config": config,
                               "num_train": counts["train"], "num_val": counts["val"],
                               "pairs": records})
    log.info("synthetic dataset: %d train and %d val pairs of %.2f s in %s", counts["train"],
             counts["val"], duration, output_dir)
    return output_dir


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m jaxaudio.data.synth", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True)
    p.add_argument("--num_pairs", type=int, default=200)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sample_rate", type=int, default=24000)
    p.add_argument("--continuation", action="store_true",
                   help="pairs are consecutive segments of one mixed song")
    p.add_argument("--pairs_per_song", type=int, default=4, help="with --continuation")
    p.add_argument("--val_fraction", type=float, default=0.1)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    make_synthetic_dataset(a.output_dir, a.num_pairs, a.duration, a.seed,
                           sample_rate=a.sample_rate, continuation=a.continuation,
                           pairs_per_song=a.pairs_per_song, val_fraction=a.val_fraction,
                           overwrite=a.overwrite)


if __name__ == "__main__":
    main()
