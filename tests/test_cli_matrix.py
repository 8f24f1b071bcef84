"""The command line as a test matrix: every agent with every GAN setting, as a user runs them.

Each row trains two steps through ``jaxaudio.train.main([...])`` (the trainer's own loop:
cache or raw clips, validation, checkpoints), then runs ``generate`` and ``evaluate`` on the
checkpoint it wrote and resumes it for one more epoch. The rows cover the agents (none,
masking, compositional) times the GAN (off, original, stable); spread over them, every other
value at least once: each fixed mask kind, both cascade updates, cached latents and raw clips,
the MDCT codec and a tiny random-weight EnCodec, one device and four (fake CPU) devices, both
precisions and both masking gates. Shapes are tiny so that the whole matrix stays a few
minutes on a 2-core CPU.

``experiments/cli_matrix_gpu.sh`` runs this file on a GPU (there every device the machine has
stands in for the four-device rows).
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
import soundfile as sf

from jaxaudio import evaluate, generate
from jaxaudio.data.synth import make_synthetic_dataset
from jaxaudio.train import main as train_main
from jaxaudio.training.checkpoint import read_meta

# agent, GAN, fixed mask, cascade update, data, codec, devices, extra flags
ROWS = [
    ("none", "off", "none", None, "cached", "mdct", 1, ["--num_transformer_layers", "1"]),
    ("none", "original", "frequency", "additive", "raw", "mdct", 4, []),
    ("none", "stable", "spectral", "gain", "cached", "encodec", 1,
     ["--precision", "bf16", "--codec_precision", "bf16"]),
    ("masking", "off", "energy", "additive", "cached", "encodec", 4,
     ["--mask_gate", "learned"]),
    ("masking", "original", "hybrid", "gain", "raw", "mdct", 1, ["--precision", "bf16"]),
    ("masking", "stable", "none", "gain", "cached", "mdct", 4, []),
    ("compositional", "off", "none", "additive", "raw", "encodec", 1, []),
    ("compositional", "original", "temporal", "gain", "cached", "mdct", 4, []),
    ("compositional", "stable", "energy", "additive", "cached", "mdct", 1,
     ["--precision", "bf16"]),
]
TRAIN_PAIRS, GLOBAL_BATCH = 8, 4  # two steps an epoch at every device count
DIM = 32
AGENT_LOSS = {"masking": "mask_reg_loss", "compositional": "novelty_loss"}
AGENT_STAT = {"masking": "complementarity", "compositional": "input_rhythm_weight"}
# The composer at a tiny size (the original's: 64, 4 layers, 8 heads; same code path).
SMALL_COMPOSER = "component_dim=8,composer_layers=1,composer_heads=2"


def row_id(row) -> str:
    agent, gan, mask, update, data, codec, devices, extra = row
    return (f"{agent}-gan_{gan}-mask_{mask}-{update or 'no_cascade'}-{data}-{codec}-{devices}dev"
            + "".join(f"-{flag[2:]}_{value}" for flag, value in zip(extra[::2], extra[1::2])))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("matrix") / "pairs"
    make_synthetic_dataset(root, num_pairs=TRAIN_PAIRS + 2, duration=0.15, seed=4,
                           val_fraction=2 / (TRAIN_PAIRS + 2))
    assert len(list((root / "train").glob("*_input.wav"))) == TRAIN_PAIRS
    return root


@pytest.fixture(scope="module")
def encodec_weights(tmp_path_factory) -> Path:
    from jaxaudio.codecs.encodec import random_encodec, save_encodec

    folder = tmp_path_factory.mktemp("encodec")
    codec = random_encodec(0, dimension=DIM, n_filters=2, ratios=(4, 2), lstm=1)
    return save_encodec(codec, folder / "encodec_tiny.safetensors")


def flags_of(row, dataset: Path, ckpt: Path, encodec_weights: Path) -> list[str]:
    agent, gan, mask, update, data, codec, _, extra = row
    devices = len(devices_of(row))
    flags = ["--dataset_folder", str(dataset), "--checkpoint_dir", str(ckpt),
             "--encoding_dim", str(DIM), "--nhead", "2", "--num_layers", "1",
             "--num_transformer_layers", "2", "--dropout", "0.1", "--clip_seconds", "0.128",
             "--batch_size", str(GLOBAL_BATCH // devices), "--lr", "1e-3",
             "--loss_weight_input", "0.3", "--loss_weight_target", "0.3",
             "--loss_weight_spectral", "0.01", "--corr_weight", "0.5", "--epochs", "1",
             "--save_every", "1", "--log_samples", "0", "--quality_clips", "0", "--no_mlflow",
             "--seed", "7", "--mask_type", mask,
             "--use_cache", str(data == "cached").lower(), "--codec", codec]
    if update is not None:
        flags += ["--cascade_update", update]
    if codec == "encodec":
        flags += ["--codec_weights", str(encodec_weights)]
    if agent != "none":
        flags += ["--creative_agent", agent]
    if agent == "compositional":
        flags += ["--agent_options", SMALL_COMPOSER]
    if gan != "off":
        flags += ["--gan_weight", "0.1", "--gan_variant", gan]
    return flags + list(extra)


def history(ckpt: Path) -> list[dict]:
    return [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]


def devices_of(row) -> list:
    wanted = row[6]
    found = jax.devices()
    # on a GPU machine with fewer devices, the four-device rows use every device there is
    return found[:wanted] if len(found) >= wanted else found


@pytest.mark.slow
@pytest.mark.parametrize("row", ROWS, ids=[row_id(r) for r in ROWS])
def test_train_generate_evaluate_resume(row, dataset, encodec_weights, tmp_path, monkeypatch,
                                        capsys):
    monkeypatch.chdir(tmp_path)
    agent, gan, mask, update, data, codec, n_devices, extra = row
    ckpt = tmp_path / "ckpt"
    flags = flags_of(row, dataset, ckpt, encodec_weights)
    devices = devices_of(row)

    assert train_main(flags, devices=devices) == 0
    out = capsys.readouterr().out
    assert f"agent {agent}" in out and f"{len(devices)} " in out, out
    if "--codec_precision" in extra:
        assert "precision bf16, loss decode bf16" in out
    (epoch1,) = history(ckpt)
    assert epoch1["epoch"] == 1
    for key in ("train_loss", "val_loss", "train_grad_norm"):
        assert np.isfinite(epoch1[key]), (key, epoch1[key])
    assert epoch1["train_count_skipped_steps"] == 0
    if agent != "none":
        assert np.isfinite(epoch1[f"train_{AGENT_LOSS[agent]}"])
        assert np.isfinite(epoch1[f"train_{AGENT_STAT[agent]}"])
    if gan != "off":
        assert np.isfinite(epoch1["train_gan_loss"]) and np.isfinite(epoch1["train_disc_loss"])
    meta = read_meta(ckpt / "best_model")
    assert meta["config"]["creative_agent"] in (None, agent) and meta["step"] == 2

    # generate on the checkpoint: one pair, a WAV of the input's length
    pair = sorted((dataset / "val").glob("*_input.wav"))[0]
    target = Path(str(pair).replace("_input.wav", "_output.wav"))
    wav = tmp_path / "mix.wav"
    assert generate.main(["--checkpoint", str(ckpt), "--input_audio", str(pair),
                          "--target_audio", str(target), "--output", str(wav)]) == 0
    audio, sr = sf.read(wav)
    assert sr == 24000 and audio.shape[0] == sf.info(pair).frames
    assert np.all(np.isfinite(audio)) and np.max(np.abs(audio)) > 0

    # evaluate on the checkpoint: two unseen synthetic pairs
    report = tmp_path / "evaluation.json"
    assert evaluate.main(["--checkpoint", str(ckpt), "--num_pairs", "2", "--duration", "0.5",
                          "--output_json", str(report)]) == 0
    medians = json.loads(report.read_text())["aggregate"]
    assert np.isfinite(medians["distance_ratio"]) and np.isfinite(medians["onset_corr_input"])

    # resume for a second epoch: two more optimizer steps from the saved state
    capsys.readouterr()
    resumed = [f for f in flags]
    resumed[resumed.index("--epochs") + 1] = "2"
    assert train_main(resumed + ["--resume", str(ckpt)], devices=devices) == 0
    rows = history(ckpt)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert np.isfinite(rows[1]["train_loss"]) and rows[1]["train_count_skipped_steps"] == 0
    assert read_meta(ckpt / "checkpoint_epoch_2")["step"] == 4


# run_train_creative_agent_fixed.sh's command line, its variables filled in as the script sets
# them; only the dataset folder and checkpoint folder differ (and --clip_seconds, which the
# original takes from its 16-s files and the test's clips are shorter).
ORIGINAL_HEADLINE = [
    "--encoding_dim", "128", "--nhead", "8", "--num_layers", "6",
    "--num_transformer_layers", "3", "--dropout", "0.1", "--encodec_bandwidth", "6.0",
    "--encodec_sr", "24000", "--epochs", "200", "--batch_size", "8", "--lr", "1e-4",
    "--weight_decay", "0.01", "--num_workers", "0", "--patience", "20", "--seed", "42",
    "--save_every", "10", "--world_size", "4", "--unity_test", "false",
    "--shuffle_targets", "true", "--anti_cheating", "0.1", "--loss_weight_input", "0.3",
    "--loss_weight_target", "0.3", "--loss_weight_spectral", "0.0", "--loss_weight_mel", "0.0",
    "--mask_type", "none", "--use_creative_agent", "true", "--mask_reg_weight", "0.1",
    "--balance_loss_weight", "15.0", "--gan_weight", "0.1", "--disc_lr", "5e-5",
    "--disc_update_freq", "1", "--corr_weight", "0.5",
]


@pytest.mark.slow
def test_the_originals_headline_command_line_runs(dataset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "checkpoints_creative_agent_fixed"
    flags = ["--dataset_folder", str(dataset), *ORIGINAL_HEADLINE, "--checkpoint_dir", str(ckpt),
             "--clip_seconds", "0.128", "--stop_after_steps", "1", "--no_mlflow"]
    assert train_main(flags, devices=jax.devices()[:1]) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.err.splitlines() if line.startswith("note: ")]
    assert [n.split()[1].rstrip(":") for n in notes] == [
        "--world_size", "--num_workers", "--encodec_bandwidth", "--encodec_sr"]
    assert "this run's codec is mdct" in notes[-1] and "--codec encodec" in notes[-1]
    assert "6 layers, 8 heads, agent masking, GAN stable" in captured.out
    meta = read_meta(ckpt / "interrupted_checkpoint")
    assert meta["step"] == 1 and meta["config"]["num_transformer_layers"] == 3
    assert "world_size" not in meta["config"]  # no meaning here, so not saved


@pytest.mark.parametrize("flags, message", [
    (["--encodec_sr", "16000"], "--encodec_sr: jaxaudio's EnCodec is the 24 kHz model"),
    (["--encodec_bandwidth", "5"], "--encodec_bandwidth: EnCodec 24 kHz's bandwidths are "
                                   "1.5, 3, 6, 12, 24 kbps, got 5"),
    (["--world_size", "0"], "--world_size: expected a number of GPUs >= 1"),
    (["--num_workers", "-1"], "--num_workers: expected a number >= 0"),
])
def test_the_originals_flags_are_checked(flags, message, tmp_path, capsys):
    assert train_main(["--builtin", "--checkpoint_dir", str(tmp_path / "ck"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ck").exists()


def test_local_rank_in_both_spellings_is_a_note(tmp_path):
    from jaxaudio.training.cli import parse_config

    for spelling in ("--local_rank", "--local-rank"):
        notes: list[str] = []
        parse_config(["--builtin", spelling, "0"], notes)
        assert len(notes) == 1 and notes[0].startswith("--local_rank: not needed")
