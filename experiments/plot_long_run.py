"""Figures of the issue-12 long runs: the GAN over the epochs, and the spectrograms of a blend.

    python experiments/plot_long_run.py gan --results experiments/results/h200_long_run.json \
        --out experiments/figures/h200_gan_200_epochs.png orig new ctl
    python experiments/plot_long_run.py blend --pair .device/recorded50/val/pair_0000 \
        --output "before=OLD/onset_recorded_0000.wav" "now=OUT/onset_recorded_0000.wav" \
        --out experiments/figures/h100_blend_recorded_0000_gates.png

``gan``: one column per variant of ``h200_long_run.json`` (its ``curve``: one row per epoch):
the discriminator's training accuracy (and, where logged, the same forwards without the
adaptive instance noise), the issue's 0.55-0.9 band, the GAN losses, the noise level and the
generator's learning rate. ``blend``: input, target, song (their sum) and the model's outputs
(one row each), each RMS-normalised to the song, on one dB scale.
"""
import argparse
import json
from pathlib import Path

import numpy as np

from jaxaudio.plots import _pyplot, plot_spectrograms


def plot_gan(args):
    runs = json.loads(Path(args.results).read_text())
    plt = _pyplot()
    n = len(args.variants)
    fig, axes = plt.subplots(3, n, figsize=(5.2 * n, 9), sharex="col", squeeze=False)
    for j, name in enumerate(args.variants):
        curve = runs[name]["curve"]
        ep = np.arange(1, len(curve) + 1)
        col = lambda k: np.array([r.get(k, np.nan) for r in curve], dtype=float)
        ax = axes[0, j]
        ax.axhspan(0.55, 0.9, color="tab:green", alpha=0.12, label="issue's band 0.55-0.9")
        ax.plot(ep, col("train_disc_acc"), label="D training accuracy")
        if "train_disc_acc_clean" in curve[0]:
            ax.plot(ep, col("train_disc_acc_clean"), lw=0.8, label="same, without the noise")
        ax.set_ylim(0.4, 1.02)
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
        ax = axes[1, j]
        ax.plot(ep, col("train_gan_loss"), label="generator GAN loss")
        ax.plot(ep, col("train_disc_loss"), label="discriminator loss")
        ax.set_yscale("symlog", linthresh=1.0)
        ax.legend(fontsize=7)
        ax = axes[2, j]
        ax.semilogy(ep, col("learning_rate"), color="k", label="generator learning rate")
        ax.set_xlabel("epoch")
        ax.legend(fontsize=7, loc="lower left")
        if "train_disc_noise" in curve[0]:
            tw = ax.twinx()
            tw.plot(ep, col("train_disc_noise"), color="tab:red", lw=0.8)
            tw.set_ylabel("instance-noise level (x real RMS)", color="tab:red", fontsize=8)
    axes[0, 0].set_ylabel("accuracy")
    axes[1, 0].set_ylabel("loss")
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=90)
    print("wrote", args.out)


def _read(path):
    import soundfile as sf

    x, sr = sf.read(str(path), dtype="float32", always_2d=True)
    return x.mean(axis=1), sr


def plot_blend(args):
    x, sr = _read(f"{args.pair}_input.wav")
    y, _ = _read(f"{args.pair}_output.wav")
    outputs = {}
    for spec in args.output:
        label, path = spec.split("=", 1) if "=" in spec else ("output", spec)
        outputs[label], sr_out = _read(path)
        if sr_out != sr:
            raise SystemExit(f"{path}: {sr_out} Hz, but the pair is at {sr} Hz")
    n = min(len(x), len(y), *(len(o) for o in outputs.values()))
    song = x[:n] + y[:n]
    ref = np.sqrt(np.mean(song ** 2)) + 1e-12
    norm = lambda s: s[:n] * ref / (np.sqrt(np.mean(s[:n] ** 2)) + 1e-12)
    rows = {"input": norm(x), "target": norm(y), "song": song,
            **{label: norm(o) for label, o in outputs.items()}}
    print("wrote", plot_spectrograms(rows, sr, args.out, title=args.title))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    g = sub.add_parser("gan")
    g.add_argument("--results", default="experiments/results/h200_long_run.json")
    g.add_argument("--out", required=True)
    g.add_argument("--title", default="The latent GAN on the issue-12 recipe (one H200)")
    g.add_argument("variants", nargs="+")
    b = sub.add_parser("blend")
    b.add_argument("--pair", required=True, help="path prefix of PAIR_input.wav / _output.wav")
    b.add_argument("--output", required=True, nargs="+",
                   help="the model's blends, [LABEL=]PATH.wav each (one row each)")
    b.add_argument("--out", required=True)
    b.add_argument("--title", default="")
    a = ap.parse_args()
    plot_gan(a) if a.what == "gan" else plot_blend(a)
