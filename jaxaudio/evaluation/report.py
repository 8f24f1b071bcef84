"""An HTML report of an evaluation, for a person to listen and look: ``evaluate --report DIR``.

``DIR/index.html`` shows the run (checkpoint, codec, pairs), the metrics (medians and per
pair) and, for the first pairs, the input, target, song and output as audio players with their
spectrograms side by side (one dB scale per pair). Its files sit beside it (``pair_NN/*.ogg``,
``*.png``) and every link is relative, so the folder can be moved or copied whole.
``DIR/report.json`` holds the metrics and marks the folder as a report.

Audio is Ogg Vorbis where soundfile can write it (Chromium and Firefox play it), else FLAC,
else WAV. A pair whose loudest clip peaks above 1 is scaled down, all four clips by one gain
(said on the page), so their levels stay comparable and nothing clips.

The folder is written beside ``DIR`` under a temporary name and renamed into place, so ``DIR``
is never half-written; an earlier report there is replaced, any other non-empty folder is
refused (:class:`ReportError`).
"""

from __future__ import annotations

import html
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from jaxaudio.data.atomic_files import OWNER, fsync_path, is_stale, remove_tree, write_owner

REPORT_KIND = "jaxaudio.evaluate report"
LEGEND = (
    "<p>The song is input + target, the right answer. <b>distance_ratio</b>: log-spectral "
    "distance to the song over the closer part's (below 1 = nearer the song than either "
    "part). <b>comb_db_excess</b>, <b>hf_share_excess</b>: frame-rate buzz (dB) and energy "
    "above 6 kHz (points), output minus song. <b>onset_corr_input</b>: rhythm kept; "
    "<b>chroma_sim_target</b>: harmony kept (the input's own beside it). Per band (0_250, "
    "250_2000, 2000_6000, 6000_up Hz): <b>onset_corr</b> with the input, the song's own "
    "(<b>song_onset_corr</b>, the ceiling) and <b>energy_corr</b> with the song; a crossover "
    "scores low onset correlations below its frequency. See "
    "<code>python -m jaxaudio.evaluate --help</code>.</p>")
MARK = "report.json"
# (soundfile format, subtype, suffix), in order of preference: compressed and playable in
# browsers first.
AUDIO_FORMATS = (("OGG", "VORBIS", ".ogg"), ("FLAC", "PCM_16", ".flac"), ("WAV", "PCM_16", ".wav"))
CLIP_ORDER = ("input", "target", "song", "output")
PEAK = 0.99  # the loudest sample of a pair after scaling


class ReportError(Exception):
    """A ``--report`` folder that cannot be written (the message names the flag and folder)."""


def is_report(folder: Path) -> bool:
    """Whether ``folder`` holds a report this module wrote (its ``report.json`` says so)."""
    try:
        return json.loads((Path(folder) / MARK).read_text()).get("kind") == REPORT_KIND
    except (OSError, ValueError, AttributeError):
        return False


def check_report_folder(folder: str | Path, flag: str = "--report") -> Path:
    """``folder`` if a report may be written there: new, empty, or an earlier report, in an
    existing parent folder; else :class:`ReportError` naming ``flag`` and the folder."""
    folder = Path(folder)
    if not folder.parent.is_dir():
        raise ReportError(f"{flag} {folder}: its parent folder {folder.parent} does not exist")
    if folder.exists() and not folder.is_dir():
        raise ReportError(f"{flag} {folder}: is a file; expected a folder for the report")
    if folder.is_dir() and any(folder.iterdir()) and not is_report(folder):
        raise ReportError(f"{flag} {folder}: the folder is not empty and holds no earlier "
                          f"report ({MARK} of {REPORT_KIND!r}); refusing to overwrite it: "
                          f"choose a new or empty folder")
    return folder


def audio_formats() -> list[tuple[str, str, str]]:
    """:data:`AUDIO_FORMATS` that this soundfile (its libsndfile) can write."""
    import soundfile as sf

    formats = sf.available_formats()
    return [f for f in AUDIO_FORMATS
            if f[0] in formats and f[1] in sf.available_subtypes(f[0])]


def write_audio(stem: Path, x: np.ndarray, sample_rate: int) -> Path:
    """``x`` ``[N]`` (within -1..1) as ``stem`` + the first suffix of :func:`audio_formats`
    that writes; returns the file written."""
    import soundfile as sf

    errors = []
    for fmt, subtype, suffix in audio_formats():
        path = stem.with_suffix(suffix)
        try:
            sf.write(path, np.asarray(x, np.float32), int(sample_rate), format=fmt,
                     subtype=subtype)
            return path
        except (RuntimeError, sf.LibsndfileError) as e:  # LibsndfileError: soundfile >= 0.11
            errors.append(f"{fmt}: {e}")
            path.unlink(missing_ok=True)
    raise ReportError(f"soundfile could write none of OGG, FLAC, WAV: {'; '.join(errors)}")


def _pair_gain(clips: Mapping[str, np.ndarray]) -> float:
    peak = max((float(np.max(np.abs(x))) for x in clips.values() if x.size), default=0.0)
    return PEAK / peak if peak > PEAK else 1.0


def write_pair(folder: Path, index: int, name: str, clips: Mapping[str, np.ndarray],
               sample_rate: int) -> dict:
    """The audio and spectrogram files of one pair in ``folder/pair_NN/``; returns what the
    page shows: ``{"name", "gain", "clips": [(label, audio path, image path)]}`` with paths
    relative to ``folder``."""
    from jaxaudio.plots import log_spectrogram, plot_spectrogram

    sub = folder / f"pair_{index:02d}"
    sub.mkdir()
    gain = _pair_gain(clips)
    labels = [k for k in CLIP_ORDER if k in clips]
    specs = {k: log_spectrogram(np.asarray(clips[k], np.float64) * gain) for k in labels}
    vmax = max(float(s.max()) for s in specs.values())
    shown = []
    for label in labels:
        audio = write_audio(sub / label, np.clip(clips[label] * gain, -1.0, 1.0), sample_rate)
        image = plot_spectrogram(specs[label], sample_rate, sub / f"{label}.png",
                                 title=label, vmax=vmax)
        shown.append((label, audio.relative_to(folder).as_posix(),
                      image.relative_to(folder).as_posix()))
    return {"name": name, "gain": gain, "clips": shown}


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if np.isfinite(value) else "-"
    return html.escape(str(value))


def metrics_table(records: Sequence[Mapping], summary: Mapping[str, float],
                  order: Sequence[str] = ()) -> str:
    """An HTML table: one row per metric (``order`` first, then the rest by name), the median
    then each pair as columns."""
    keys = [k for k in order if k in summary]
    keys += sorted(k for k in summary if k not in keys and k != "count")
    head = "".join(f"<th>{html.escape(r['name'])}</th>" for r in records)
    rows = [f"<tr><th>{html.escape(k)}</th><td class=median>{_fmt(summary.get(k))}</td>"
            + "".join(f"<td>{_fmt(r['metrics'].get(k, '-'))}</td>" for r in records) + "</tr>"
            for k in keys]
    return (f"<table class=metrics><thead><tr><th>metric</th><th>median "
            f"({int(summary.get('count', len(records)))})</th>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def pair_section(pair: dict) -> str:
    """One pair's players and spectrograms, side by side."""
    cells = "".join(
        f"<td><figure><img src=\"{html.escape(image)}\" alt=\"{label} spectrogram\">"
        f"<figcaption>{label}</figcaption><audio controls preload=metadata "
        f"src=\"{html.escape(audio)}\"></audio></figure></td>"
        for label, audio, image in pair["clips"])
    note = (f"<p class=note>All {len(pair['clips'])} clips scaled by {pair['gain']:.3f} "
            f"(peak above 1).</p>"
            if pair["gain"] != 1.0 else "")
    return (f"<section><h3>{html.escape(pair['name'])}</h3>{note}"
            f"<table class=pair><tr>{cells}</tr></table></section>")


STYLE = ("body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}"
         "td,th{padding:2px 8px;text-align:right;border-bottom:1px solid #ddd}"
         "th:first-child{text-align:left}td.median{font-weight:bold}figure{margin:0}"
         "table.pair td{border:none;vertical-align:top;text-align:center}img{display:block}"
         ".note{color:#a40}.scroll{overflow-x:auto}")


def render_index(meta: Mapping, records: Sequence[Mapping], summary: Mapping[str, float],
                 pairs: Sequence[dict], order: Sequence[str] = ()) -> str:
    """The whole ``index.html``."""
    facts = "".join(f"<tr><th>{html.escape(str(k))}</th><td style='text-align:left'>"
                    f"{_fmt(v)}</td></tr>" for k, v in meta.items())
    sections = "".join(pair_section(p) for p in pairs)
    return ("<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            "<title>jaxaudio evaluation</title>"
            f"<style>{STYLE}</style></head><body><h1>jaxaudio evaluation</h1>"
            f"<table>{facts}</table><h2>Metrics</h2>{LEGEND}<div class=scroll>"
            f"{metrics_table(records, summary, order)}</div>"
            f"<h2>Listen ({len(pairs)} of {len(records)} pairs)</h2>{sections}"
            "</body></html>\n")


def _remove_stale_temps(folder: Path) -> None:
    """Temporary folders of this report left by a killed writer (see ``remove_stale``)."""
    for d in folder.parent.glob(f".{folder.name}.report-tmp-*"):
        if d.is_dir() and is_stale(d):
            remove_tree(d)


def _install(tmp: Path, folder: Path) -> None:
    """Rename ``tmp`` to ``folder``, replacing an earlier report (checked by the caller)."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.report-old-{uuid.uuid4().hex[:8]}")
        os.rename(folder, old)
    try:
        os.rename(tmp, folder)
    except OSError:
        if old is not None:
            os.rename(old, folder)
        raise
    fsync_path(folder.parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(folder: str | Path, *, meta: Mapping, records: Sequence[Mapping],
                 summary: Mapping[str, float], clips: Sequence[tuple[str, Mapping]],
                 sample_rate: int, order: Sequence[str] = (), flag: str = "--report") -> Path:
    """Write the report folder (see the module docstring); returns ``folder/index.html``.

    Args:
        folder: the report folder: new, empty or an earlier report (else :class:`ReportError`).
        meta: facts about the run shown at the top (name -> value).
        records: ``[{"name": ..., "metrics": {...}}]`` per pair; ``summary``: their medians
            (:func:`jaxaudio.evaluation.aggregate`).
        clips: ``[(name, {"input", "target", "song" (optional), "output": [N] arrays})]`` of
            the pairs to listen to, in order.
        sample_rate: the clips' rate in Hz.
        order: metric names to list first in the table.
    """
    folder = check_report_folder(folder, flag)
    _remove_stale_temps(folder)
    tmp = folder.with_name(f".{folder.name}.report-tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        write_owner(tmp)
        pairs = [write_pair(tmp, i, name, c, sample_rate) for i, (name, c) in enumerate(clips)]
        suffixes = sorted({Path(a).suffix for p in pairs for _, a, _ in p["clips"]})
        meta = {**meta, "audio files": ", ".join(suffixes) or "-"}
        (tmp / "index.html").write_text(render_index(meta, records, summary, pairs, order))
        (tmp / MARK).write_text(json.dumps(
            {"kind": REPORT_KIND, "meta": {k: str(v) for k, v in meta.items()},
             "aggregate": dict(summary), "pairs": list(records)}, indent=2, sort_keys=True))
        (tmp / OWNER).unlink()
        check_report_folder(folder, flag)  # again: it may have been filled meanwhile
        _install(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder / "index.html"
