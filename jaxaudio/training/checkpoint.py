"""Checkpoints that a crash can never damage.

A checkpoint is a folder: ``state/`` (the train state pytree, written by orbax) and
``meta.json`` (configuration, epoch, best loss, scheduler, data position, curriculum counter).
It is written under a temporary name, completed with a ``COMPLETE`` marker, and only then
swapped in: the previous checkpoint of the same name is renamed aside first and removed last,
so at every instant one complete checkpoint exists (``load`` falls back to the renamed-aside one
if a crash hit between the two renames). Every process calls :func:`save_checkpoint` (orbax
writes sharded arrays from all of them); only process 0 writes ``meta.json`` and renames.

::

    ckpt_dir/.best_model.tmp-ab12/   <- written, fsynced, COMPLETE
    ckpt_dir/best_model/             -> ckpt_dir/.best_model.old-ab12/   (rename 1)
    ckpt_dir/.best_model.tmp-ab12/   -> ckpt_dir/best_model/             (rename 2)
    ckpt_dir/.best_model.old-ab12/   removed
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import jax

COMPLETE = "COMPLETE"
META = "meta.json"
FORMAT = "jaxaudio-train-checkpoint/1"


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or of another configuration."""


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer()


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sync(tag: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(tag)


def save_checkpoint(directory: str | Path, name: str, state: Any, meta: dict[str, Any]) -> Path:
    """Write ``directory/name`` atomically (see the module docstring). Returns its path."""
    directory = Path(directory)
    final = directory / name
    token = uuid.uuid4().hex[:8] if jax.process_count() == 1 else f"{meta.get('step', 0)}"
    tmp = directory / f".{name}.tmp-{token}"
    old = directory / f".{name}.old-{token}"
    if jax.process_index() == 0:
        directory.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
    _sync(f"jaxaudio-ckpt-prepare-{name}")
    ckptr = _checkpointer()
    ckptr.save(tmp.absolute() / "state", state)
    ckptr.wait_until_finished()
    _sync(f"jaxaudio-ckpt-written-{name}")
    if jax.process_index() == 0:
        _write_json(tmp / META, {"format": FORMAT, **meta})
        (tmp / COMPLETE).write_text("ok\n")
        _fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        _fsync_dir(directory)
        if old.exists():
            (old / COMPLETE).unlink(missing_ok=True)  # never a fallback once half-deleted
            shutil.rmtree(old, ignore_errors=True)
    _sync(f"jaxaudio-ckpt-done-{name}")
    return final


def resolve_checkpoint(path: str | Path) -> Path:
    """The complete checkpoint at ``path``; the one renamed aside by an interrupted swap; or,
    for a checkpoint directory (``--checkpoint_dir``), its newest complete checkpoint."""
    path = Path(path)
    if (path / COMPLETE).exists():
        return path
    aside = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for cand in reversed(aside):
        if (cand / COMPLETE).exists():
            return cand
    if path.is_dir():
        inside = [d for d in path.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and (d / COMPLETE).exists()]
        if inside:
            return max(inside, key=lambda d: (_step_of(d), d.stat().st_mtime))
        if not (path / "state").exists():
            raise CheckpointError(f"{path}: neither a checkpoint (best_model/, "
                                  f"checkpoint_epoch_N/, interrupted_checkpoint/) nor a folder "
                                  f"holding one")
        raise CheckpointError(f"{path}: incomplete checkpoint (no {COMPLETE} marker); it was "
                              f"not finished and cannot be used")
    raise CheckpointError(f"{path}: no such checkpoint")


def _step_of(path: Path) -> int:
    try:
        return int(json.loads((path / META).read_text()).get("step", -1))
    except (OSError, ValueError):
        return -1


def read_meta(path: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        meta = json.loads((path / META).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path / META}: unreadable checkpoint metadata ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a jaxaudio training checkpoint "
                              f"(format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def load_checkpoint(path: str | Path, target: Any) -> tuple[Any, dict[str, Any]]:
    """Restore the state into the structure, dtypes and shardings of ``target``.

    Raises :class:`CheckpointError` naming the checkpoint when it is incomplete or its arrays
    do not match ``target`` (a checkpoint of another configuration).
    """
    import orbax.checkpoint as ocp

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
        state = _checkpointer().restore((path / "state").absolute(), abstract)
    except Exception as e:  # orbax raises several types for structure/shape mismatches
        raise CheckpointError(
            f"{path}: its arrays do not match this configuration ({type(e).__name__}: {e}). "
            f"Was it written with other model flags?") from e
    return state, meta
