"""``examples/fit_synth.py``, the worked example of the losses in a user's own JAX loop, runs
as the README says and fits: fewer steps than its default, the same code."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def test_fit_synth_runs_and_fits(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, str(PROJECT / "examples" / "fit_synth.py"),
                           "--steps", "60", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    # The bundled note is Sonic Pi's bass_woodsy_c: a C2 (65.4 Hz).
    assert abs(summary["f0_hz"] - 65.4) < 1.0
    # 60 Adam steps take the STFT + mel loss from 7.5 to well under two thirds of it.
    assert summary["loss_end"] < 0.67 * summary["loss_start"], summary
    for name in ("loss_curve.png", "spectrograms.png", "fitted.wav"):
        assert (out / name).stat().st_size > 1000
