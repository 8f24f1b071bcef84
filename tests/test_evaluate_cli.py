"""`python -m jaxaudio.evaluate` on a tiny untrained checkpoint: synthetic and folder pairs,
the JSON report, the unseen songs, and bad flags."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from jaxaudio.data.synth import draw_song
from jaxaudio.evaluate import DEFAULT_SEED, TRAINING_SEED, main, synthetic_pairs
from test_generate import TINY, save_tiny_checkpoint

PROJECT = Path(__file__).resolve().parents[1]
SR = 24000
HEADLINE = {"distance_ratio", "comb_db_excess", "hf_share_excess", "onset_corr_input",
            "chroma_sim_target", "chroma_sim_input_baseline"}


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    save_tiny_checkpoint(root, TINY)
    return root


def evaluate_cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxaudio.evaluate", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(PROJECT)})


def test_synthetic_pairs_in_a_subprocess_write_the_report(ckpt, tmp_path):
    out = tmp_path / "report.json"
    proc = evaluate_cli("--checkpoint", ckpt, "--num_pairs", 2, "--duration", 1,
                        "--output_json", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["song_mode"] == "sum" and report["codec"] == "mdct"
    assert report["frame_rate"] == 750.0 and report["sample_rate"] == SR  # MDCT dim 32
    assert report["pairs_source"] == {"kind": "synthetic", "seed": DEFAULT_SEED,
                                      "num_pairs": 2, "duration": 1.0}
    assert [p["name"] for p in report["pairs"]] == ["synth_2026_0000", "synth_2026_0001"]
    for p in report["pairs"]:
        assert HEADLINE <= set(p["metrics"])
        assert all(math.isfinite(v) for v in p["metrics"].values())
    agg = report["aggregate"]
    assert agg["count"] == 2.0 and HEADLINE <= set(agg)
    # exact: the same float64 median of the same floats (JSON keeps them); approx is moot
    assert agg["distance_ratio"] == pytest.approx(
        float(np.median([p["metrics"]["distance_ratio"] for p in report["pairs"]])))
    assert "median (2)" in proc.stdout and "distance" in proc.stdout


def test_folder_pairs_reference_free_from_metadata(ckpt, tmp_path):
    val = tmp_path / "data" / "val"
    val.mkdir(parents=True)
    (tmp_path / "data" / "metadata.json").write_text(json.dumps({"config": {"continuation": True}}))
    for i, (x, y) in enumerate(p[1:] for p in synthetic_pairs(2, 0.5, 7, SR)):
        sf.write(val / f"pair_{i:04d}_input.wav", x, SR)
        sf.write(val / f"pair_{i:04d}_output.wav", y[: SR // 4], SR)  # looped to the input's
    out = tmp_path / "folder.json"
    assert main(["--checkpoint", str(ckpt / "best_model"), "--val_folder", str(val),
                 "--output_json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["song_mode"] == "none" and report["pairs_source"]["num_pairs"] == 2
    assert [p["name"] for p in report["pairs"]] == ["pair_0000", "pair_0001"]
    metrics = report["pairs"][0]["metrics"]
    assert "distance_ratio" not in metrics and {"comb_db_output", "onset_corr_input"} <= set(metrics)
    assert main(["--checkpoint", str(ckpt), "--val_folder", str(val), "--song_mode", "sum",
                 "--num_pairs", "1", "--output_json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["song_mode"] == "sum" and len(report["pairs"]) == 1
    assert HEADLINE <= set(report["aggregate"])


def test_default_pairs_are_not_the_training_songs():
    """The default seed draws other songs than the training sets (seed 0, up to 1200 pairs)."""
    seen = {draw_song(np.random.default_rng([TRAINING_SEED, i])) for i in range(1200)}
    pairs = synthetic_pairs(11, 0.25, DEFAULT_SEED, SR)
    assert not {draw_song(np.random.default_rng([DEFAULT_SEED, i])) for i in range(11)} & seen
    training = synthetic_pairs(11, 0.25, TRAINING_SEED, SR)
    for (_, x, y), (_, a, b) in zip(pairs, training):
        assert not np.allclose(x, a) and not np.allclose(y, b)


def test_bad_flags_exit_2_naming_the_flag(ckpt, tmp_path, capsys):
    proc = evaluate_cli("--checkpoint", tmp_path / "nope", "--num_pairs", 1, cwd=tmp_path)
    assert proc.returncode == 2
    assert "error: --checkpoint" in proc.stderr and "no such file" in proc.stderr
    assert not (tmp_path / "evaluation.json").exists()
    for args, flag in ((["--val_folder", str(tmp_path / "none")], "--val_folder"),
                       (["--num_pairs", "0"], "--num_pairs"),
                       (["--duration", "-1"], "--duration"),
                       (["--output_json", str(tmp_path / "no" / "r.json")], "--output_json")):
        assert main(["--checkpoint", str(ckpt), *args]) == 2
        assert f"error: {flag}" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["--checkpoint", str(ckpt), "--val_folder", str(empty)]) == 2
    assert "--val_folder" in capsys.readouterr().err
