"""What a resume checks before any work: the checkpoint, its configuration, its dataset.

:func:`check_resume` runs right after the flags are parsed (a few milliseconds: it reads
``meta.json`` and lists the dataset's folders), so a checkpoint of another configuration is
refused before the data is loaded or anything compiled.

A dataset is recognised by what it is, not by how its path was typed: ``data/big``,
``data/big/``, an absolute path, or the same folder reached from another working directory
are one dataset (same resolved path), and so is a copy of it elsewhere (same fingerprint:
the names and sizes of its pair files).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from jaxaudio.training import checkpoint as ckpt
from jaxaudio.training.config import TrainConfig

# Flags whose change makes a checkpoint's arrays or meaning incompatible (the dataset is
# compared by identity, see the module docstring).
SHAPE_KEYS = ("encoding_dim", "nhead", "num_layers", "num_transformer_layers",
              "use_creative_agent", "use_compositional_agent", "codec", "seed", "batch_size",
              "clip_seconds", "shuffle_targets", "creative_agent", "mask_gate", "cascade_update")
# What a checkpoint written before a key existed meant by it.
OLD_DEFAULTS = {"mask_gate": "learned", "creative_agent": None, "cascade_update": "additive"}


def dataset_identity(folder: str | Path) -> dict[str, Any]:
    """``{"path": resolved path, "fingerprint": hash of the pair files' names and sizes}``."""
    root = Path(folder).resolve()
    h = hashlib.blake2b(digest_size=16)
    for split in ("train", "val"):
        d = root / split
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() == ".wav" and p.is_file():
                h.update(json.dumps([split, p.name, p.stat().st_size]).encode())
    return {"path": str(root), "fingerprint": h.hexdigest()}


def config_differences(saved: dict[str, Any], meta: dict[str, Any],
                       cfg: TrainConfig) -> list[str]:
    diffs = [f"--{k}: checkpoint {saved.get(k)!r}, now {getattr(cfg, k)!r}"
             for k in SHAPE_KEYS if saved.get(k, OLD_DEFAULTS.get(k)) != getattr(cfg, k)]
    if (saved.get("gan_weight", 0) > 0) != (cfg.gan_weight > 0):
        diffs.append("--gan_weight: one run has a discriminator and the other not")
    ours = dataset_identity(cfg.dataset_folder)
    theirs = meta.get("dataset")
    if theirs is None:  # a checkpoint from before identities: its path, resolved here
        theirs = {"path": str(Path(saved.get("dataset_folder") or "").resolve())}
    if theirs.get("path") != ours["path"] and theirs.get("fingerprint") != ours["fingerprint"]:
        diffs.append(f"--dataset_folder: checkpoint {theirs.get('path')}, now {ours['path']} "
                     f"(another folder with other pair files)")
    return diffs


def remove_leftovers(cfg: TrainConfig) -> None:
    """What killed runs left: unfinished checkpoint saves, an unfinished built-in dataset."""
    import jax

    from jaxaudio.data.staging import remove_stale_stages
    from jaxaudio.training.checkpoint_manager import remove_stale_temps

    remove_stale_temps(cfg.checkpoint_dir)
    if cfg.makes_builtin_dataset and jax.process_index() == 0:
        remove_stale_stages(cfg.dataset_folder)


def check_resume(cfg: TrainConfig) -> tuple[Path, dict[str, Any]] | None:
    """The checkpoint ``--resume`` names and its metadata, or None without ``--resume``.

    Raises :class:`~jaxaudio.training.checkpoint.CheckpointError` naming the checkpoint when
    it is missing, unfinished, damaged or of another configuration.
    """
    if not cfg.resume:
        return None
    path = ckpt.resolve_checkpoint(cfg.resume)
    meta = ckpt.read_meta(path)
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise ckpt.CheckpointError(f"{path / ckpt.META}: no 'config' entry; expected the "
                                   f"configuration the checkpoint was trained with")
    ckpt.verify_checkpoint(path)
    diffs = config_differences(saved, meta, cfg)
    if diffs:
        raise ckpt.CheckpointError(f"{path}: cannot resume with a different configuration:\n  "
                                   + "\n  ".join(diffs))
    return path, meta
