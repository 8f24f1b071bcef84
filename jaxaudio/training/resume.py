"""What a resume checks before any work: the checkpoint, its configuration, its dataset.

:func:`check_resume` runs right after the flags are parsed (it reads the metadata and hashes
the dataset's files, which the latent cache remembers), so a checkpoint of another
configuration or other data is refused before the data is loaded or anything compiled.

A dataset is recognised by its contents (the content hash of every pair file, the latent
cache's): a copy of it elsewhere is the same dataset, and a folder whose files were replaced,
added or removed is not, whatever their names and sizes. Checkpoints written before content
hashes existed are compared by the resolved path, or the names and sizes of the pair files.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jaxaudio.training import checkpoint as ckpt
from jaxaudio.training.config import TrainConfig

# Flags whose change makes a checkpoint's arrays or meaning incompatible (the dataset is
# compared by identity, see the module docstring).
SHAPE_KEYS = ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "agent",
              "agent_options", "codec", "seed", "batch_size", "clip_seconds", "shuffle_targets",
              "mask_gate", "cascade_update")


@dataclass
class Resume:
    """A checked resume: the checkpoint, its metadata, the dataset now, and how it changed
    (None: the checkpoint's own)."""

    path: Path
    meta: dict[str, Any]
    dataset: dict[str, Any]
    dataset_changed: str | None


def digest_memo_path(cfg: TrainConfig) -> Path:
    """Where a run remembers its dataset's content hashes: the latent cache's table, or, with
    the cache off, one in the checkpoint folder (never inside the dataset)."""
    if cfg.use_cache:
        return cfg.cache_path / "digests.json"
    return Path(cfg.checkpoint_dir) / "dataset_digests.json"


def dataset_identity(folder: str | Path, memo_path: str | Path) -> dict[str, Any]:
    """What a checkpoint records of its dataset: ``path`` (resolved), ``fingerprint`` (the
    pair files' names and sizes, as earlier versions recorded), ``files`` (each pair file's
    content hash, ``split/name``) and ``content`` (one hash of them all).

    The hashes are remembered in ``memo_path`` (:class:`~jaxaudio.data.digests.DigestMemo`,
    see :func:`digest_memo_path`): a file is read again only when its size, times or inode
    changed.
    """
    from jaxaudio.data.digests import DigestMemo

    root = Path(folder).resolve()
    memo = DigestMemo(Path(memo_path))
    names, files = hashlib.blake2b(digest_size=16), {}
    for split in ("train", "val"):
        d = root / split
        if not d.is_dir():
            continue
        for p in sorted(d.iterdir()):
            if p.suffix.lower() == ".wav" and p.is_file():
                names.update(json.dumps([split, p.name, p.stat().st_size]).encode())
                files[f"{split}/{p.name}"] = memo.digest(p)
    try:
        memo.save()
    except OSError:  # a read-only folder: the hashes are made again next time
        pass
    content = hashlib.blake2b(json.dumps(files, sort_keys=True).encode(), digest_size=16)
    return {"path": str(root), "fingerprint": names.hexdigest(), "files": files,
            "content": content.hexdigest()}


def dataset_changes(theirs: dict[str, Any], ours: dict[str, Any], limit: int = 4) -> str:
    """What differs between two identities' files, in a few words (``""``: nothing)."""
    a, b = theirs.get("files") or {}, ours.get("files") or {}
    parts = []
    for what, names in (("changed", [n for n in sorted(a) if n in b and a[n] != b[n]]),
                        ("added", sorted(set(b) - set(a))),
                        ("removed", sorted(set(a) - set(b)))):
        if names:
            shown = ", ".join(names[:limit]) + (f" and {len(names) - limit} more"
                                                if len(names) > limit else "")
            parts.append(f"{len(names)} {what} ({shown})")
    return "; ".join(parts)


def dataset_difference(meta: dict[str, Any], saved: dict[str, Any],
                       ours: dict[str, Any]) -> str | None:
    """Why the dataset of ``ours`` is not the checkpoint's, or None when it is the same.

    Checkpoints that recorded content hashes are compared by content, wherever the folder
    lies; earlier ones by the resolved path or the names and sizes of the pair files."""
    theirs = meta.get("dataset")
    if theirs is None:  # a checkpoint from before identities: its path, resolved here
        theirs = {"path": str(Path(saved.get("dataset_folder") or "").resolve())}
    if "content" in theirs:
        if theirs["content"] == ours["content"]:
            return None
        return (f"--dataset_folder {ours['path']}: its contents differ from the dataset the "
                f"checkpoint was trained on ({theirs.get('path')}): "
                f"{dataset_changes(theirs, ours) or 'other files'}")
    if theirs.get("path") != ours["path"] and theirs.get("fingerprint") != ours["fingerprint"]:
        return (f"--dataset_folder: checkpoint {theirs.get('path')}, now {ours['path']} "
                f"(another folder with other pair files)")
    return None


def config_differences(saved: dict[str, Any], cfg: TrainConfig) -> list[str]:
    then = TrainConfig.from_dict(saved)  # a saved configuration as it meant (earlier versions')
    flag = {"agent": "creative_agent"}
    diffs = [f"--{flag.get(k, k)}: checkpoint {getattr(then, k)!r}, now {getattr(cfg, k)!r}"
             for k in SHAPE_KEYS if getattr(then, k) != getattr(cfg, k)]
    if (saved.get("gan_weight", 0) > 0) != (cfg.gan_weight > 0):
        diffs.append("--gan_weight: one run has a discriminator and the other not")
    return diffs


def remove_leftovers(cfg: TrainConfig) -> None:
    """What killed runs left: unfinished checkpoint saves, an unfinished built-in dataset."""
    import jax

    from jaxaudio.data.staging import remove_stale_stages
    from jaxaudio.training.checkpoint_manager import remove_stale_temps

    remove_stale_temps(cfg.checkpoint_dir)
    if cfg.makes_builtin_dataset and jax.process_index() == 0:
        remove_stale_stages(cfg.dataset_folder)


def check_resume(cfg: TrainConfig) -> Resume | None:
    """The checkpoint ``--resume`` names, checked, or None without ``--resume``.

    Raises :class:`~jaxaudio.training.checkpoint.CheckpointError` naming the checkpoint when
    it is missing, unfinished, damaged, its metadata edited, of another configuration, or
    trained on other data (unless ``--allow_dataset_change``: then the best-model comparison
    starts again).
    """
    if not cfg.resume:
        return None
    from jaxaudio.training.checkpoint_meta import validate_meta

    path = ckpt.resolve_checkpoint(cfg.resume)
    meta = ckpt.read_meta(path)
    validate_meta(meta, ckpt.meta_file(path))  # names an edited field; the checksums, a file
    ckpt.verify_checkpoint(path)
    saved = meta["config"]
    diffs = config_differences(saved, cfg)
    if diffs:
        raise ckpt.CheckpointError(f"{path}: cannot resume with a different configuration:\n  "
                                   + "\n  ".join(diffs))
    ours = dataset_identity(cfg.dataset_folder, digest_memo_path(cfg))
    changed = dataset_difference(meta, saved, ours)
    if changed and not cfg.allow_dataset_change:
        raise ckpt.CheckpointError(
            f"{path}: cannot resume on other data: {changed}. Train on the checkpoint's "
            f"dataset, or pass --allow_dataset_change to continue on this one (the best "
            f"model is then chosen afresh on its validation set)")
    return Resume(path, meta, ours, changed)
