"""`python -m jaxaudio.evaluate`: how musical a trained model's blends are (see `--help`).

On unseen synthetic drum/harmony pairs (made in memory with a seed the training never uses)::

    python -m jaxaudio.evaluate --checkpoint runs/builtin/checkpoints

or on a pair folder::

    python -m jaxaudio.evaluate --checkpoint CKPT --val_folder data/val [--song_mode none]

Each pair's input (and target) goes through the codec and the model in eval mode; the decoded
output, before any level matching or filtering, is measured with
:func:`jaxaudio.evaluation.clip_metrics`. Prints two tables (one row per pair and the
medians: the headline metrics, then the band-wise ones) and writes the per-pair and median
metrics as JSON. ``--report DIR`` also writes ``DIR/index.html``: the metrics and, for the first
``--report_pairs`` pairs, the input, target, song and output to listen to beside their
spectrograms (:mod:`jaxaudio.evaluation.report`).

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
DEFAULT_REPORT_PAIRS = 4


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxaudio.evaluate",
        description=(
            "Measure how musical a trained model's blends are. On drum/harmony pairs of one "
            "song the right answer is the song (input + target): the output's log-spectral "
            "distance to it over the closer part's (distance, below 1 = nearer the song than "
            "either part), comb contrast at codec-frame-rate harmonics and energy share above "
            "6 kHz (output minus song), onset correlation with the input, chroma similarity "
            "with the target (and the input's own, as the baseline); and per band (<250 Hz, "
            "250-2000 Hz, 2-6 kHz, >6 kHz) the onset correlation with the input beside the "
            "song's own (the ceiling) and the band-energy correlation with the song, which "
            "tell a blend from a crossover. The model's raw output is measured (no level "
            "matching, no filter)."),
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
    p.add_argument("--report", metavar="DIR",
                   help="also write an HTML report to this folder (index.html: the metrics, "
                        "and players and spectrograms of the first --report_pairs pairs); "
                        "a new or empty folder, or an earlier report, which is replaced")
    p.add_argument("--report_pairs", type=int, default=DEFAULT_REPORT_PAIRS, metavar="N",
                   help=f"pairs to listen to in the report (default {DEFAULT_REPORT_PAIRS})")
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


def evaluate_pairs(gen, pairs, *, frame_rate: float, song_mode: str, progress: bool = True,
                   keep: int = 0):
    """Run the model on each pair and measure its raw output; returns the per-pair records
    ``[{"name": ..., "metrics": {...}}]`` and the outputs ``[N]`` of the first ``keep``."""
    from tqdm import tqdm

    from jaxaudio.evaluation import clip_metrics
    from jaxaudio.inference.loading import GenerateError

    records, outputs = [], []
    for name, x, y in tqdm(pairs, desc="evaluate", unit="pair", dynamic_ncols=True,
                           disable=not progress):
        try:
            result = gen.generate(x, y)
        except GenerateError as e:
            raise GenerateError(f"pair {name}: {e}") from e
        metrics = clip_metrics(result.output_audio, x, y, sample_rate=gen.sample_rate,
                               frame_rate=frame_rate, song_mode=song_mode)
        records.append({"name": name, "metrics": metrics})
        if len(outputs) < keep:
            outputs.append(np.asarray(result.output_audio, np.float64).reshape(-1))
    return records, outputs


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
    if args.report_pairs < 0:
        raise GenerateError(f"--report_pairs {args.report_pairs}: expected 0 or more pairs")
    if args.report is not None:
        from jaxaudio.evaluation.report import check_report_folder

        check_report_folder(args.report)  # before the model runs, not after


def _song_mode(args: argparse.Namespace) -> str:
    from jaxaudio.evaluation import folder_is_continuation

    if args.val_folder is None:
        if args.seed == TRAINING_SEED:
            print(f"warning: --seed {TRAINING_SEED} draws the training set's songs; these "
                  f"pairs are not unseen", flush=True)
        return args.song_mode or "sum"
    return args.song_mode or (
        "none" if folder_is_continuation(Path(args.val_folder)) else "sum")


def _pairs(args: argparse.Namespace, sr: int):
    """The pairs, and the JSON's ``pairs_source`` and a line saying what they are."""
    if args.val_folder is None:
        seconds = DEFAULT_SECONDS if args.duration is None else args.duration
        pairs = synthetic_pairs(args.num_pairs or DEFAULT_PAIRS, seconds, args.seed, sr)
        return pairs, {"kind": "synthetic", "seed": args.seed, "num_pairs": len(pairs),
                       "duration": seconds}, \
            f"{len(pairs)} synthetic pair(s) of {seconds:g} s, seed {args.seed}"
    pairs = folder_pairs(args.val_folder, args.num_pairs, args.duration, sr)
    return pairs, {"kind": "folder", "val_folder": str(args.val_folder),
                   "num_pairs": len(pairs)}, f"{len(pairs)} pair(s) from {args.val_folder}"


def _print_tables(records, summary) -> None:
    from jaxaudio.evaluation import format_table
    from jaxaudio.evaluation.quality import BAND_COLUMNS

    metrics, names = [r["metrics"] for r in records], [r["name"] for r in records]
    print(format_table(metrics, names, summary))
    print("\nBands: onset correlation with the input (the song's own beside it, the ceiling), "
          "band-energy correlation with the song")
    print(format_table(metrics, names, summary, columns=BAND_COLUMNS))


def run(args: argparse.Namespace) -> dict:
    """Everything :func:`main` does; returns the JSON report."""
    from jaxaudio.evaluation import aggregate
    from jaxaudio.inference.loading import load_for_inference
    from jaxaudio.inference.pipeline import Generator

    _check_args(args)
    song_mode = _song_mode(args)
    loaded = load_for_inference(args.checkpoint, codec=args.codec,
                                codec_weights=args.codec_weights)
    for w in loaded.warnings:
        print(f"warning: {w}", flush=True)
    codec = loaded.codec
    gen = Generator(loaded.model, codec, cascade=loaded.cascade)
    sr, frame_rate = int(codec.sample_rate), float(codec.frame_rate)
    pairs, pairs_source, source = _pairs(args, sr)
    print(f"Evaluating {loaded.source}\n  on {source}; codec {loaded.codec_name} at "
          f"{frame_rate:g} frames/s; song: "
          f"{'input + target' if song_mode == 'sum' else 'none (reference-free)'}", flush=True)
    keep = args.report_pairs if args.report is not None else 0
    records, outputs = evaluate_pairs(gen, pairs, frame_rate=frame_rate, song_mode=song_mode,
                                      keep=keep)
    summary = aggregate([r["metrics"] for r in records])
    _print_tables(records, summary)
    report = {
        "checkpoint": str(args.checkpoint), "model": loaded.source, "codec": loaded.codec_name,
        "sample_rate": sr, "frame_rate": frame_rate, "song_mode": song_mode,
        "pairs_source": pairs_source, "aggregate": summary, "pairs": records,
    }
    out = Path(args.output_json)
    out.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    print(f"Wrote {out}", flush=True)
    if args.report is not None:
        index = write_html_report(args.report, report, pairs, outputs)
        print(f"Wrote {index} (open it in a browser)", flush=True)
    return report


def write_html_report(folder: str, report: dict, pairs, outputs) -> Path:
    """``--report``: the report folder of ``report`` (the JSON), with the ``outputs`` of the
    first pairs to listen to; returns its ``index.html``."""
    from jaxaudio.evaluation.quality import BAND_COLUMNS, TABLE_COLUMNS
    from jaxaudio.evaluation.report import write_report

    clips = []
    for (name, x, y), output in zip(pairs, outputs):
        n = min(x.shape[0], y.shape[0])
        c = {"input": x, "target": y, "output": output}
        if report["song_mode"] == "sum":
            c["song"] = np.asarray(x[:n], np.float64) + np.asarray(y[:n], np.float64)
        clips.append((name, c))
    meta = {k: report[k] for k in ("checkpoint", "model", "codec", "sample_rate", "frame_rate",
                                   "song_mode")}
    meta["pairs"] = ", ".join(f"{k} {v}" for k, v in report["pairs_source"].items())
    order = [c[0] for c in TABLE_COLUMNS + BAND_COLUMNS]
    return write_report(folder, meta=meta, records=report["pairs"],
                        summary=report["aggregate"], clips=clips,
                        sample_rate=report["sample_rate"], order=order)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from jaxaudio.evaluation.report import ReportError
    from jaxaudio.inference.loading import user_errors

    try:
        run(args)
    except (*user_errors(), ReportError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
