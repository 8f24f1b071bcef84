"""The two ways to run generation: one input/target pair, or pairs from a validation folder.

Both check every input and output path before the model is loaded, so a typo fails in a
second, and never replace an existing file unless asked (``overwrite``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxaudio.inference.loading import GenerateError, LoadedModel, load_for_inference
from jaxaudio.inference.outputs import (SampleFiles, batch_files, check_free, describe,
                                        rhythm_metrics, sample_record, single_files,
                                        write_sample)
from jaxaudio.inference.pipeline import Generator
from jaxaudio.inference.postprocess import fit_target, postprocess

log = logging.getLogger(__name__)


@dataclass
class Options:
    """Everything but the mode: what ``python -m jaxaudio.generate`` passes on."""

    checkpoint: str
    codec: str | None = None
    codec_weights: str | None = None
    apply_filter: bool = False
    filter_percentile: float = 99.5
    segment_frames: int | None = None
    overlap_frames: int | None = None
    overwrite: bool = False


def check_audio(path: str | Path, flag: str = "") -> Path:
    """``path`` if it exists and its header reads as non-empty audio (no decoding yet)."""
    from jaxaudio.data.audio_io import BadFileError, header

    p = Path(path)
    where = f"{flag} {p}" if flag else str(p)
    if not p.is_file():
        raise GenerateError(f"{where}: no such file" + (" (it is a folder)" if p.is_dir() else ""))
    if header(p).frames == 0:
        raise BadFileError(p, "contains no samples; expected a non-empty clip")
    return p


def read_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, str]:
    """Mono float32 ``[N]`` at ``sample_rate`` and a note on what was converted."""
    from jaxaudio.data.audio_io import header, read_mono

    info = header(path)
    audio, sr = read_mono(path, sample_rate)
    done = []
    if info.channels > 1:
        done.append(f"{info.channels} channels mixed to mono")
    if sr != sample_rate:
        done.append(f"resampled {sr} -> {sample_rate} Hz")
    note = f"{path} ({info.frames / info.samplerate:.2f} s" + (
        f"; {', '.join(done)})" if done else ")")
    return audio, note


def load(opts: Options) -> tuple[LoadedModel, Generator]:
    loaded = load_for_inference(opts.checkpoint, codec=opts.codec,
                                codec_weights=opts.codec_weights)
    gen = Generator(loaded.model, loaded.codec, cascade=loaded.cascade,
                    segment_frames=opts.segment_frames, overlap_frames=opts.overlap_frames)
    codec = loaded.codec
    print(f"Loaded {loaded.source}\n  codec {loaded.codec_name}: {codec.dim} x "
          f"{codec.frame_rate:g} frames/s at {codec.sample_rate} Hz; segments of up to "
          f"{gen.segment_frames} frames ({gen.seconds(gen.segment_frames):.2f} s), overlap "
          f"{gen.overlap_frames} frames", flush=True)
    for w in loaded.warnings:
        print(f"warning: {w}", flush=True)
    if loaded.unity_test:
        print("warning: this model was trained with --unity_test (target = input): it "
              "reconstructs the input rather than mixing in the target", flush=True)
    return loaded, gen


def generate_one(gen: Generator, opts: Options, input_path: Path, target_path: Path | None,
                 files: SampleFiles, title: str, say=print) -> dict:
    """Read, generate, post-process, write and describe one sample; returns its record."""
    sr = gen.sample_rate
    audio, note = read_audio(input_path, sr)
    say(f"  input:  {note}")
    target = None
    if target_path is not None:
        target_raw, note = read_audio(target_path, sr)
        target = fit_target(target_raw, audio.shape[0], sr)
        if target_raw.shape[0] != audio.shape[0]:
            how = "cropped" if target_raw.shape[0] > audio.shape[0] else "looped"
            note += f"; {how} to the input's {audio.shape[0] / sr:.2f} s"
        say(f"  target: {note}")
    try:
        result = gen.generate(audio, target)
    except GenerateError as e:
        raise GenerateError(f"{input_path}: {e}") from e
    output, info = postprocess(result.output_audio, result.input_audio, result.target_audio,
                               sr, apply_filter=opts.apply_filter,
                               filter_percentile=opts.filter_percentile)
    metrics = rhythm_metrics(result)
    check_free(files.all(), opts.overwrite)  # again: a file may have appeared meanwhile
    write_sample(files, result, output, sr, title)
    rec = sample_record(result, output, info, metrics, sr)
    for line in describe(rec):
        say(line)
    say(f"  wrote {files.output}, {files.waveforms.name}, {files.spectrograms.name}")
    return rec


def run_single(opts: Options, input_audio: str, target_audio: str | None, output: str) -> dict:
    """``--input_audio [--target_audio] --output``: one WAV and its two plots."""
    input_path = check_audio(input_audio, "--input_audio")
    target_path = None if target_audio is None else check_audio(target_audio, "--target_audio")
    files = single_files(output)
    check_free(files.all(), opts.overwrite)
    loaded, gen = load(opts)
    if loaded.cascade and target_path is None:
        raise GenerateError("the checkpoint is a 2-stage cascade, which mixes an input with a "
                            "target: --target_audio is required")
    return generate_one(gen, opts, input_path, target_path, files,
                        f"{input_path.name} + {target_path.name if target_path else '-'}")


def select_pairs(val_folder: str, num_samples: int, shuffle_targets: bool, seed: int):
    """The first ``num_samples`` complete pairs (sorted by name) and the target of each."""
    from jaxaudio.data.pairs import find_pairs

    pairs, bad = find_pairs(val_folder)
    if bad:
        log.warning("%s: %d file(s) without a partner left out; first: %s: %s", val_folder,
                    len(bad), bad[0].path.name, bad[0].problem)
    if not pairs:
        raise GenerateError(f"--val_folder {val_folder}: no pair_XXXX_input.wav + "
                            f"pair_XXXX_output.wav pairs found")
    if num_samples < 1:
        raise GenerateError(f"--num_samples {num_samples}: expected a positive integer")
    chosen = pairs[:num_samples]
    targets = [p.target_path for p in chosen]
    if shuffle_targets and len(pairs) > 1:
        # Another pair's target (never the input's own continuation), reproducible by --seed.
        rng = np.random.default_rng(seed)
        for i in range(len(chosen)):
            j = int(rng.integers(len(pairs) - 1))
            targets[i] = pairs[j + (j >= i)].target_path
    return chosen, targets


def check_pairs(gen: Generator, pairs, targets, skip_bad_files: bool):
    """Decode every chosen file once before anything is written: the pairs that can be
    generated (with their targets), and one line per file that cannot. Without
    ``skip_bad_files`` a bad file stops the run here, naming it."""
    from jaxaudio.data.audio_io import BadFileError
    from jaxaudio.inference.pipeline import MIN_FRAMES

    hop = int(gen.codec.hop_length)
    shortest = hop * (MIN_FRAMES - 1) + 1  # MIN_FRAMES frames of ceil(N / hop)
    good, bad = [], []
    for pair, target in zip(pairs, targets):
        problems = []
        for path, least in ((pair.input_path, shortest), (target, 1)):
            try:
                audio, _ = read_audio(path, gen.sample_rate)
                if audio.shape[0] < least:
                    problems.append(f"{path}: {audio.shape[0]} samples at {gen.sample_rate} "
                                    f"Hz; expected at least {least}"
                                    + (f" ({MIN_FRAMES} codec frames)" if least > 1 else ""))
            except (BadFileError, GenerateError) as e:
                problems.append(str(e))
        if problems:
            bad.extend(problems)
        else:
            good.append((pair, target))
    if bad and not skip_bad_files:
        more = f" (and {len(bad) - 1} more bad file(s))" if len(bad) > 1 else ""
        raise GenerateError(f"{bad[0]}{more}; nothing was written; pass --skip_bad_files true "
                            f"to leave the bad pairs out")
    for line in bad:
        log.warning("skipping a pair (--skip_bad_files): %s", line)
    if not good:
        raise GenerateError(f"--val_folder: no usable pair among the {len(pairs)} chosen; "
                            f"first problem: {bad[0]}")
    return good


def run_batch(opts: Options, val_folder: str, num_samples: int, output_folder: str,
              shuffle_targets: bool = False, seed: int = 0,
              skip_bad_files: bool = False) -> list[dict]:
    """``--val_folder --num_samples --output_folder``: the original's batch mode.

    Every chosen pair is decoded and checked before anything is written; ``metrics.jsonl``
    always lists what was made, even when a later pair fails."""
    from tqdm import tqdm

    pairs, targets = select_pairs(val_folder, num_samples, shuffle_targets, seed)
    out = Path(output_folder)
    if out.exists() and not out.is_dir():
        raise GenerateError(f"--output_folder {out}: exists and is not a folder")
    all_files = [batch_files(out, p.name) for p in pairs]
    summary = out / "metrics.jsonl"
    check_free([f for files in all_files for f in files.all()] + [summary], opts.overwrite)
    for pair, target in zip(pairs, targets):
        if not skip_bad_files:
            check_audio(pair.input_path)
            check_audio(target)
    loaded, gen = load(opts)
    chosen = check_pairs(gen, pairs, targets, skip_bad_files)
    files_of = {p.name: files for p, files in zip(pairs, all_files)}
    print(f"{len(chosen)} pair(s) from {val_folder}"
          + (f" with shuffled targets (seed {seed})" if shuffle_targets else ""), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    try:
        with tqdm(total=len(chosen), desc="generate", dynamic_ncols=True) as bar:
            for pair, target in chosen:
                bar.write(f"{pair.name}:")
                rec = generate_one(gen, opts, pair.input_path, target, files_of[pair.name],
                                   f"{pair.name}: {pair.input_path.name} + {target.name}",
                                   say=bar.write)
                records.append({"name": pair.name, "input": str(pair.input_path),
                                "target": str(target), **rec})
                bar.update(1)
    finally:  # what was made is listed even when a later pair fails
        with open(summary, "w") as f:
            for rec in records:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
    errors = [r["rms_error_vs_target"] for r in records if "rms_error_vs_target" in r]
    if errors:
        print(f"Average RMS error vs target: {float(np.mean(errors)):.6f}")
    print(f"Wrote {len(records)} sample(s) to {out}/ (metrics in {summary.name})", flush=True)
    return records
