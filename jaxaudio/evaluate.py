"""`python -m jaxaudio.evaluate`: how musical a trained model's blends are (see `--help`).

On unseen synthetic drum/harmony pairs (made in memory with a seed the training never uses)::

    python -m jaxaudio.evaluate --checkpoint runs/builtin/checkpoints

or on a pair folder::

    python -m jaxaudio.evaluate --checkpoint CKPT --val_folder data/val [--song_mode none]

Each pair's input (and target) goes through the codec and the model in eval mode; the decoded
output, before any level matching or filtering, is measured with
:func:`jaxaudio.evaluation.clip_metrics`. Prints a table (one row per pair and the medians)
and writes the per-pair and median metrics as JSON.

Exit status: 0 on success, 2 for a bad flag, file or checkpoint (the message names it).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

# The built-in and `python -m jaxaudio.data.synth` datasets use seed 0 (songs drawn with
# default_rng([0, i])); 2026 draws other songs, drum kits and voicings.
DEFAULT_SEED = 2026
TRAINING_SEED = 0
DEFAULT_PAIRS = 11
DEFAULT_SECONDS = 4.0
DEFAULT_JSON = "evaluation.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxaudio.evaluate",
        description=(
            "Measure how musical a trained model's blends are. On drum/harmony pairs of one "
            "song the right answer is the song (input + target): the output's log-spectral "
            "distance to it over the closer part's (distance, below 1 = nearer the song than "
            "either part), comb contrast at codec-frame-rate harmonics and energy share above "
            "6 kHz (output minus song), onset correlation with the input, chroma similarity "
            "with the target (and the input's own, as the baseline). The model's raw output is "
            "measured (no level matching, no filter)."),
    )
    p.add_argument("--checkpoint", required=True,
                   help="a jaxaudio checkpoint folder, a training --checkpoint_dir (its "
                        "best_model/ is used), or the original's PyTorch best_model.pt")
    data = p.add_argument_group("pairs (default: synthetic drum/harmony pairs made in memory)")
    data.add_argument("--val_folder",
                      help="a folder of pair_XXXX_input.wav + pair_XXXX_output.wav (or "
                           "_target.wav) instead of synthetic pairs")
    data.add_argument("--num_pairs", type=int,
                      help=f"how many pairs (default: {DEFAULT_PAIRS} synthetic ones; all of "
                           f"--val_folder, in name order)")
    data.add_argument("--duration", type=float,
                      help=f"seconds per synthetic clip (default {DEFAULT_SECONDS:g}); with "
                           f"--val_folder, clips are cropped to this length if given")
    data.add_argument("--seed", type=int, default=DEFAULT_SEED,
                      help=f"seed of the synthetic songs (default {DEFAULT_SEED}; the training "
                           f"sets use {TRAINING_SEED}, so do not pass that)")
    data.add_argument("--song_mode", choices=("sum", "none"),
                      help="sum: the pair is the drums and the harmony of one song, which is "
                           "their sum (default for synthetic pairs and for folders); none: "
                           "reference-free metrics only, for folders whose clips are not parts "
                           "of one song (default when the folder's metadata.json says "
                           "continuation)")
    p.add_argument("--output_json", default=DEFAULT_JSON,
                   help=f"where the per-pair and median metrics go (default: {DEFAULT_JSON}, "
                        f"replaced if it exists)")
    codec = p.add_argument_group("codec (default: the checkpoint's)")
    codec.add_argument("--codec", choices=("mdct", "encodec"),
                       help="override the codec the model was trained with")
    codec.add_argument("--codec_weights",
                       help="EnCodec 24 kHz weights (overrides the checkpoint's)")
    return p


def synthetic_pairs(num_pairs: int, seconds: float, seed: int, sample_rate: int):
    """``[(name, input [N], target [N])]``: drums and harmony of ``num_pairs`` songs, as
    ``jaxaudio.data.synth`` draws them (song ``i`` from ``default_rng([seed, i])``)."""
    from jaxaudio.data.synth import draw_song, render_drums, render_harmony

    n = int(round(seconds * sample_rate))
    pairs = []
    for i in range(num_pairs):
        rng = np.random.default_rng([seed, i])
        song = draw_song(rng)
        drums = render_drums(song, n, sample_rate, rng)
        pairs.append((f"synth_{seed}_{i:04d}", drums, render_harmony(song, n, sample_rate, rng)))
    return pairs


def folder_pairs(folder: str, num_pairs: int | None, seconds: float | None, sample_rate: int):
    """``[(name, input [N], target [N])]`` read from ``folder`` (mono, at ``sample_rate``; the
    target cropped or looped to the input's length; both cropped to ``seconds`` if given)."""
    from jaxaudio.inference.modes import check_audio, read_audio, select_pairs
    from jaxaudio.inference.postprocess import fit_target

    chosen, targets = select_pairs(folder, num_pairs or 10**9, False, 0)
    pairs = []
    for pair, target_path in zip(chosen, targets):
        x, _ = read_audio(check_audio(pair.input_path), sample_rate)
        if seconds is not None:
            x = x[:int(round(seconds * sample_rate))]
        y, _ = read_audio(check_audio(target_path), sample_rate)
        pairs.append((pair.name, x, fit_target(y, x.shape[0], sample_rate)))
    return pairs


def evaluate_pairs(gen, pairs, *, frame_rate: float, song_mode: str, progress: bool = True):
    """Run the model on each pair and measure its raw output; returns the per-pair records
    ``[{"name": ..., "metrics": {...}}]``."""
    from tqdm import tqdm

    from jaxaudio.evaluation import clip_metrics
    from jaxaudio.inference.loading import GenerateError

    records = []
    for name, x, y in tqdm(pairs, desc="evaluate", unit="pair", dynamic_ncols=True,
                           disable=not progress):
        try:
            result = gen.generate(x, y)
        except GenerateError as e:
            raise GenerateError(f"pair {name}: {e}") from e
        metrics = clip_metrics(result.output_audio, x, y, sample_rate=gen.sample_rate,
                               frame_rate=frame_rate, song_mode=song_mode)
        records.append({"name": name, "metrics": metrics})
    return records


def _check_args(args: argparse.Namespace) -> None:
    from jaxaudio.inference.loading import GenerateError

    if args.num_pairs is not None and args.num_pairs < 1:
        raise GenerateError(f"--num_pairs {args.num_pairs}: expected a positive integer")
    if args.duration is not None and not args.duration > 0:
        raise GenerateError(f"--duration {args.duration}: expected a positive number of seconds")
    if args.seed < 0:
        raise GenerateError(f"--seed {args.seed}: expected a non-negative integer")
    if args.val_folder is not None and not Path(args.val_folder).is_dir():
        raise GenerateError(f"--val_folder {args.val_folder}: no such folder; expected a folder "
                            f"of pair_XXXX_input.wav + pair_XXXX_output.wav files")
    out = Path(args.output_json)
    if out.is_dir() or not out.parent.is_dir():
        raise GenerateError(f"--output_json {out}: expected a file path in an existing folder")


def run(args: argparse.Namespace) -> dict:
    """Everything :func:`main` does; returns the JSON report."""
    from jaxaudio.evaluation import aggregate, folder_is_continuation, format_table
    from jaxaudio.inference.loading import load_for_inference
    from jaxaudio.inference.pipeline import Generator

    _check_args(args)
    if args.val_folder is None:
        song_mode = args.song_mode or "sum"
        if args.seed == TRAINING_SEED:
            print(f"warning: --seed {TRAINING_SEED} draws the training set's songs; these "
                  f"pairs are not unseen", flush=True)
    else:
        song_mode = args.song_mode or (
            "none" if folder_is_continuation(Path(args.val_folder)) else "sum")
    loaded = load_for_inference(args.checkpoint, codec=args.codec,
                                codec_weights=args.codec_weights)
    for w in loaded.warnings:
        print(f"warning: {w}", flush=True)
    codec = loaded.codec
    gen = Generator(loaded.model, codec, cascade=loaded.cascade)
    sr, frame_rate = int(codec.sample_rate), float(codec.frame_rate)
    if args.val_folder is None:
        seconds = DEFAULT_SECONDS if args.duration is None else args.duration
        pairs = synthetic_pairs(args.num_pairs or DEFAULT_PAIRS, seconds, args.seed, sr)
        source = f"{len(pairs)} synthetic pair(s) of {seconds:g} s, seed {args.seed}"
    else:
        pairs = folder_pairs(args.val_folder, args.num_pairs, args.duration, sr)
        source = f"{len(pairs)} pair(s) from {args.val_folder}"
    print(f"Evaluating {loaded.source}\n  on {source}; codec {loaded.codec_name} at "
          f"{frame_rate:g} frames/s; song: "
          f"{'input + target' if song_mode == 'sum' else 'none (reference-free)'}", flush=True)
    records = evaluate_pairs(gen, pairs, frame_rate=frame_rate, song_mode=song_mode)
    summary = aggregate([r["metrics"] for r in records])
    print(format_table([r["metrics"] for r in records], [r["name"] for r in records], summary))
    report = {
        "checkpoint": str(args.checkpoint), "model": loaded.source, "codec": loaded.codec_name,
        "sample_rate": sr, "frame_rate": frame_rate, "song_mode": song_mode,
        "pairs_source": ({"kind": "synthetic", "seed": args.seed, "num_pairs": len(pairs),
                          "duration": seconds} if args.val_folder is None else
                         {"kind": "folder", "val_folder": str(args.val_folder),
                          "num_pairs": len(pairs)}),
        "aggregate": summary, "pairs": records,
    }
    out = Path(args.output_json)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"Wrote {out}", flush=True)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from jaxaudio.inference.loading import user_errors

    try:
        run(args)
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
