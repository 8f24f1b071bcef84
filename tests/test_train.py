"""End-to-end training on tiny synthetic data: the real CLI, checkpoints, resume, MLflow,
data parallelism over fake CPU devices, signals, multi-process, non-finite guards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxaudio.data.synth import make_synthetic_dataset
from jaxaudio.train import main
from jaxaudio.training.checkpoint import checkpoints_in, read_meta, resolve_checkpoint

PROJECT = Path(__file__).resolve().parents[1]

# A cascade small enough to compile and train in seconds on a CPU.
TINY = ["--encoding_dim", "32", "--nhead", "2", "--num_layers", "1",
        "--num_transformer_layers", "2", "--dropout", "0.1", "--clip_seconds", "0.128",
        "--batch_size", "1", "--lr", "1e-3", "--loss_weight_input", "0.3",
        "--loss_weight_target", "0.3", "--loss_weight_spectral", "0.01", "--log_samples", "0",
        "--save_every", "1", "--seed", "3"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "tiny"
    # 16 train pairs: 4 steps per epoch at the global batch of 4 (4 fake devices x 1).
    make_synthetic_dataset(root, num_pairs=20, duration=0.15, seed=1, val_fraction=0.2)
    return root


def run(args: list[str]) -> int:
    return main([str(a) for a in args])


def history(ckpt: Path) -> list[dict]:
    return [json.loads(line) for line in (ckpt / "metrics.jsonl").read_text().splitlines()]


def params_of(ckpt_dir: Path, name: str) -> dict[str, np.ndarray]:
    """The arrays of a saved checkpoint's state, by path."""
    import orbax.checkpoint as ocp

    path = resolve_checkpoint(ckpt_dir / name)
    tree = ocp.StandardCheckpointer().restore((path / "state").absolute())
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MLflow artifacts and caches land in the test's folder


def test_end_to_end_mdct_with_mlflow(dataset, tmp_path):
    ckpt = tmp_path / "ckpt"
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert run(["--dataset_folder", dataset, "--checkpoint_dir", ckpt, "--epochs", 3,
                "--mlflow_uri", uri, *TINY, "--log_samples", 1]) == 0
    rows = history(ckpt)
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        for k in ("train_loss", "val_loss", "train_rms_input", "val_mel", "learning_rate",
                  "train_grad_norm", "train_samples_per_second"):
            assert np.isfinite(r[k]), k
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    best = 1 + int(np.argmin([r["val_loss"] for r in rows]))  # one kept: the lowest val_loss
    assert [p.name for p in checkpoints_in(ckpt / "best_model")] == [f"epoch_{best}"]
    assert resolve_checkpoint(ckpt / "checkpoint_epoch_3") == ckpt / "checkpoint_epoch_3"
    meta = read_meta(ckpt / "best_model")
    assert meta["config"]["encoding_dim"] == 32

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("jaxaudio")
    (run_info,) = client.search_runs([exp.experiment_id])
    hist = client.get_metric_history(run_info.info.run_id, "val_loss")
    assert [m.step for m in hist] == [1, 2, 3]
    assert run_info.data.params["encoding_dim"] == "32"
    arts = [a.path for a in client.list_artifacts(run_info.info.run_id, "samples/epoch_0001")]
    assert any(a.endswith("sample0_output.wav") for a in arts)
    assert any(a.endswith("sample0_spectrograms.png") for a in arts)


def test_resume_after_interruption_equals_uninterrupted(dataset, tmp_path, monkeypatch):
    from jaxaudio.training import gan

    full = tmp_path / "full"
    # With the GAN: the discriminator, its optimizer and the adaptive noise's control variable
    # are part of what must resume exactly. A discriminator of one example a batch sits at
    # chance, so the controller is made to raise the noise at every update.
    monkeypatch.setattr(gan, "control_noise", lambda p, acc, updated, *, target, rate:
                        jnp.clip(p + rate * updated, 0.0, 1.0))
    common = ["--dataset_folder", dataset, "--epochs", 2, "--no_mlflow", *TINY,
              "--gan_weight", "0.1", "--disc_noise_rate", "0.05"]
    assert run([*common, "--checkpoint_dir", full]) == 0
    noise = [r["train_disc_noise"] for r in history(full)]
    assert 0 < noise[0] < noise[1]
    timing = "train_samples_per_second"  # wall-clock, the one value allowed to differ
    strip = lambda rows: [{k: v for k, v in r.items() if k != timing} for r in rows]
    # 4 train batches per epoch: stop mid-epoch (3) and on the epoch's last batch (4), where
    # the epoch must still be validated and saved before the stop.
    for stop_after in (3, 4):
        cut = tmp_path / f"cut{stop_after}"
        assert run([*common, "--checkpoint_dir", cut, "--stop_after_steps", stop_after]) == 0
        position = read_meta(cut / "interrupted_checkpoint")["position"]
        assert (position["epoch"], position["batch"]) == (0, stop_after)
        assert run([*common, "--checkpoint_dir", cut, "--resume", cut]) == 0  # newest complete
        assert strip(history(full)) == strip(history(cut))
        a, b = params_of(full, "checkpoint_epoch_2"), params_of(cut, "checkpoint_epoch_2")
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_batch_larger_than_the_split_is_a_flag_error(dataset, tmp_path, capsys):
    args = list(TINY)
    args[args.index("--batch_size") + 1] = "64"
    assert run(["--dataset_folder", dataset, "--checkpoint_dir", tmp_path / "ck",
                "--no_mlflow", *args]) == 2
    assert "--batch_size 64" in capsys.readouterr().err


@pytest.mark.parametrize("agent", ["none", "compositional"])
def test_four_devices_give_the_losses_of_one(dataset, tmp_path, agent):
    """Data parallelism changes no number: the batch-wide reductions (the outlier penalty's
    z-scores and quantile; the compositional agent's BatchNorm, whose statistics are the
    global batch's, as torch's SyncBatchNorm) see the whole global batch."""
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.trainer import fit

    assert len(jax.devices()) >= 4, "conftest configures 4 fake CPU devices"
    # The spectral outlier penalty (off by default with the gain update) is switched on: its
    # z-scores and quantile over the whole batch are what sharding could get wrong.
    base = ["--dataset_folder", str(dataset), "--epochs", "1", "--no_mlflow",
            "--spectral_penalty_weight", "0.01", *[str(a) for a in TINY]]
    if agent != "none":  # a small composer: the same code path as the original's size
        base += ["--creative_agent", agent, "--agent_options",
                 "component_dim=8,composer_layers=2,composer_heads=2"]
    i = base.index("--batch_size")
    one = base[:i] + ["--batch_size", "4"] + base[i + 2:]
    four = base[:i] + ["--batch_size", "1"] + base[i + 2:]
    # A vanishing learning rate keeps the parameters equal across the epoch's 4 steps, so the
    # epoch means compare the sharded forward, backward and reductions themselves (Adam would
    # otherwise amplify float32 reduction-order differences step by step).
    j = one.index("--lr")
    one[j + 1] = four[j + 1] = "1e-9"
    assert fit(parse_config(one + ["--checkpoint_dir", str(tmp_path / "one")]),
               devices=jax.devices()[:1]) == 0
    assert fit(parse_config(four + ["--checkpoint_dir", str(tmp_path / "four")]),
               devices=jax.devices()[:4]) == 0
    h1, h4 = history(tmp_path / "one")[0], history(tmp_path / "four")[0]
    for k in ("train_loss", "train_rms_input", "train_rms_target", "train_spectral",
              "train_spectral_penalty", "val_loss", "val_rms_input", "val_spectral"):
        # 1 vs 4 devices: batch means and spectral sums reduced in another order, over the epoch
        np.testing.assert_allclose(h4[k], h1[k], rtol=2e-5, err_msg=k)
    # the gradient sums per-clip gradients that partly cancel, across devices in another order:
    # its norm moves more than the losses (test_raw_step measures 4e-4 on a tiny one)
    np.testing.assert_allclose(h4["train_grad_norm"], h1["train_grad_norm"], rtol=1e-4)
    if agent == "compositional":
        # reduced in another order, as the losses above
        np.testing.assert_allclose(h4["train_novelty_loss"], h1["train_novelty_loss"],
                                   rtol=2e-5)
        s1, s4 = params_of(tmp_path / "one", "best_model"), params_of(tmp_path / "four",
                                                                       "best_model")
        stats = [k for k in s1 if "running_mean" in k or "running_var" in k]
        assert len(stats) == 12  # 2 extractors x 3 branches x (mean, var)
        for k in stats:  # 4 updates from the global batch's statistics
            # their sums across shards come in another order: a few eps; atol for means near 0
            np.testing.assert_allclose(s4[k], s1[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_nonfinite_updates_are_skipped_then_stop(dataset, tmp_path, capsys):
    args = list(TINY)
    args[args.index("--lr") + 1] = "1e38"
    code = run(["--dataset_folder", dataset, "--checkpoint_dir", tmp_path / "ck", "--epochs", 3,
                "--no_mlflow", "--max_nonfinite_steps", 2, *args])
    assert code == 3
    err = capsys.readouterr().err
    assert "non-finite" in err and "stopping at step" in err


@pytest.mark.parametrize("bad, expected", [
    (["--epochs", "0"], "--epochs"),
    (["--mask_type", "weird"], "--mask_type"),
    (["--codec_precision", "fp16"], "--codec_precision"),
    (["--codec", "encodec"], "--codec_weights"),
    (["--use_creative_agent", "true", "--use_compositional_agent", "true"], "mutually exclusive"),
    (["--dataset_folder", "/nonexistent/folder"], "--dataset_folder"),
    (["--creative_agent", "compositional", "--agent_options", "depth=2"],
     "--agent_options: the compositional agent has no option 'depth' (its options: "
     "component_dim, composer_layers, composer_heads)"),
    (["--creative_agent", "compositional", "--agent_options", "composer_heads=3"],
     "--agent_options: composer_heads: expected a divisor of the composer's width 512"),
    (["--creative_agent", "masking", "--agent_options", "component_dim=8"],
     "the masking agent has no option 'component_dim' (its options: none)"),
    (["--agent_options", "component_dim=8"], "--agent_options: no creative agent is on"),
    (["--use_compositional_agent", "true", "--num_transformer_layers", "1"],
     "--creative_agent compositional (or the original's --use_*_agent true) needs the cascade"),
    (["--use_creative_agent", "true", "--creative_agent", "compositional"], "disagree"),
])
def test_bad_flags_are_rejected_before_work(bad, expected, capsys, tmp_path):
    args = ["--builtin", "--checkpoint_dir", str(tmp_path / "x"), *bad]
    if bad[0] in ("--mask_type", "--codec_precision"):  # an unknown choice: argparse exits 2
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2
    else:
        assert main(args) == 2
    assert expected in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def _env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PROJECT) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def test_sigterm_leaves_a_usable_checkpoint(dataset, tmp_path):
    ckpt = tmp_path / "ck"
    cmd = [sys.executable, "-m", "jaxaudio.train", "--dataset_folder", str(dataset),
           "--checkpoint_dir", str(ckpt), "--epochs", "500", "--no_mlflow",
           *[str(a) for a in TINY]]
    proc = subprocess.Popen(cmd, env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=tmp_path)
    deadline = time.time() + 300
    while time.time() < deadline and not checkpoints_in(ckpt / "best_model"):
        time.sleep(0.5)
        assert proc.poll() is None, proc.stdout.read()
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    assert "Interrupted (SIGTERM)" in out
    meta = read_meta(ckpt / "interrupted_checkpoint")
    assert meta["step"] >= 1
    # The checkpoint resumes on the same single device (one more epoch than it had reached)...
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.trainer import fit

    args = ["--dataset_folder", str(dataset), "--checkpoint_dir", str(ckpt), "--no_mlflow",
            "--epochs", str(meta["position"]["epoch"] + 2), *[str(a) for a in TINY],
            "--resume", str(ckpt / "interrupted_checkpoint")]
    assert fit(parse_config(args), devices=jax.devices()[:1]) == 0
    assert history(ckpt)[-1]["epoch"] == meta["position"]["epoch"] + 2
    # ...and refuses, naming the reason, where the global batch would differ (4 devices).
    assert run(args) == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_and_stop_together(dataset, tmp_path):
    port = _free_port()
    procs = []
    for pid in range(2):
        # --stop_after_steps 1 asks to stop in the first epoch; the processes agree on it at
        # the epoch's end (4 steps), so both write the epoch and the interrupted checkpoint.
        cmd = [sys.executable, "-m", "jaxaudio.train", "--dataset_folder", str(dataset),
               "--checkpoint_dir", str(tmp_path / "ck"), "--epochs", "2", "--no_mlflow",
               "--stop_after_steps", "1", *[str(a) for a in TINY]]
        i = cmd.index("--batch_size")
        assert cmd[i + 1] == "1"  # 2 processes x 2 devices x 1 = the global batch of 4
        env = _env(JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(pid),
                   XLA_FLAGS="--xla_force_host_platform_device_count=2 --xla_backend_optimization_level=0")
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True, cwd=tmp_path))
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out
    assert "4 cpu device(s) in 2 process(es)" in outs[0]
    (row,) = history(tmp_path / "ck")
    assert np.isfinite(row["train_loss"]) and np.isfinite(row["val_loss"])
    assert checkpoints_in(tmp_path / "ck" / "best_model")
    assert read_meta(tmp_path / "ck" / "interrupted_checkpoint")["position"]["batch"] == 4
