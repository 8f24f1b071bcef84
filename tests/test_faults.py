"""Fault injection: SIGKILL at fixed points (``JAXAUDIO_FAULT``, see
``jaxaudio.data.atomic_files.fault_point``) during a checkpoint save, a cache build and the
built-in dataset build; tampered caches and checkpoints; bad flag values. Each recovery is
shown exact against an untroubled run, and each error by its exact message and exit code."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxaudio.data.synth import make_synthetic_dataset
from jaxaudio.train import main

PROJECT = Path(__file__).resolve().parents[1]
TINY = ["--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
        "--num_transformer_layers", "2", "--dropout", "0.1", "--clip_seconds", "0.128",
        "--batch_size", "1", "--lr", "1e-3", "--loss_weight_input", "0.3",
        "--loss_weight_target", "0.3", "--loss_weight_spectral", "0.01", "--log_samples", "0",
        "--save_every", "1", "--seed", "3", "--no_mlflow"]
TIMING = "train_samples_per_second"  # wall-clock, the one value allowed to differ


def rows(ckpt: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != TIMING}
            for line in (ckpt / "metrics.jsonl").read_text().splitlines()]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def unfinished(folder: Path) -> list[str]:
    """orbax's temporary step folders (a save not finished), in the run's folder and below."""
    return sorted(p.name for p in folder.rglob("*.orbax-checkpoint-tmp*"))


def killed_run(args: list, fault: str, cwd: Path) -> str:
    """Run ``python -m jaxaudio.train args`` until ``fault`` kills it; its output."""
    env = dict(os.environ, JAXAUDIO_FAULT=fault, PYTHONUNBUFFERED="1",
               PYTHONPATH=str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "jaxaudio.train", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    make_synthetic_dataset(root, num_pairs=20, duration=0.15, seed=1, val_fraction=0.2)
    return root


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    """An untroubled 2-epoch run: checkpoints, metrics and its cache."""
    out = tmp_path_factory.mktemp("reference")
    assert main(["--dataset_folder", str(dataset), "--cache_dir", str(out / "cache"),
                 "--checkpoint_dir", str(out / "ck"), "--epochs", "2", *TINY]) == 0
    return out


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_kill_during_save_then_resume_is_exact(dataset, reference, tmp_path, monkeypatch,
                                               caplog):
    ck = tmp_path / "ck"
    common = ["--cache_dir", reference / "cache", "--checkpoint_dir", ck, "--epochs", 2, *TINY]
    # Saves in epoch 1: best_model, then checkpoint_epoch_1, killed half-written.
    killed_run(["--dataset_folder", dataset, *common], "checkpoint-save@2", tmp_path)
    assert [n for n in unfinished(ck) if n.startswith("checkpoint_epoch_1.")], unfinished(ck)
    # The next run resumes best_model (epoch 1) with another spelling of the dataset's path.
    monkeypatch.chdir(dataset.parent)
    with caplog.at_level("INFO"):
        assert main(["--dataset_folder", f"./{dataset.name}/", *map(str, common),
                     "--resume", str(ck / "best_model")]) == 0
    assert "left by a checkpoint save that did not finish" in caplog.text
    # Nothing left but the run lock's file (emptied when the run ended; kept, so that no
    # second run can lock a file the first is about to delete).
    assert hidden(ck) == [".run.lock"] and unfinished(ck) == []
    assert (ck / ".run.lock").read_text() == ""
    assert rows(ck) == rows(reference / "ck")
    import jax
    import orbax.checkpoint as ocp

    a = ocp.StandardCheckpointer().restore((reference / "ck/checkpoint_epoch_2/state").absolute())
    b = ocp.StandardCheckpointer().restore((ck / "checkpoint_epoch_2/state").absolute())
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_kill_during_cache_build_then_rebuild_is_exact(dataset, reference, tmp_path, caplog):
    cache = tmp_path / "cache"
    args = ["--dataset_folder", dataset, "--cache_dir", cache, "--checkpoint_dir",
            tmp_path / "ck", "--epochs", 1, *TINY]
    killed_run(args, "cache-build", tmp_path)
    assert [n for n in hidden(cache) if n.startswith(".tmp-")]
    with caplog.at_level("INFO"):
        assert main(list(map(str, args))) == 0
    assert "left by a cache build that did not finish" in caplog.text
    assert hidden(cache) == []
    assert rows(tmp_path / "ck") == rows(reference / "ck")[:1]


def test_tampered_cache_is_rebuilt_with_the_reason(dataset, reference, tmp_path, caplog):
    cache = tmp_path / "cache"
    shutil.copytree(reference / "cache", cache)
    (built,) = [d for d in cache.iterdir() if d.name.startswith("train-")]
    f = built / "input_latent.npy"
    data = np.load(f)
    np.save(f, data * 1.5)  # same size, other values: the silent-wrong-data case
    with caplog.at_level("WARNING"):
        assert main(["--dataset_folder", str(dataset), "--cache_dir", str(cache),
                     "--checkpoint_dir", str(tmp_path / "ck"), "--epochs", "1", *TINY]) == 0
    assert (f"latent cache {built} is not usable, rebuilding it: {f}: contents do not match "
            f"the checksum") in caplog.text
    assert rows(tmp_path / "ck") == rows(reference / "ck")[:1]


def test_kill_during_builtin_dataset_build(tmp_path, caplog):
    args = ["--builtin", *TINY, "--epochs", "1", "--stop_after_steps", "1",
            "--checkpoint_dir", "ck"]
    killed_run(args, "dataset-build", tmp_path)
    assert [n for n in hidden(tmp_path / "data") if n.startswith(".synthetic.partial-")]
    assert not (tmp_path / "data/synthetic").exists()
    with caplog.at_level("INFO"):
        assert main(args) == 0
    assert "left by a dataset build that did not finish" in caplog.text
    assert hidden(tmp_path / "data") == []
    clean = make_synthetic_dataset(tmp_path / "clean", num_pairs=240, duration=1.5, seed=0)
    for f in sorted((clean / "train").iterdir())[:6] + [clean / "metadata.json"]:
        assert f.read_bytes() == (tmp_path / "data/synthetic" / f.relative_to(clean)).read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_damaged_checkpoint_is_named_in_train_and_generate(dataset, reference, tmp_path,
                                                          damage, capsys):
    from jaxaudio.training.checkpoint import resolve_checkpoint

    ck = tmp_path / "best_model"
    shutil.copytree(reference / "ck" / "best_model", ck)
    table = json.loads((resolve_checkpoint(ck) / "checksums.json").read_text())
    rel = max(table, key=lambda r: table[r]["size"])  # the largest array file
    f = resolve_checkpoint(ck) / rel
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncated"
                  else data[:100] + bytes(b ^ 0xFF for b in data[100:164]) + data[164:])
    assert main(["--dataset_folder", str(dataset), "--cache_dir", str(reference / "cache"),
                 "--checkpoint_dir", str(tmp_path / "ck"), "--epochs", "2", *TINY,
                 "--resume", str(ck)]) == 2
    why = ("(truncated, overwritten or edited)" if damage == "truncated"
           else "does not match the checksum made when it was written (edited or garbled)")
    err = capsys.readouterr().err
    assert err.startswith(f"error: {f}: damaged checkpoint: this file ") and why in err, err
    assert len(err.strip().splitlines()) == 1
    from jaxaudio.generate import main as generate

    wav = sorted((dataset / "val").glob("*_input.wav"))[0]
    assert generate(["--checkpoint", str(ck), "--input_audio", str(wav), "--target_audio",
                     str(wav), "--output", str(tmp_path / "out.wav")]) == 2
    err = capsys.readouterr().err
    assert f"{f}: damaged checkpoint" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "out.wav").exists()


def test_resume_knows_the_dataset_by_identity_not_spelling(dataset, reference, tmp_path):
    from jaxaudio.training.checkpoint import CheckpointError
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.resume import check_resume

    # The content hashes are remembered beside the cache: keep them out of the shared dataset.
    common = ["--checkpoint_dir", str(tmp_path / "ck"), "--cache_dir", str(tmp_path / "cache"),
              *TINY, "--resume", str(reference / "ck" / "best_model")]
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns(".*"))
    for folder in (str(dataset) + "/", os.path.relpath(dataset), str(copy)):
        assert check_resume(parse_config(["--dataset_folder", folder, *common])) is not None
    other = make_synthetic_dataset(tmp_path / "other", num_pairs=12, duration=0.15, seed=2)
    with pytest.raises(CheckpointError, match=r"cannot resume on other data: --dataset_folder "
                                              r".*other: its contents differ from the dataset "
                                              r"the checkpoint was trained on \(.*tiny\): "
                                              r"\d+ changed \(train/pair_0000_input.wav"):
        check_resume(parse_config(["--dataset_folder", str(other), *common]))


def test_save_cut_between_its_renames_is_put_back(tmp_path, caplog):
    from jaxaudio.training.checkpoint import COMPLETE
    from jaxaudio.training.checkpoint_manager import remove_stale_temps

    (tmp_path / ".best_model.old-ab12").mkdir()
    (tmp_path / ".best_model.old-ab12" / COMPLETE).write_text("ok\n")
    (tmp_path / ".checkpoint_epoch_1.tmp-cd34").mkdir()
    (tmp_path / ".checkpoint_epoch_1.tmp-cd34" / "OWNER").write_text(
        json.dumps({"host": "another-host.invalid", "pid": 1}))  # another host's: kept
    with caplog.at_level("INFO"):
        remove_stale_temps(tmp_path)
    assert (tmp_path / "best_model" / COMPLETE).exists()
    assert hidden(tmp_path) == [".checkpoint_epoch_1.tmp-cd34"]
    assert "restoring" in caplog.text


@pytest.mark.parametrize("bad, message", [
    (["--seed", "-5"], "--seed: expected an integer from 0 to 4294967295, got -5"),
    (["--epochs", "-1"], "--epochs: expected a positive integer, got -1"),
    (["--lr", "nan"], "--lr: expected a positive number, got nan"),
    (["--batch_size", "0"], "--batch_size: expected a positive integer, got 0"),
    (["--dropout", "1.5"], "--dropout: expected a rate in [0, 1), got 1.5"),
    (["--grad_clip", "-1"], "--grad_clip: expected a number >= 0, got -1.0"),
    (["--checkpoint_dir", "afile"], "--checkpoint_dir afile: exists and is not a folder; "
                                    "expected a folder (or a new name) to write into"),
    (["--checkpoint_dir", "afile/sub"], "--checkpoint_dir afile/sub: afile is a file, so no "
                                        "folder can be made there; expected a writable folder"),
    (["--checkpoint_dir", "/proc/ck"], "--checkpoint_dir /proc/ck: no file can be made in /proc"),
    (["--cache_dir", "afile"], "--cache_dir afile: exists and is not a folder"),
    (["--resume", "afile"], "--resume afile: is a file; expected a checkpoint folder"),
    (["--resume", "nothere"], "--resume: checkpoint not found: nothere"),
    (["--resume", "."], ".: neither a checkpoint"),
    (["--mlflow_uri", "sqlite:///afile/m.db"], "--mlflow_uri sqlite:///afile/m.db: exists and "
                                               "is not a folder"),
])
def test_bad_values_stop_before_any_work(dataset, tmp_path, bad, message, capsys):
    (tmp_path / "afile").write_text("x")
    args = ["--dataset_folder", str(dataset), "--checkpoint_dir", "ck", *TINY]
    args = [a for a in args if a != "--no_mlflow"] if bad[0] == "--mlflow_uri" else args
    assert main([*args, *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}"), err
    assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "ck").exists() or bad[0] == "--checkpoint_dir"
    assert not list(dataset.glob(".jaxaudio_cache"))


def test_generate_batch_checks_every_pair_first(dataset, reference, tmp_path, capsys,
                                                 monkeypatch, caplog):
    from jaxaudio.generate import main as generate
    from jaxaudio.inference import modes

    val = tmp_path / "val"
    val.mkdir()
    for i, src in enumerate(sorted((dataset / "val").glob("*_input.wav"))[:3]):
        shutil.copy(src, val / f"pair_{i:04d}_input.wav")
        shutil.copy(str(src).replace("_input", "_output"), val / f"pair_{i:04d}_output.wav")
    bad = val / "pair_0001_input.wav"
    bad.write_bytes(bad.read_bytes()[:44] + os.urandom(64))  # a header and a few bytes
    bad.write_bytes(b"RIFX" + bad.read_bytes()[4:])  # and a header that cannot be read
    out = tmp_path / "gen"
    args = ["--checkpoint", str(reference / "ck" / "best_model"), "--val_folder", str(val),
            "--num_samples", "3", "--output_folder", str(out)]
    assert generate(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bad}: ") and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
    with caplog.at_level("WARNING"):
        assert generate([*args, "--skip_bad_files", "true"]) == 0
    assert f"skipping a pair (--skip_bad_files): {bad}" in caplog.text
    names = [json.loads(r)["name"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert names == ["pair_0000", "pair_0002"]
    assert not list(out.glob("pair_0001*"))
    # A pair failing after others were made: metrics.jsonl still lists those.
    made = modes.generate_one

    def second_fails(gen, opts, input_path, *rest, **kw):
        if "pair_0002" in str(input_path):
            raise modes.GenerateError(f"{input_path}: failed")
        return made(gen, opts, input_path, *rest, **kw)

    monkeypatch.setattr(modes, "generate_one", second_fails)
    assert generate([*args, "--skip_bad_files", "--overwrite"]) == 2
    names = [json.loads(r)["name"] for r in (out / "metrics.jsonl").read_text().splitlines()]
    assert names == ["pair_0000"]


def test_convert_exits_2_naming_a_file_with_wrong_keys(tmp_path, capsys):
    from safetensors.numpy import save_file

    from jaxaudio.codecs.convert import main as convert

    src = tmp_path / "wrong.safetensors"
    save_file({"foo": np.zeros(3, np.float32)}, str(src))
    assert convert([str(src), str(tmp_path / "out.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {src}: not an EnCodec state dict"), err
    assert not (tmp_path / "out.safetensors").exists()
