"""Where a model's frame-rate buzz comes from: the smooth-in-time part of its latent update.

For a trained checkpoint and a few unseen synthetic pairs, splits the output latents into the
residual the cascade starts from (``(input + target) / 2``) and the network's update, then
decodes the output with the update's smooth part (a ``W``-frame moving average) removed, and
with only its mean over time removed, and measures both with jaxaudio.evaluate's metrics.

    python experiments/diagnose_buzz.py runs/builtin/checkpoints --num_pairs 2
"""
import argparse

import jax.numpy as jnp
import numpy as np
from scipy.ndimage import uniform_filter1d

from jaxaudio.evaluate import synthetic_pairs
from jaxaudio.evaluation import clip_metrics
from jaxaudio.inference.loading import load_for_inference
from jaxaudio.inference.pipeline import Generator

KEYS = ("distance_ratio", "comb_db_excess", "hf_share_excess")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("--num_pairs", type=int, default=2)
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--windows", type=int, nargs="+", default=[5, 9, 17])
    a = p.parse_args()
    lm = load_for_inference(a.checkpoint)
    gen = Generator(lm.model, lm.codec, cascade=lm.cascade)
    sr, f0 = int(lm.codec.sample_rate), float(lm.codec.frame_rate)

    def decode(z):
        return np.asarray(lm.codec.decode(jnp.asarray(z, jnp.float32)[None]))[0, 0]

    for name, x, y in synthetic_pairs(a.num_pairs, 4.0, a.seed, sr):
        g = gen.generate(x, y)
        half = 0.5 * (g.input_latent + g.target_latent)
        update = g.output_latent - half
        n = len(x)
        rows = {"as generated": g.output_audio,
                "mean over time removed": decode(half + update - update.mean(1, keepdims=True))}
        for w in a.windows:
            smooth = uniform_filter1d(update, w, axis=1, mode="nearest")
            share = np.sum(smooth ** 2) / np.sum(update ** 2)
            rows[f"{w}-frame smooth part removed ({100 * share:.0f} % of the update)"] = decode(
                half + update - smooth)
        for label, audio in rows.items():
            m = clip_metrics(audio[:n], x, y, sample_rate=sr, frame_rate=f0)
            print(f"{name} {label}: " + ", ".join(f"{k} {m[k]:+.2f}" for k in KEYS))


if __name__ == "__main__":
    main()
