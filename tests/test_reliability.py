"""Failures a user meets, each injected: two runs on one folder, a changed dataset, edited
checkpoint metadata, a full disk, a broken tracking store, Ctrl-C during the cache build.
Each ends in one line naming what to do, its documented exit status, and nothing lost."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from jaxaudio.data.synth import make_synthetic_dataset
from jaxaudio.train import main
from jaxaudio.training.checkpoint import checkpoints_in, meta_file, verify_checkpoint
from jaxaudio.training.run_lock import LOCK_NAME

PROJECT = Path(__file__).resolve().parents[1]
TINY = ["--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
        "--num_transformer_layers", "2", "--clip_seconds", "0.128", "--batch_size", "1",
        "--lr", "1e-3", "--log_samples", "0", "--quality_clips", "0", "--save_every", "1",
        "--seed", "3"]


def env(**extra) -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", **extra,
                PYTHONPATH=str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                XLA_FLAGS="--xla_force_host_platform_device_count=1")


def train(args: list, cwd: Path, timeout: float = 300, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jaxaudio.train", *map(str, args)], cwd=cwd,
                          env=env(**extra), capture_output=True, text=True, timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    """The run's error: one line starting ``error:``, and no traceback."""
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    make_synthetic_dataset(root, num_pairs=10, duration=0.15, seed=1, val_fraction=0.2)
    return root


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory) -> Path:
    """A finished one-epoch run's checkpoint folder."""
    out = tmp_path_factory.mktemp("trained") / "ck"
    assert main(["--dataset_folder", str(dataset), "--checkpoint_dir", str(out), "--epochs",
                 "1", "--no_mlflow", *TINY]) == 0
    return out


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


# --- one run per folder -------------------------------------------------------------------

def test_second_run_on_a_folder_is_refused_then_a_killed_runs_lock_is_taken_over(
        dataset, tmp_path, capsys):
    ckpt = tmp_path / "ck"
    first = subprocess.Popen(
        [sys.executable, "-m", "jaxaudio.train", "--dataset_folder", str(dataset),
         "--checkpoint_dir", str(ckpt), "--epochs", "500", "--no_mlflow", *TINY],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        lock = ckpt / LOCK_NAME
        while time.time() < deadline and not (lock.exists() and lock.read_text()):
            assert first.poll() is None, first.stdout.read()
            time.sleep(0.2)
        holder = json.loads(lock.read_text())
        assert holder["pid"] == first.pid
        args = ["--dataset_folder", str(dataset), "--checkpoint_dir", str(ckpt), "--epochs",
                "1", "--no_mlflow", *TINY]
        assert main(args) == 2
        err = capsys.readouterr().err
        assert f"--checkpoint_dir {ckpt}: another run is using this folder (process " \
               f"{first.pid} on host {socket.gethostname()}" in err
        assert first.poll() is None  # the first run goes on, untouched
    finally:
        first.kill()
        first.wait()
    # The killed run's lock is recognised and taken over, with a line saying so.
    assert main(args) == 0
    err = capsys.readouterr().err
    assert (f"note: taking over the lock on {ckpt}, left by a run that is no longer running "
            f"(process {first.pid}") in err
    assert lock.read_text() == ""  # released at the end


# --- resume checks what it resumes -----------------------------------------------------------

def test_resume_refuses_a_changed_dataset_unless_told(dataset, trained, tmp_path, capsys):
    import soundfile as sf

    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy, ignore=shutil.ignore_patterns(".jaxaudio_cache"))
    ckpt = tmp_path / "ck"
    shutil.copytree(trained, ckpt, ignore=shutil.ignore_patterns(LOCK_NAME))
    args = ["--dataset_folder", str(copy), "--checkpoint_dir", str(ckpt), "--no_mlflow",
            "--resume", str(ckpt / "best_model"), *TINY]
    # A copy elsewhere is the same dataset (same contents).
    assert main([*args, "--epochs", "2"]) == 0
    capsys.readouterr()
    # A WAV replaced by another of the same size: refused, naming the file.
    wav = copy / "train" / "pair_0000_input.wav"
    audio, sr = sf.read(wav, dtype="int16")
    size = wav.stat().st_size
    sf.write(wav, np.ascontiguousarray(audio[::-1]), sr, subtype="PCM_16")
    assert wav.stat().st_size == size
    assert main([*args, "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert ("cannot resume on other data: --dataset_folder " in err
            and "1 changed (train/pair_0000_input.wav)" in err
            and "--allow_dataset_change" in err), err
    # With --allow_dataset_change it continues, the best model chosen afresh.
    assert main([*args, "--epochs", "3", "--allow_dataset_change"]) == 0
    out = capsys.readouterr().out
    assert "note: --allow_dataset_change: --dataset_folder " in out
    assert "1 changed (train/pair_0000_input.wav)" in out
    rows = [json.loads(r) for r in (ckpt / "metrics.jsonl").read_text().splitlines()]
    best = json.loads(meta_file(checkpoints_in(ckpt / "best_model")[0]).read_text())
    assert best["epoch"] == 3 and best["best_val_loss"] == pytest.approx(rows[-1]["val_loss"])


def test_allow_dataset_change_without_resume_is_a_flag_error(capsys):
    assert main(["--builtin", "--allow_dataset_change"]) == 2
    assert "--allow_dataset_change: does nothing without --resume" in capsys.readouterr().err


def _edit(ckpt: Path, edit) -> Path:
    path = checkpoints_in(ckpt / "best_model")[0]
    file = meta_file(path)
    meta = json.loads(file.read_text())
    edit(meta)
    file.write_text(json.dumps(meta))
    return file


@pytest.mark.parametrize("edit, field, expected", [
    (lambda m: m["scheduler"].update(lr=-1), "scheduler.lr", "a finite number > 0"),
    (lambda m: m.update(best_val_loss="oops"), "best_val_loss", "null or a finite number"),
    (lambda m: m["config"].update(lr="abc"), "config.lr", "a finite number"),
    (lambda m: m["config"].update(nhead=3), "config.nhead", "expected a divisor"),
    (lambda m: m.update(epoch=-2), "epoch", "a whole number >= 0"),
])
def test_edited_metadata_is_refused_naming_the_field(dataset, trained, tmp_path, capsys, edit,
                                                     field, expected):
    ckpt = tmp_path / "ck"
    shutil.copytree(trained, ckpt, ignore=shutil.ignore_patterns(LOCK_NAME))
    file = _edit(ckpt, edit)
    assert main(["--dataset_folder", str(dataset), "--checkpoint_dir", str(ckpt), "--epochs",
                 "2", "--no_mlflow", "--resume", str(ckpt / "best_model"), *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{file}: field '{field}'" in err and expected in err, err
    if field.startswith("config") or field == "epoch":  # what generate and evaluate read
        from jaxaudio import evaluate, generate

        assert generate.main(["--checkpoint", str(ckpt / "best_model"), "--input",
                              str(next((dataset / "val").glob("*_input.wav"))), "--output",
                              str(tmp_path / "out.wav")]) == 2
        assert f"field '{field}'" in capsys.readouterr().err
        assert evaluate.main(["--checkpoint", str(ckpt / "best_model"), "--val_folder",
                              str(dataset / "val"), "--out", str(tmp_path / "q.json")]) == 2
        assert f"field '{field}'" in capsys.readouterr().err


def test_a_valid_looking_edit_fails_the_checksum(trained, tmp_path):
    ckpt = tmp_path / "ck"
    shutil.copytree(trained, ckpt, ignore=shutil.ignore_patterns(LOCK_NAME))
    file = _edit(ckpt, lambda m: m["scheduler"].update(lr=0.5))
    from jaxaudio.training.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match=r"meta/metadata: damaged checkpoint: .*edited"):
        verify_checkpoint(file.parents[1])


# --- failures outside our code --------------------------------------------------------------

def test_a_save_that_cannot_fit_is_refused_before_it_starts(dataset, tmp_path, monkeypatch,
                                                             capsys):
    import jaxaudio.training.trainer as trainer

    calls = []

    def free(path):  # room for the first save (the best model), none for the second
        calls.append(path)
        return 1 << 40 if len(calls) == 1 else 1000

    monkeypatch.setattr(trainer, "free_bytes", free)
    ckpt = tmp_path / "ck"
    assert main(["--dataset_folder", str(dataset), "--checkpoint_dir", str(ckpt), "--epochs",
                 "2", "--no_mlflow", *TINY]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    best = checkpoints_in(ckpt / "best_model")
    size = sum(p.stat().st_size for p in best[0].rglob("*") if p.is_file())
    assert line.startswith(f"error: no space left on the device of {ckpt} while writing the "
                           f"periodic checkpoint (step 1) (needs about {size / 2**20:.1f} MB; "
                           f"")  # the size of the run's last checkpoint
    assert line.endswith(f"Earlier checkpoints are intact; free some space, then continue "
                         f"with --resume {ckpt}")
    verify_checkpoint(best[0])
    assert not list(ckpt.rglob("*.orbax-checkpoint-tmp*"))  # nothing was started


def test_a_disk_that_fills_during_a_save_keeps_the_earlier_checkpoint(dataset, tmp_path):
    ckpt = tmp_path / "ck"
    args = ["--dataset_folder", dataset, "--checkpoint_dir", ckpt, "--no_mlflow", *TINY]
    # The second save (epoch 1's periodic checkpoint, after its best model) finds no space
    # while orbax writes it.
    proc = train([*args, "--epochs", "2"], tmp_path,
                 JAXAUDIO_FAULT="checkpoint-save@2:enospc")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    # orbax's writes still in flight may print their own callbacks' tracebacks; ours is the
    # one line that names the path and what to do.
    errors = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(
        f"error: no space left on the device of {ckpt} while writing the periodic checkpoint "
        f"(step 1)"), proc.stderr
    best = checkpoints_in(ckpt / "best_model")
    assert len(best) == 1
    verify_checkpoint(best[0])
    # The resume it names works, and what the cut save left is gone.
    again = train([*args, "--epochs", "2", "--resume", ckpt], tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert not list(ckpt.rglob("*.orbax-checkpoint-tmp*"))


def test_unreachable_tracking_server_is_refused_before_any_work(tmp_path):
    with socket.socket() as s:  # a local port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.time()
    proc = train(["--builtin", "--epochs", "1", "--mlflow_uri", f"http://127.0.0.1:{port}",
                  "--checkpoint_dir", tmp_path / "ck"], tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert f"--mlflow_uri http://127.0.0.1:{port}: no MLflow tracking server answers" in line
    assert "--no_mlflow" in line
    assert time.time() - start < 60
    assert not (tmp_path / "data").exists()  # refused before the dataset was made


def test_corrupt_tracking_database_is_named(tmp_path):
    db = tmp_path / "mlruns.db"
    db.write_bytes(b"this is not a database" * 100)
    proc = train(["--builtin", "--epochs", "1", "--checkpoint_dir", tmp_path / "ck"], tmp_path,
                 timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    line = one_error_line(proc)
    assert "--mlflow_uri sqlite:///mlruns.db: mlruns.db is not a readable SQLite database" in line
    assert "--no_mlflow" in line
    assert db.read_bytes() == b"this is not a database" * 100  # left as it was


def test_ctrl_c_during_the_cache_build_is_one_line_and_the_rerun_works(dataset, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns(".jaxaudio_cache"))
    args = ["--dataset_folder", data, "--checkpoint_dir", tmp_path / "ck", "--epochs", "1",
            "--no_mlflow", *TINY]
    proc = train(args, tmp_path, JAXAUDIO_FAULT="cache-build:sigint")
    assert proc.returncode == 130, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert ("Interrupted (Ctrl-C) before the first checkpoint: nothing of the run was saved. "
            "What the dataset and latent-cache builds finished is kept and reused: run the "
            "same command again") in proc.stderr
    again = train(args, tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr


def test_training_unblocks_the_stop_signals_a_parent_left_blocked():
    """A child inherits its parent's blocked signals; blocked, Ctrl-C and SIGTERM would never
    reach the run. ``unblock_stop_signals`` (called first by ``python -m jaxaudio.train``)
    lets them through."""
    import signal

    code = ("import signal\n{}\nblocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])\n"
            "print(signal.SIGINT in blocked, signal.SIGTERM in blocked)")
    call = "from jaxaudio.training.signals import unblock_stop_signals; unblock_stop_signals()"
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        outs = [subprocess.run([sys.executable, "-c", code.format(c)], env=env(), text=True,
                               capture_output=True, check=True).stdout.split()
                for c in ("pass", call)]
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
    assert outs == [["True", "True"], ["False", "False"]], outs


def test_ctrl_c_in_the_training_loop_saves_says_how_to_continue_and_exits_130(dataset,
                                                                              tmp_path):
    import signal

    ckpt = tmp_path / "ck"
    proc = subprocess.Popen(
        [sys.executable, "-m", "jaxaudio.train", "--dataset_folder", str(dataset),
         "--checkpoint_dir", str(ckpt), "--epochs", "500", "--no_mlflow", *TINY],
        cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and not checkpoints_in(ckpt / "best_model"):
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "Traceback" not in out, out
    where = ckpt / "interrupted_checkpoint"
    assert f"Interrupted (SIGINT); saved {where}. Continue with: --resume {where}" in out
    verify_checkpoint(checkpoints_in(where)[0])


def test_an_unexpected_error_is_one_line_and_debug_shows_the_traceback(monkeypatch, capsys,
                                                                        tmp_path):
    import jaxaudio.training.trainer as trainer

    def broken(cfg, devices=None):
        raise RuntimeError("something inside broke\nwith a second line")

    monkeypatch.setattr(trainer, "fit", broken)
    args = ["--builtin", "--no_mlflow", "--checkpoint_dir", str(tmp_path / "ck")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == ("error: RuntimeError: something inside broke "
                                            "(--debug prints the traceback)")
    assert "Traceback" not in err
    assert main([*args, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith("error: RuntimeError: something "
                                                       "inside broke")


# --- settings that would do nothing ----------------------------------------------------------

@pytest.mark.parametrize("flags, message", [
    (["--num_transformer_layers", "1", "--cascade_update", "gain"],
     "--cascade_update: does nothing here: the single-stage model has no cascade"),
    (["--gan_variant", "original"], "--gan_variant: does nothing here: the run has no "
                                    "discriminator (--gan_weight 0)"),
    (["--creative_agent", "compositional", "--mask_gate", "learned"],
     "--mask_gate: does nothing here: only the masking agent has a mask gate"),
    (["--gan_weight", "0.1", "--gan_variant", "original", "--gan_r1", "2"],
     "--gan_r1: does nothing here: the R1 penalty is the stable GAN's"),
    (["--lr_schedule", "cosine", "--plateau_patience", "3"],
     "--plateau_patience: does nothing here: the schedule is not the plateau's"),
    (["--codec_weights", "w.th"], "--codec_weights: does nothing here: the MDCT codec has no "
                                  "weights"),
    (["--use_cache", "false", "--cache_dir", "c"], "--cache_dir: does nothing here: the latent "
                                                   "cache is off"),
])
def test_a_jaxaudio_flag_that_does_nothing_is_an_error(flags, message, capsys):
    assert main(["--builtin", *flags]) == 2
    assert f"error: {message}" in capsys.readouterr().err


def test_the_originals_flags_that_do_nothing_get_a_note():
    from jaxaudio.training.cli import parse_config

    notes: list[str] = []
    parse_config(["--builtin", "--disc_lr", "1e-4", "--mask_temporal_segment", "100",
                  "--balance_loss_weight", "15"], notes)
    assert notes == [
        "--disc_lr has no effect here: the run has no discriminator (--gan_weight 0)",
        "--balance_loss_weight has no effect here: the balance loss is the masking agent's",
        "--mask_temporal_segment has no effect here: only --mask_type temporal and hybrid use it"]
