"""The masking agent's onset gate without training: its prior masks alone, measured as music.

For each pair the MDCT latents (the issue-12 recipe's codec, 128 channels) of input and target
are split by ``sigmoid(prior)``, the gate's features times the given gains (the learned logits
left out), decoded, and measured by band as ``python -m jaxaudio.evaluate`` does: the output's
onset correlation with the input in each band as a percentage of the song's (medians over the
pairs), the mask's mean (the input's share), complementarity and mask onset correlation. CPU
is enough (50 pairs of 4 s in about 15 s per setting).

    python experiments/mask_prior.py                       # the defaults, 50 synthetic pairs
    python experiments/mask_prior.py --val_folder .device/recorded50/val --gains 3.5,1 3,2
    python experiments/mask_prior.py --smoothed --gains 3,2    # the 3-frame energy contrast
"""
import argparse

import jax
import jax.numpy as jnp
import numpy as np

from jaxaudio.agents.masking.generator import (ONSET_ENERGY_GAIN_INIT, ONSET_GAIN_INIT,
                                               energy_contrast, input_onset,
                                               mask_music_statistics, mask_regularisers)
from jaxaudio.codecs.mdct import MDCTCodec
from jaxaudio.evaluate import DEFAULT_SEED, folder_pairs, synthetic_pairs
from jaxaudio.evaluation.bands import BANDS, band_metrics, band_name

SR = 24000


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--val_folder", help="recorded pairs (default: synthetic pairs)")
    ap.add_argument("--num_pairs", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--smoothed", action="store_true",
                    help="the energy gate's 3-frame energy contrast instead of the per-frame one")
    ap.add_argument("--gains", nargs="+",
                    default=[f"{ONSET_ENERGY_GAIN_INIT:g},{ONSET_GAIN_INIT:g}"],
                    help="ENERGY_GAIN,ONSET_GAIN settings (onset gain 0: the energy contrast "
                         "alone)")
    a = ap.parse_args()
    pairs = (folder_pairs(a.val_folder, a.num_pairs, a.seconds, SR) if a.val_folder
             else synthetic_pairs(a.num_pairs, a.seconds, DEFAULT_SEED, SR))
    n = min(p[1].size for p in pairs)
    x = jnp.stack([jnp.asarray(p[1][:n], jnp.float32) for p in pairs])[:, None]
    y = jnp.stack([jnp.asarray(p[2][:n], jnp.float32) for p in pairs])[:, None]
    codec = MDCTCodec(128, SR)
    ex, ey = codec.encode(x), codec.encode(y)
    contrast = energy_contrast(ex, ey, 3 if a.smoothed else 1)
    onset = input_onset(ex)
    names = [band_name(b) for b in BANDS]
    print(f"{len(pairs)} pairs; band onset correlation, % of the song's: "
          f"{' / '.join(names)}")
    for spec in a.gains:
        eg, og = (float(v) for v in spec.split(","))
        m = jax.nn.sigmoid(eg * contrast + og * onset)
        out = np.asarray(codec.decode(ex * m + ey * (1 - m))).reshape(len(pairs), -1)
        recs = [band_metrics(out[i], np.asarray(x[i, 0]), SR,
                             song=np.asarray(x[i, 0] + y[i, 0])) for i in range(len(pairs))]
        med = {k: float(np.median([r[k] for r in recs])) for k in recs[0]}
        pct = " / ".join(f"{100 * med[f'onset_corr_{b}'] / med[f'song_onset_corr_{b}']:.0f}"
                         for b in names)
        stats = {**mask_regularisers(m, 1 - m)[2], **mask_music_statistics(m, ex)}
        print(f"gains {eg:g},{og:g}: bands {pct}; share {float(stats['input_mask_mean']):.2f}, "
              f"complementarity {float(stats['complementarity']):.2f}, "
              f"mask onset corr {float(stats['mask_onset_corr']):.2f}", flush=True)


if __name__ == "__main__":
    main()
