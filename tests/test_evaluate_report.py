"""`evaluate --report DIR`: the HTML report's files and links, its refusal to overwrite a
folder that is not a report, and a real browser (headless Chromium) playing its audio and
decoding its images; one end-to-end run of the command on a tiny checkpoint.

The browser is headless Chromium from Debian's ``chromium`` package (``apt-get install -y
chromium``), driven by ``tests/headless_chromium.py``; without it the browser test skips,
except under ``CI=true``, where it fails.
"""

from __future__ import annotations

import html.parser
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from jaxaudio.evaluate import main
from jaxaudio.evaluation import aggregate, clip_metrics
from jaxaudio.evaluation.report import (REPORT_KIND, ReportError, audio_formats,
                                        check_report_folder, write_report)
from headless_chromium import Chromium
from test_generate import TINY, save_tiny_checkpoint

SR = 24000
# Run in the report page once loaded: waits for every <audio>'s metadata (or error) and every
# <img>'s decoding (an audio that fails or stalls is reported, never waited for past 30 s),
# and returns what the browser found.
CHECK = """(async () => {
  const audio = [...document.querySelectorAll("audio")].map(a => new Promise(done => {
    const src = a.getAttribute("src");
    const failed = () => done({src, error: a.error ? a.error.code : "?"});
    if (a.readyState >= 1) return done({src, duration: a.duration});
    if (a.error) return failed();  // failed before this ran: no event will come
    a.addEventListener("loadedmetadata", () => done({src, duration: a.duration}));
    a.addEventListener("error", failed);
    setTimeout(() => done({src, error: "no metadata in 30 s"}), 30000);
  }));
  const img = [...document.querySelectorAll("img")].map(i => i.decode().then(
    () => ({src: i.getAttribute("src"), width: i.naturalWidth}),
    e => ({src: i.getAttribute("src"), width: 0, error: String(e)})));
  return {audio: await Promise.all(audio), img: await Promise.all(img)};
})()"""


def tiny_pairs(count: int, seconds: float = 0.5):
    """``[(name, {"input", "target", "song", "output"})]`` and their metric records."""
    rng = np.random.default_rng(0)
    n = int(seconds * SR)
    clips, records = [], []
    for i in range(count):
        t = np.arange(n) / SR
        x = rng.standard_normal(n) * np.exp(-(t % 0.25) * 30) * 0.5  # clicks
        y = 0.3 * np.sin(2 * np.pi * (220 + 55 * i) * t)
        song = x + y
        out = 1.5 * song if i == 0 else 0.5 * song  # pair 0 peaks above 1: scaled on the page
        name = f"pair_{i}"
        clips.append((name, {"input": x, "target": y, "song": song, "output": out}))
        records.append({"name": name, "metrics": clip_metrics(out, x, y, sample_rate=SR,
                                                              frame_rate=187.5)})
    return clips, records


def report(folder: Path, count: int = 2) -> Path:
    clips, records = tiny_pairs(count)
    return write_report(folder, meta={"checkpoint": "ckpt/<tiny> & co"}, records=records,
                        summary=aggregate([r["metrics"] for r in records]), clips=clips,
                        sample_rate=SR, order=["distance_ratio", "onset_corr_0_250"])


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if k in ("src", "href"):
                self.links.append((tag, v))


def links(index: Path) -> list[tuple[str, str]]:
    parser = Links()
    parser.feed(index.read_text())
    return parser.links


def test_report_files_are_relative_and_complete(tmp_path):
    index = report(tmp_path / "rep")
    found = links(index)
    assert sorted(t for t, _ in found) == ["audio"] * 8 + ["img"] * 8
    suffix = audio_formats()[0][2]
    assert suffix == ".ogg", "soundfile here writes no Ogg Vorbis: the report falls back"
    for tag, src in found:
        assert not src.startswith(("/", "file:", "http")) and ".." not in src, src
        assert (index.parent / src).is_file() and (index.parent / src).stat().st_size > 0
        assert src.endswith(suffix if tag == "audio" else ".png")
    page = index.read_text()
    assert "ckpt/&lt;tiny&gt; &amp; co" in page and "scaled by 0.6" in page  # 0.99 / 1.5 peak
    table = page[page.index("<table class=metrics>"):]
    rows = [r.split("</th>")[0] for r in table.split("<tr><th>")[2:]]
    assert rows[:2] == ["distance_ratio", "onset_corr_0_250"] and rows[2].startswith("chroma")
    mark = json.loads((index.parent / "report.json").read_text())
    assert mark["kind"] == REPORT_KIND and len(mark["pairs"]) == 2
    assert not [p.name for p in tmp_path.iterdir() if p.name != "rep"]  # no temporaries left


def test_report_without_a_song_shows_three_clips(tmp_path):
    """song_mode none (a folder of consecutive segments): input, target and output only."""
    clips, records = tiny_pairs(1)
    clips = [(name, {k: v for k, v in c.items() if k != "song"}) for name, c in clips]
    index = write_report(tmp_path / "rep", meta={}, records=records,
                         summary=aggregate([r["metrics"] for r in records]), clips=clips,
                         sample_rate=SR)
    assert [s for t, s in links(index) if t == "audio"] == [
        "pair_00/input.ogg", "pair_00/target.ogg", "pair_00/output.ogg"]
    assert "All 3 clips scaled" in index.read_text()


def test_report_refuses_a_folder_that_is_not_a_report(tmp_path):
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"keep me")
    with pytest.raises(ReportError, match=r"--report .*photos.*not empty"):
        report(other)
    assert [p.name for p in other.iterdir()] == ["holiday.jpg"]
    with pytest.raises(ReportError, match="--report .*is a file"):
        check_report_folder(other / "holiday.jpg")
    with pytest.raises(ReportError, match="--report .*parent"):
        check_report_folder(tmp_path / "no" / "rep")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert report(empty).is_file()
    # An earlier report is replaced whole (no file of the old one is left).
    report(empty, count=1)
    assert sorted(p.name for p in empty.iterdir()) == ["index.html", "pair_00", "report.json"]
    assert len(links(empty / "index.html")) == 8


def test_a_browser_plays_every_audio_and_shows_every_image(tmp_path):
    index = report(tmp_path / "made")
    moved = tmp_path / "elsewhere" / "moved"
    moved.parent.mkdir()
    shutil.move(index.parent, moved)  # relative links: the folder works wherever it goes
    with Chromium(tmp_path / "profile") as chromium:
        found = chromium.evaluate((moved / "index.html").as_uri(), CHECK)
    assert len(found["audio"]) == 8 and len(found["img"]) == 8
    for a in found["audio"]:
        # Vorbis pads the last page: 0.5 s clips read about 0.5-0.51 s
        assert a.get("duration") is not None and 0.45 < a["duration"] < 0.6, a
    assert all(i["width"] > 0 for i in found["img"]), found["img"]
    # The check can fail: a corrupt audio file is reported, not passed over.
    (moved / "pair_01" / "output.ogg").write_bytes(b"not audio" * 100)
    with Chromium(tmp_path / "profile") as chromium:
        broken = chromium.evaluate((moved / "index.html").as_uri(), CHECK)
    bad = [a for a in broken["audio"] if "error" in a]
    assert [a["src"] for a in bad] == ["pair_01/output.ogg"], broken["audio"]


def test_evaluate_writes_a_report_and_refuses_a_foreign_folder(tmp_path, capsys):
    ckpt = tmp_path / "ckpt"
    save_tiny_checkpoint(ckpt, TINY)
    out, rep = tmp_path / "e.json", tmp_path / "report"
    args = ["--checkpoint", str(ckpt), "--num_pairs", "2", "--duration", "0.5",
            "--output_json", str(out), "--report", str(rep), "--report_pairs", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "<250 onset" in printed and f"Wrote {rep / 'index.html'}" in printed
    found = links(rep / "index.html")
    assert len([t for t, _ in found if t == "audio"]) == 4  # one pair: input target song output
    page = (rep / "index.html").read_text()
    assert "synth_2026_0001" in page and "energy_corr_6000_up" in page
    assert "pair_01" not in {s.split("/")[0] for _, s in found}
    assert main(args) == 0  # an earlier report is replaced
    out.unlink()
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("x")
    assert main(args[:-4] + ["--report", str(foreign)]) == 2
    err = capsys.readouterr().err
    assert f"error: --report {foreign}: the folder is not empty" in err
    assert not out.exists()  # refused before the model ran
    assert main(args[:-2] + ["--report_pairs", "-1"]) == 2
    assert "error: --report_pairs" in capsys.readouterr().err
