"""The core install (``pip install jaxaudio``, no extra) holds the losses, models, agents and
codecs; the trainer's stack (checkpoints, tracking, audio files, plots, datasets) comes with the
``train`` extra. Checked two ways: the declared dependencies, and a fresh interpreter in which
the trainer's packages cannot be imported running a loss, its gradient and a codec."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
TRAINER_ONLY = ("orbax", "mlflow", "matplotlib", "tqdm", "soundfile", "librosa", "tensorstore")


def _name(requirement: str) -> str:
    return requirement.split(">")[0].split("=")[0].split("[")[0].split("<")[0].strip().lower()


def test_the_core_declares_none_of_the_trainers_packages():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    core = {_name(r) for r in project["dependencies"]}
    assert core == {"jax", "flax", "optax", "numpy", "scipy", "safetensors"}
    train = {_name(r) for r in project["optional-dependencies"]["train"]}
    assert {"orbax-checkpoint", "mlflow", "matplotlib", "tqdm", "soundfile", "librosa"} <= train


PROBE = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {TRAINER_ONLY!r}:
            raise ImportError("not in the core install: " + name)
sys.meta_path.insert(0, Block())
import jax, jax.numpy as jnp, numpy as np
from jaxaudio import losses
from jaxaudio.codecs.mdct import MDCTCodec
from jaxaudio.models.transformer import SimpleTransformer
import jaxaudio.agents.registry, jaxaudio.codecs.encodec
x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 4800)), jnp.float32)
y = 0.5 * x[:, ::-1]
value, grad = jax.value_and_grad(
    lambda p: losses.combined_loss(p, x, y, 0.3, 0.3, 0.01, 0.01, sample_rate=16000).total)(x)
codec = MDCTCodec(128)
latents = codec.encode(x[:, None, :])
mel = losses.mel_stft_loss(x, y, sample_rate=16000)
assert np.isfinite(float(value)) and np.isfinite(np.asarray(grad)).all() and np.isfinite(float(mel))
print("core ok", sorted(m for m in sys.modules if m.split(".")[0] in {TRAINER_ONLY!r}))
"""


def test_losses_models_and_codecs_run_without_the_trainers_packages():
    env = dict(os.environ, PYTHONPATH=str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                          env=env, timeout=300, cwd=PROJECT)
    assert proc.returncode == 0, proc.stderr
    assert "core ok []" in proc.stdout


def test_training_without_the_train_extra_says_what_to_install():
    # tqdm and soundfile as if not installed: find_spec answers None for them.
    probe = ("import importlib.util, sys\n"
             "real = importlib.util.find_spec\n"
             "importlib.util.find_spec = lambda n, *a: None if n in ('tqdm', 'soundfile') "
             "else real(n, *a)\n"
             "from jaxaudio.train import main\n"
             "sys.exit(main(['--builtin']))\n")
    env = dict(os.environ, PYTHONPATH=str(PROJECT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          env=env, timeout=120, cwd=PROJECT)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: training needs tqdm, soundfile, which the core "
                                   "install leaves out: pip install 'jaxaudio[train]'")
