"""`python -m jaxaudio.generate`: turn an input and a target WAV into a mix (see `--help`).

Single pair::

    python -m jaxaudio.generate --checkpoint runs/builtin/checkpoints \\
        --input_audio in.wav --target_audio target.wav --output mix.wav

Batch, as the original's ``inference_cascade.py``::

    python -m jaxaudio.generate --checkpoint CKPT --val_folder data/val --num_samples 5 \\
        --output_folder inference_outputs [--shuffle_targets]

Exit status: 0 on success, 2 for a bad flag, file or checkpoint (the message names it).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from jaxaudio.training.cli import _parse_bool


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxaudio.generate",
        description=(
            "Generate with a trained model: encode input (and target) with the codec, run the "
            "model in eval mode, decode, match the level (RMS to the quadratic mean of input "
            "and target, gain at most 3x), optionally notch-filter spectral outliers, limit "
            "the peak below 1.0. Writes the WAV, a waveform and a spectrogram PNG per sample "
            "and prints rhythm-transfer metrics. Audio of any rate and channel count is mixed "
            "to mono and resampled to the codec's rate; inputs longer than the model's "
            "position table are processed in overlapping segments joined by crossfades."),
    )
    p.add_argument("--checkpoint", required=True,
                   help="a jaxaudio checkpoint folder (e.g. .../best_model), a training "
                        "--checkpoint_dir (its best_model/ is used), or the original's "
                        "PyTorch best_model.pt")
    single = p.add_argument_group("one pair")
    single.add_argument("--input_audio", help="input WAV (any rate, any channels)")
    single.add_argument("--target_audio",
                        help="target WAV; required by cascade checkpoints. Cropped to the "
                             "input's length, or looped up to it (20 ms crossfades)")
    single.add_argument("--output", help="output WAV; the plots go beside it "
                                         "(OUT_waveforms.png, OUT_spectrograms.png)")
    batch = p.add_argument_group("a folder of pairs (the original's mode)")
    batch.add_argument("--val_folder", help="folder of pair_XXXX_input.wav + "
                                            "pair_XXXX_output.wav (or _target.wav)")
    batch.add_argument("--num_samples", type=int, default=5,
                       help="how many pairs, in name order (default: 5)")
    batch.add_argument("--output_folder", help="where the WAVs, plots and metrics.jsonl go")
    batch.add_argument("--shuffle_targets", action="store_true",
                       help="pair each input with another pair's target (chosen with --seed)")
    batch.add_argument("--seed", type=int, default=0, help="seed of --shuffle_targets")
    batch.add_argument("--skip_bad_files", type=_parse_bool, nargs="?", const=True,
                       default=False, metavar="true|false",
                       help="leave out pairs with an unreadable or too short file, naming "
                            "them, instead of stopping before anything is written")
    codec = p.add_argument_group("codec (default: the checkpoint's)")
    codec.add_argument("--codec", choices=("mdct", "encodec"),
                       help="override the codec (default: what the model was trained with; "
                            "EnCodec for the original's .pt files)")
    codec.add_argument("--codec_weights",
                       help="EnCodec 24 kHz weights: encodec_24khz-d7cc33bc.th, a Hugging Face "
                            "model.safetensors or a converted file (overrides the checkpoint's)")
    post = p.add_argument_group("post-processing")
    post.add_argument("--filter", action="store_true",
                      help="notch-filter the strongest spectral outliers (at most 10, >= 50 Hz)")
    post.add_argument("--filter_percentile", type=float, default=99.5,
                      help="FFT magnitudes above this percentile are outliers (default: 99.5)")
    seg = p.add_argument_group("long inputs")
    seg.add_argument("--segment_frames", type=int,
                     help="latent frames per segment (default and maximum: the model's "
                          "position table, 2000)")
    seg.add_argument("--overlap_frames", type=int,
                     help="least overlap of neighbouring segments (default: a quarter segment)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    return p


def _mode(args: argparse.Namespace) -> str:
    """``"single"`` or ``"batch"``; raises GenerateError for a mix or a missing flag."""
    from jaxaudio.inference.loading import GenerateError

    single = [f for f in ("input_audio", "target_audio", "output") if getattr(args, f)]
    batch = [f for f in ("val_folder", "output_folder") if getattr(args, f)]
    if single and batch:
        raise GenerateError(f"--{single[0]} and --{batch[0]} belong to different modes: give "
                            f"either --input_audio/--output or --val_folder/--output_folder")
    if batch:
        for f in ("val_folder", "output_folder"):
            if not getattr(args, f):
                raise GenerateError(f"--{f} is required with --{batch[0]}")
        return "batch"
    if not args.input_audio:
        raise GenerateError("give --input_audio IN.wav [--target_audio TG.wav] --output OUT.wav, "
                            "or --val_folder DIR --output_folder DIR")
    if not args.output:
        raise GenerateError("--output OUT.wav is required with --input_audio")
    return "single"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "matplotlib", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from jaxaudio.inference.loading import GenerateError, user_errors
    from jaxaudio.inference.modes import Options, run_batch, run_single

    try:
        mode = _mode(args)
        if not 0.0 < args.filter_percentile < 100.0:
            raise GenerateError(f"--filter_percentile {args.filter_percentile}: expected a "
                                f"percentile strictly between 0 and 100")
        opts = Options(args.checkpoint, args.codec, args.codec_weights, args.filter,
                       args.filter_percentile, args.segment_frames, args.overlap_frames,
                       args.overwrite)
        if mode == "single":
            run_single(opts, args.input_audio, args.target_audio, args.output)
        else:
            run_batch(opts, args.val_folder, args.num_samples, args.output_folder,
                      args.shuffle_targets, args.seed, args.skip_bad_files)
    except user_errors() as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
