"""Checkpoints that a crash can never damage.

A checkpoint is a folder: ``state/`` (the train state pytree, written by orbax) and
``meta.json`` (configuration, epoch, best loss, scheduler, data position, curriculum counter).
It is written under a temporary name, completed with a ``COMPLETE`` marker, and only then
swapped in: the previous checkpoint of the same name is renamed aside first and removed last,
so at every instant one complete checkpoint exists (``load`` falls back to the renamed-aside one
if a crash hit between the two renames). Every process calls :func:`save_checkpoint` (orbax
writes sharded arrays from all of them); only process 0 writes ``meta.json`` and renames.

``checksums.json`` holds the size and CRC-32 of every file orbax wrote; they are checked
before a restore (:func:`verify_checkpoint`), so a truncated or garbled file is reported as a
damaged checkpoint naming the file, not as a configuration mismatch. A save killed midway
leaves ``.NAME.tmp-*`` (marked with its writer in ``OWNER``); the next run's
:func:`remove_stale_temps` deletes it, and puts back a ``.NAME.old-*`` whose swap was cut
between its two renames.

::

    ckpt_dir/.best_model.tmp-ab12/   <- written, fsynced, COMPLETE
    ckpt_dir/best_model/             -> ckpt_dir/.best_model.old-ab12/   (rename 1)
    ckpt_dir/.best_model.tmp-ab12/   -> ckpt_dir/best_model/             (rename 2)
    ckpt_dir/.best_model.old-ab12/   removed
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
import zlib
from pathlib import Path
from typing import Any

import jax

from jaxaudio.data.durable import fault_point, is_stale, remove_tree, write_owner

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
META = "meta.json"
CHECKSUMS = "checksums.json"
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
        tmp.mkdir()
        write_owner(tmp)
    _sync(f"jaxaudio-ckpt-prepare-{name}")
    ckptr = _checkpointer()
    ckptr.save(tmp.absolute() / "state", state)
    ckptr.wait_until_finished()
    _sync(f"jaxaudio-ckpt-written-{name}")
    if jax.process_index() == 0:
        fault_point("checkpoint-save")
        _write_json(tmp / CHECKSUMS, _checksums(tmp / "state"))
        _write_json(tmp / META, {"format": FORMAT, **meta})
        (tmp / "OWNER").unlink(missing_ok=True)
        (tmp / COMPLETE).write_text("ok\n")
        _fsync_dir(tmp)
        if final.exists():
            os.replace(final, old)
        fault_point("checkpoint-swap")
        os.replace(tmp, final)
        _fsync_dir(directory)
        if old.exists():
            (old / COMPLETE).unlink(missing_ok=True)  # never a fallback once half-deleted
            shutil.rmtree(old, ignore_errors=True)
    _sync(f"jaxaudio-ckpt-done-{name}")
    return final


def _crc32(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def _checksums(state_dir: Path) -> dict[str, dict[str, Any]]:
    return {str(p.relative_to(state_dir.parent)): {"size": p.stat().st_size, "crc": _crc32(p)}
            for p in sorted(state_dir.rglob("*")) if p.is_file()}


def verify_checkpoint(path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first missing, truncated or changed file of
    the checkpoint at ``path``. Checkpoints written before checksums existed pass."""
    path = Path(path)
    try:
        table = json.loads((path / CHECKSUMS).read_text())
    except FileNotFoundError:
        return
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path / CHECKSUMS}: damaged checkpoint: unreadable checksum "
                              f"table ({e})") from None
    for rel, want in sorted(table.items()):
        file = path / rel
        if not file.is_file():
            problem = "is missing"
        elif file.stat().st_size != want["size"]:
            problem = (f"has {file.stat().st_size} bytes, {want['size']} were written "
                       f"(truncated or overwritten)")
        elif _crc32(file) != want["crc"]:
            problem = "does not match the checksum made when it was written (garbled)"
        else:
            continue
        raise CheckpointError(f"{file}: damaged checkpoint: this file {problem}. Use another "
                              f"checkpoint of the run (checkpoint_epoch_N/, best_model/)")


def remove_stale_temps(directory: str | Path) -> None:
    """Clean up after saves that were killed: delete ``.NAME.tmp-*`` folders whose writer is
    gone; put a complete ``.NAME.old-*`` back as ``NAME`` when the swap was cut before
    ``NAME`` reappeared, and delete it when ``NAME`` is complete. Process 0 only."""
    directory = Path(directory)
    if jax.process_index() != 0 or not directory.is_dir():
        return
    for d in sorted(directory.iterdir()):
        if not d.is_dir() or not d.name.startswith("."):
            continue
        base, sep, _ = d.name[1:].rpartition(".tmp-")
        if sep and is_stale(d):
            log.info("removing %s, left by a checkpoint save that did not finish", d)
            remove_tree(d)
            continue
        base, sep, _ = d.name[1:].rpartition(".old-")
        if not sep:
            continue
        final = directory / base
        if (final / COMPLETE).exists():
            log.info("removing %s, the previous %s kept by a save that did not finish", d, base)
            remove_tree(d)
        elif not final.exists() and (d / COMPLETE).exists():
            log.info("restoring %s from %s, renamed aside by a save that did not finish",
                     final, d)
            os.replace(d, final)


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


def _first_line(e: Exception, limit: int = 200) -> str:
    """The gist of an orbax/TensorStore error, without its multi-line spec dump."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def load_checkpoint(path: str | Path, target: Any, *,
                    verify: bool = True) -> tuple[Any, dict[str, Any]]:
    """Restore the state into the structure, dtypes and shardings of ``target``.

    Raises :class:`CheckpointError` naming the checkpoint (and the file, when a file is
    damaged) when it is incomplete, damaged, or its arrays do not match ``target`` (a
    checkpoint of another configuration). ``verify=False`` skips the checksums (already
    checked by the caller).
    """
    import orbax.checkpoint as ocp

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    if verify:
        verify_checkpoint(path)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
        state = _checkpointer().restore((path / "state").absolute(), abstract)
    except Exception as e:  # orbax raises several types for structure/shape mismatches
        if (path / CHECKSUMS).exists():  # the files are intact: the structure differs
            raise CheckpointError(
                f"{path}: its arrays do not match this configuration ({type(e).__name__}: "
                f"{_first_line(e)}). Was it written with other model flags?") from None
        raise CheckpointError(
            f"{path}: cannot be restored ({type(e).__name__}: {_first_line(e)}); it was "
            f"written without checksums, so either a file in {path / 'state'} is damaged or "
            f"it was written with other model flags") from None
    return state, meta
