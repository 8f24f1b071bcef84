"""Checkpoints written by earlier versions still load: ``assets/checkpoint_241be37`` is a tiny
cascade trained one epoch by commit 241be37 (``best_model/`` as that version wrote it, and
``expected.npz``: the loaded model's eval output on two random latent pairs, computed by that
version). Every later change to the configuration or the state must keep it loading, for
generation, evaluation and the model itself."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ASSET = Path(__file__).resolve().parent / "assets" / "checkpoint_241be37"


@pytest.fixture()
def checkpoint(tmp_path) -> Path:
    folder = tmp_path / "old"
    shutil.copytree(ASSET, folder)
    return folder


def test_model_loads_with_the_same_output(checkpoint):
    import jax.numpy as jnp

    from jaxaudio.training.builders import load_trained_model

    model, cfg, meta = load_trained_model(checkpoint / "best_model")
    assert meta["step"] == 2 and cfg.encoding_dim == 16
    ref = np.load(checkpoint / "expected.npz")
    out = model(jnp.asarray(ref["input"]), jnp.asarray(ref["target"]), train=False).output
    # the same program on the same CPU: float32 round-off at most (measured: bit-equal)
    np.testing.assert_allclose(np.asarray(out), ref["output"], rtol=1e-6, atol=1e-6)


def test_generate_and_evaluate_run_on_it(checkpoint, tmp_path):
    from jaxaudio import evaluate, generate
    from jaxaudio.data.synth import make_synthetic_dataset

    pairs = make_synthetic_dataset(tmp_path / "pairs", num_pairs=2, duration=0.3, seed=3,
                                   val_fraction=0.5)
    wav = sorted((Path(pairs) / "val").glob("*_input.wav"))[0]
    out = tmp_path / "mix.wav"
    target = Path(str(wav).replace("_input.wav", "_output.wav"))
    assert generate.main(["--checkpoint", str(checkpoint / "best_model"), "--input_audio",
                          str(wav), "--target_audio", str(target), "--output", str(out)]) == 0
    audio, _ = sf.read(out)
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0
    assert evaluate.main(["--checkpoint", str(checkpoint / "best_model"), "--num_pairs", "1",
                          "--duration", "0.3", "--output_json",
                          str(tmp_path / "e.json")]) == 0


def test_saved_agent_booleans_read_as_the_agent_name(caplog):
    """Configurations saved before ``--creative_agent`` was the one agent setting carried the
    original's two booleans; they are read as the agent's name, with a line saying so."""
    import json
    import logging

    from jaxaudio.training.config import TrainConfig

    meta = ASSET / "best_model" / "epoch_1" / "meta" / "metadata"
    saved = json.loads(meta.read_text())["config"]
    assert "use_creative_agent" in saved  # written by 241be37
    with caplog.at_level(logging.INFO):
        assert TrainConfig.from_dict(saved).creative_agent is None
        compositional = TrainConfig.from_dict({**saved, "use_compositional_agent": True})
    assert compositional.creative_agent == "compositional" and compositional.agent == "compositional"
    assert "use_compositional_agent=true read as creative_agent=compositional" in caplog.text
    # the variant defaults the earlier version left at None are filled as it meant them
    assert compositional.disc_lr == 0.5 * saved["lr"] and compositional.min_lr == 0.01 * saved["lr"]
