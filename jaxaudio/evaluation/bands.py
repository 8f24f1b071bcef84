"""Band-wise measures: is the output a blend of the two parts, or a crossover between them?

A crossover (drums above some frequency, harmony below it) keeps the full-band onset
correlation with the input high while the low bands hold no drums at all. These measures look
at four bands, below 250 Hz, 250-2000 Hz, 2000-6000 Hz and above 6 kHz, each the onset mel
filters (64 HTK filters, FFT 1024 and hop 256 at 24 kHz) whose centre frequency lies in it: at
24 kHz, 6, 24, 20 and 14 filters. Names carry the band's edges in Hz (``0_250``,
``250_2000``, ``2000_6000``, ``6000_up``):

- ``onset_corr_<band>``: Pearson correlation of the band's onset envelopes
  (:func:`jaxaudio.evaluation.metrics.onset_envelope`, the full-band measure's definition
  restricted to the band) of the output and the input: the drums' rhythm in that band.
- ``song_onset_corr_<band>``: the same for the song (input + target) against the input: the
  ceiling, what a perfect blend scores (the harmony's own onsets pull it below 1).
- ``energy_corr_<band>``: Pearson correlation of the band's energy envelopes in dB
  (:func:`jaxaudio.evaluation.metrics.band_energy_envelope`) of the output and the song: 1 =
  the band's loudness follows the song's.

A band with no filter (above Nyquist) or a flat envelope (silence) gives 0, as
:func:`jaxaudio.evaluation.metrics.pearson` does.
"""

from __future__ import annotations

import math

from jaxaudio.evaluation.metrics import (_common, _mono, band_energy_envelope, onset_envelope,
                                         onset_mel_power, pearson)

BANDS = ((0.0, 250.0), (250.0, 2000.0), (2000.0, 6000.0), (6000.0, math.inf))


def band_name(band: tuple[float, float]) -> str:
    """``(250, 2000)`` -> ``"250_2000"``, ``(6000, inf)`` -> ``"6000_up"``."""
    lo, hi = band
    return f"{lo:g}_{'up' if math.isinf(hi) else f'{hi:g}'}"


BAND_NAMES = tuple(band_name(b) for b in BANDS)


def band_metrics(output, input, sr: int, *, song=None,
                 bands: tuple[tuple[float, float], ...] = BANDS) -> dict[str, float]:
    """The band measures of one clip (see the module docstring), by name.

    Args:
        output, input: mono ``[N]`` clips (compared over their common length).
        sr: their sample rate in Hz.
        song: the right answer ``[N]`` (input + target); without it only ``onset_corr_*``.
        bands: ``(lo, hi)`` pairs in Hz (``hi`` may be ``inf``).
    """
    clips = [_mono(output, "output"), _mono(input, "input")]
    if song is not None:
        clips.append(_mono(song, "song"))
    clips = _common(*clips)
    mels = [onset_mel_power(x, sr) for x in clips]
    out: dict[str, float] = {}
    for band in bands:
        name = band_name(band)
        onsets = [onset_envelope(None, sr, band=band, mel_power=m) for m in mels]
        out[f"onset_corr_{name}"] = pearson(onsets[0], onsets[1])
        if song is not None:
            out[f"song_onset_corr_{name}"] = pearson(onsets[2], onsets[1])
            energy = [band_energy_envelope(None, sr, band=band, mel_power=m)
                      for m in (mels[0], mels[2])]
            out[f"energy_corr_{name}"] = pearson(energy[0], energy[1])
    return out


def band_keys(with_song: bool = True) -> list[str]:
    """The names :func:`band_metrics` returns for the default bands, band by band."""
    kinds = ("onset_corr", "song_onset_corr", "energy_corr") if with_song else ("onset_corr",)
    return [f"{k}_{n}" for n in BAND_NAMES for k in kinds]
