"""Building what a run needs from its config: codec, data, model, discriminator, mesh."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxaudio.training.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

# The built-in synthetic set: a few hundred short pairs, made once.
BUILTIN_PAIRS = 240
BUILTIN_SECONDS = 1.5
DISC_HIDDEN_DIMS = (256, 512, 512, 256)  # the original's trainer


def build_codec(cfg: TrainConfig):
    from jaxaudio.codecs import CodecError, make_codec

    try:
        return make_codec(cfg.codec, cfg.codec_weights, cfg.encoding_dim)
    except CodecError as e:
        raise ConfigError(str(e)) from e


def ensure_builtin_dataset(cfg: TrainConfig) -> None:
    """Make the built-in synthetic dataset once (process 0; the others wait)."""
    if not cfg.makes_builtin_dataset:
        return
    from jaxaudio.data.synth import make_synthetic_dataset

    if jax.process_index() == 0:
        root = Path(cfg.dataset_folder)
        if (root / "train").is_dir() and (root / "val").is_dir():
            log.info("built-in run: using the dataset already in %s", root)
        elif root.exists() and any(root.iterdir()):
            raise ConfigError(f"{root} exists but holds no train/ and val/ folders; the built-in "
                              f"run makes its synthetic dataset there: move that folder away, or "
                              f"pass --dataset_folder")
        else:
            print(f"Making the built-in synthetic dataset in {root} "
                  f"({BUILTIN_PAIRS} pairs of {BUILTIN_SECONDS:g} s) ...", flush=True)
            make_synthetic_dataset(root, num_pairs=BUILTIN_PAIRS, duration=BUILTIN_SECONDS,
                                   seed=0, sample_rate=24000)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("jaxaudio-builtin-dataset")


def clip_samples(cfg: TrainConfig, codec) -> int:
    """Clip length in samples, a whole number of codec frames."""
    n = int(round(cfg.clip_seconds * codec.sample_rate))
    n -= n % codec.hop_length
    if n <= 0:
        raise ConfigError(f"--clip_seconds {cfg.clip_seconds} is shorter than one codec frame "
                          f"({codec.hop_length} samples at {codec.sample_rate} Hz)")
    return n


@dataclass
class Data:
    train: Any  # PairLoader
    val: Any  # PairLoader
    train_pairs: int
    val_pairs: int


def build_data(cfg: TrainConfig, codec, mesh: Mesh) -> Data:
    from jaxaudio.data.cache import build_cache
    from jaxaudio.data.loader import PairLoader, RawSource
    from jaxaudio.data.pairs import open_pair_folders

    n = clip_samples(cfg, codec)
    train_ds, val_ds = open_pair_folders(cfg.dataset_folder, sample_rate=codec.sample_rate,
                                         clip_samples=n, skip_bad_files=cfg.skip_bad_files)
    local = sum(1 for d in mesh.devices.flat if d.process_index == jax.process_index())
    per_process = cfg.batch_size * local
    global_batch = per_process * jax.process_count()
    if len(train_ds) < global_batch:
        raise ConfigError(f"--batch_size {cfg.batch_size}: one global batch ({cfg.batch_size} x "
                          f"{global_batch // cfg.batch_size} devices = {global_batch}) is larger "
                          f"than the {len(train_ds)} training pairs in {cfg.dataset_folder}/train")
    sources = []
    for ds in (train_ds, val_ds):
        if cfg.use_cache:
            cache_dir = Path(cfg.cache_dir or Path(cfg.dataset_folder) / ".jaxaudio_cache")
            if jax.process_index() == 0:
                cache = build_cache(ds, codec, cache_dir, batch_size=max(1, per_process))
            if jax.process_count() > 1:
                from jax.experimental import multihost_utils

                multihost_utils.sync_global_devices(f"jaxaudio-cache-{ds.folder.name}")
                if jax.process_index() != 0:
                    cache = build_cache(ds, codec, cache_dir, batch_size=max(1, per_process))
            sources.append(cache)
        else:
            sources.append(RawSource(ds))
    common = dict(seed=cfg.seed, process_index=jax.process_index(),
                  process_count=jax.process_count())
    train = PairLoader(sources[0], per_process, shuffle=True,
                       shuffle_targets=cfg.shuffle_targets, drop_last=True, **common)
    val = PairLoader(sources[1], per_process, shuffle=False, shuffle_targets=False,
                     drop_last=False, **common)
    return Data(train, val, len(train_ds), len(val_ds))


def build_model(cfg: TrainConfig):
    from jaxaudio.models.transformer import SimpleTransformer

    rngs = nnx.Rngs(params=cfg.seed)
    return SimpleTransformer(
        encoding_dim=cfg.encoding_dim, nhead=cfg.nhead, num_layers=cfg.num_layers,
        dropout=cfg.dropout, num_transformer_layers=cfg.num_transformer_layers,
        anti_cheating=cfg.anti_cheating, agent=cfg.agent,
        mask_gate=cfg.mask_gate, cascade_update=cfg.cascade_update, rngs=rngs,
        **cfg.agent_option_map)


def build_discriminator(cfg: TrainConfig):
    if cfg.gan_weight <= 0:
        return None
    from jaxaudio.models.discriminator import AudioDiscriminator

    return AudioDiscriminator(encoding_dim=cfg.encoding_dim, hidden_dims=DISC_HIDDEN_DIMS,
                              dropout=cfg.disc_dropout, rngs=nnx.Rngs(params=cfg.seed + 1))


def build_mesh(devices: list | None = None) -> Mesh:
    """Every device of every process (or the ``devices`` given) on one ``data`` axis."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), ("data",))


def make_to_global(mesh: Mesh, keys: tuple[str, ...]) -> Callable[[dict], dict]:
    """Turn this process's NumPy batch into global arrays sharded over ``data``."""
    sharding = NamedSharding(mesh, P("data"))

    def to_global(batch: dict) -> dict:
        out = {}
        for k in keys:
            if k in batch:
                out[k] = jax.make_array_from_process_local_data(sharding, np.asarray(batch[k]))
        return out

    return to_global


def replicate(tree: Any, mesh: Mesh) -> Any:
    sharding = NamedSharding(mesh, P())
    return jax.device_put(tree, sharding)


def load_trained_model(path: str | Path):
    """``(model, cfg, meta)`` from a jaxaudio training checkpoint folder, in eval-ready form.

    The model is rebuilt from the checkpoint's own configuration, so no flags are needed; its
    parameters and buffers (spectral-norm vectors, BatchNorm statistics) are the saved ones.
    """
    from jaxaudio.training import checkpoint as ckpt
    from jaxaudio.training.state import init_state

    meta = ckpt.read_meta(path)
    cfg = TrainConfig.from_dict(meta["config"])
    # Shapes only: a random initialisation would compile dozens of eager ops for weights that
    # are overwritten anyway.
    abstract = jax.eval_shape(
        lambda: init_state(cfg, build_model(cfg), build_discriminator(cfg))[0])
    graphdef, _ = nnx.split(nnx.eval_shape(lambda: build_model(cfg)))
    state, _ = ckpt.load_checkpoint(path, abstract)
    model = nnx.merge(graphdef, state.params, state.buffers)
    return model, cfg, meta
