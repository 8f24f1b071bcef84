"""Quality of generated blends: the metrics of one clip by name, their medians, a table.

A drum/harmony pair of one song has a known right answer, the song itself (``input +
target``): :func:`clip_metrics` measures the output against it and against each part. For a
pair folder whose clips are not two parts of one song (e.g. consecutive segments), pass
``song=None, song_mode="none"``: only the reference-free metrics are kept.

Metric names (one line each; the README repeats them):

- ``distance_ratio``: log-spectral distance of the output to the song over that of the closer
  single part; below 1 = nearer the song than either part.
- ``comb_db_excess``: comb contrast at codec-frame-rate harmonics, output minus song (dB);
  above 0 = a frame-rate buzz the song does not have.
- ``hf_share_excess``: energy share above 6 kHz, output minus song (percentage points);
  above 0 = added hiss.
- ``onset_corr_input``: correlation of the output's onset envelope with the input's (rhythm kept).
- ``chroma_sim_target``: chroma similarity of the output with the target (harmony kept).
- ``chroma_sim_input_baseline``: chroma similarity of the input with the target (what
  ``chroma_sim_target`` should beat).
- ``chroma_sim_gain``: ``chroma_sim_target - chroma_sim_input_baseline``.
- band-wise, for the bands below 250 Hz, 250-2000 Hz, 2000-6000 Hz and above 6 kHz (named
  ``0_250``, ``250_2000``, ``2000_6000``, ``6000_up``; see :mod:`jaxaudio.evaluation.bands`):
  ``onset_corr_<band>`` (output against input), ``song_onset_corr_<band>`` (the song against
  the input: the ceiling), ``energy_corr_<band>`` (band-energy envelopes, output against song).
  A crossover (drums above a frequency, harmony below) scores low onset correlations in the
  bands below it, however high ``onset_corr_input`` is.
- raw values: ``distance_output_song``, ``distance_input_song``, ``distance_target_song``,
  ``comb_db_output``, ``comb_db_song``, ``hf_share_output``, ``hf_share_song``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jaxaudio.evaluation.bands import BAND_NAMES, band_metrics
from jaxaudio.evaluation.metrics import (chroma_similarity, comb_contrast_db, high_frequency_share,
                                         log_spectral_distance, onset_correlation)

SONG_MODES = ("sum", "none")
# Columns of the printed table: (metric, header, format).
TABLE_COLUMNS = (
    ("distance_ratio", "distance", "{:.2f}"),
    ("comb_db_excess", "comb dB", "{:+.1f}"),
    ("hf_share_excess", "HF pts", "{:+.1f}"),
    ("onset_corr_input", "onset", "{:.2f}"),
    ("chroma_sim_target", "chroma", "{:.2f}"),
    ("chroma_sim_input_baseline", "(input's)", "{:.2f}"),
)
# Reference-free mode has no song: the raw comb and high-frequency figures take their place.
TABLE_COLUMNS_NO_SONG = (
    ("comb_db_output", "comb dB", "{:.1f}"),
    ("hf_share_output", "HF %", "{:.1f}"),
) + TABLE_COLUMNS[3:]
# The band table: per band, the output's onset correlation with the input, the song's (the
# ceiling) and the output's band-energy correlation with the song.
BAND_HEADERS = {"0_250": "<250", "250_2000": "250-2k", "2000_6000": "2k-6k", "6000_up": ">6k"}
BAND_COLUMNS = tuple(col for name in BAND_NAMES for col in (
    (f"onset_corr_{name}", f"{BAND_HEADERS[name]} onset", "{:.2f}"),
    (f"song_onset_corr_{name}", "(song's)", "{:.2f}"),
    (f"energy_corr_{name}", "energy", "{:.2f}")))
DISTANCE_DELTA = 1e-3  # keeps the ratio finite when a part equals the song


def _clip(x, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name}: expected a non-empty 1-D clip, got shape {x.shape}")
    return x


def clip_metrics(output, input, target, *, sample_rate: int, frame_rate: float,
                 song=None, song_mode: str = "sum") -> dict[str, float]:
    """All metrics of one generated clip, by name (see the module docstring).

    Args:
        output, input, target: mono ``[N]`` clips (the model's raw output, before any level
            matching or filtering, and the two parts it was given). Compared over their
            common length.
        sample_rate: their rate in Hz.
        frame_rate: the codec's frames per second (``codec.frame_rate``): where the comb sits.
        song: the right answer; default ``input + target`` when ``song_mode == "sum"``.
        song_mode: ``"sum"`` (the parts are drums and harmony of one song) or ``"none"``
            (reference-free: the metrics that need the song are left out, unless ``song`` is
            given).
    """
    if song_mode not in SONG_MODES:
        raise ValueError(f"song_mode {song_mode!r}: expected one of {', '.join(SONG_MODES)}")
    output, input, target = (_clip(output, "output"), _clip(input, "input"),
                             _clip(target, "target"))
    n = min(output.size, input.size, target.size)
    output, input, target = output[:n], input[:n], target[:n]
    sr = int(sample_rate)
    out = {
        "onset_corr_input": onset_correlation(output, input, sr),
        "chroma_sim_target": chroma_similarity(output, target, sr),
        "chroma_sim_input_baseline": chroma_similarity(input, target, sr),
        "comb_db_output": comb_contrast_db(output, sr, frame_rate),
        "hf_share_output": high_frequency_share(output, sr),
    }
    out["chroma_sim_gain"] = out["chroma_sim_target"] - out["chroma_sim_input_baseline"]
    if song is None and song_mode == "sum":
        song = input + target
    if song is not None:
        song = _clip(song, "song")[:n]
        d_out = log_spectral_distance(output, song, sr)
        d_in = log_spectral_distance(input, song, sr)
        d_tg = log_spectral_distance(target, song, sr)
        out.update({
            "distance_output_song": d_out, "distance_input_song": d_in,
            "distance_target_song": d_tg,
            "distance_ratio": (d_out + DISTANCE_DELTA) / (min(d_in, d_tg) + DISTANCE_DELTA),
            "comb_db_song": comb_contrast_db(song, sr, frame_rate),
            "hf_share_song": high_frequency_share(song, sr),
        })
        out["comb_db_excess"] = out["comb_db_output"] - out["comb_db_song"]
        out["hf_share_excess"] = out["hf_share_output"] - out["hf_share_song"]
    out.update(band_metrics(output, input, sr, song=song))
    return {k: float(v) for k, v in sorted(out.items())}


def aggregate(records: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """The median of every metric over ``records`` (over the records that have it), plus
    ``count``, the number of records."""
    keys = sorted({k for r in records for k in r})
    out = {k: float(np.median([r[k] for r in records if k in r])) for k in keys}
    out["count"] = float(len(records))
    return out


def evaluate_batch(outputs, inputs, targets, *, sample_rate: int, frame_rate: float,
                   song_mode: str = "sum") -> dict[str, float]:
    """Median metrics of a batch: ``outputs``, ``inputs``, ``targets`` are ``[B, N]`` arrays
    (mono clips as the losses see them); returns :func:`aggregate` of :func:`clip_metrics`."""
    arrays = [np.asarray(a, np.float64) for a in (outputs, inputs, targets)]
    arrays = [a.reshape(a.shape[0], -1) if a.ndim == 3 and a.shape[1] == 1 else a
              for a in arrays]  # [B, 1, N] as the codec takes it
    if any(a.ndim != 2 for a in arrays) or len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"outputs, inputs, targets: expected [B, N] arrays of one batch size, "
                         f"got shapes {[a.shape for a in arrays]}")
    return aggregate([clip_metrics(o, i, t, sample_rate=sample_rate, frame_rate=frame_rate,
                                   song_mode=song_mode) for o, i, t in zip(*arrays)])


def _cell(value: float | None, fmt: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return fmt.format(value)


def format_table(records: Sequence[Mapping[str, float]], names: Sequence[str] | None = None,
                 summary: Mapping[str, float] | None = None, *,
                 columns: Sequence[tuple[str, str, str]] | None = None) -> str:
    """A plain-text table: one row per record (named by ``names``), then a ``median`` row
    (``summary``, default :func:`aggregate` of the records). The columns are ``columns``
    (``(metric, header, format)``; a missing metric prints ``-``), by default the headline
    metrics; a reference-free evaluation (no ``distance_ratio``) shows the raw comb and
    high-frequency figures instead of the excesses."""
    names = list(names) if names is not None else [str(i) for i in range(len(records))]
    if len(names) != len(records):
        raise ValueError(f"{len(names)} names for {len(records)} records")
    summary = aggregate(records) if summary is None else summary
    with_song = any("distance_ratio" in r for r in records) or "distance_ratio" in summary
    cols = columns or (TABLE_COLUMNS if with_song else TABLE_COLUMNS_NO_SONG)
    rows = [[n] + [_cell(r.get(k), f) for k, _, f in cols] for n, r in zip(names, records)]
    rows.append([f"median ({int(summary.get('count', len(records)))})"]
                + [_cell(summary.get(k), f) for k, _, f in cols])
    header = ["pair"] + [h for _, h, _ in cols]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(len(header))]
    line = lambda row: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                 for i, (c, w) in enumerate(zip(row, widths)))
    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule] + [line(r) for r in rows[:-1]] + [rule, line(rows[-1])])


def folder_is_continuation(folder: Path) -> bool:
    """Whether the dataset's ``metadata.json`` (in the folder or its parent) says its pairs
    are consecutive segments rather than two parts of one song."""
    for meta in (folder / "metadata.json", folder.parent / "metadata.json"):
        try:
            config = json.loads(meta.read_text()).get("config", {})
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(config, dict) and "continuation" in config:
            return bool(config["continuation"])
    return False
