"""Reading training checkpoints: find, verify, read the metadata, restore.

Written by :mod:`jaxaudio.training.checkpoint_manager` (orbax ``CheckpointManager``): a
checkpoint is an orbax step folder holding ``state/`` (the train state pytree), ``meta/``
(configuration, epoch, best loss, scheduler, data position, curriculum counter) and our
``checksums.json``::

    ckpt_dir/checkpoint_epoch_N/        every --save_every epochs (step = epoch)
    ckpt_dir/best_model/epoch_N/        the best validation loss so far (one kept)
    ckpt_dir/interrupted_checkpoint/step_S/   after SIGINT/SIGTERM (one kept; S = optimizer step)

``checksums.json`` holds the size and CRC-32 of every file orbax wrote (the state and the
metadata); they are checked before a restore (:func:`verify_checkpoint`), so a truncated,
garbled or edited file is reported as a damaged checkpoint naming the file, not as a
configuration mismatch.

Checkpoints of the earlier layout (a folder with ``state/``, ``meta.json`` and ``COMPLETE``,
see :mod:`jaxaudio.training.checkpoint_legacy`) are still found and restored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxaudio.training import checkpoint_legacy as legacy
from jaxaudio.training.checkpoint_legacy import COMPLETE, META  # noqa: F401 (re-exported)

ORBAX_META = "_CHECKPOINT_METADATA"
CHECKSUMS = "checksums.json"
FORMAT = "jaxaudio-train-checkpoint/1"
TMP_MARK = ".orbax-checkpoint-tmp"
STEP_NAME = re.compile(r"^(?P<prefix>[A-Za-z_]+)_(?P<step>\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete or of another configuration."""


def is_managed(path: Path) -> bool:
    """A finished orbax step folder (orbax renames it from its temporary name when done)."""
    return (STEP_NAME.match(path.name) is not None and TMP_MARK not in path.name
            and (path / ORBAX_META).is_file() and (path / "state").is_dir())


def is_checkpoint(path: Path) -> bool:
    return path.is_dir() and (is_managed(path) or (path / COMPLETE).exists())


def checkpoints_in(folder: Path) -> list[Path]:
    """The finished checkpoints in ``folder`` and in its sub-folders (one level)."""
    if not folder.is_dir():
        return []
    found = []
    for d in sorted(folder.iterdir()):
        if d.name.startswith(".") or not d.is_dir():
            continue
        if is_checkpoint(d):
            found.append(d)
        else:
            found += [g for g in sorted(d.iterdir()) if is_checkpoint(g)]
    return found


def meta_file(path: Path) -> Path:
    return path / META if (path / COMPLETE).exists() else path / "meta" / "metadata"


def _crc32(path: Path) -> str:
    crc = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            crc = zlib.crc32(chunk, crc)
    return f"crc32:{crc:08x}"


def checksums(path: Path) -> dict[str, dict[str, Any]]:
    """Size and CRC-32 of every file of a checkpoint's ``state/`` and ``meta/``, by path."""
    return {str(p.relative_to(path)): {"size": p.stat().st_size, "crc": _crc32(p)}
            for sub in ("state", "meta") for p in sorted((path / sub).rglob("*"))
            if p.is_file()}


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
                       f"(truncated, overwritten or edited)")
        elif _crc32(file) != want["crc"]:
            problem = "does not match the checksum made when it was written (edited or garbled)"
        else:
            continue
        raise CheckpointError(f"{file}: damaged checkpoint: this file {problem}. Use another "
                              f"checkpoint of the run (checkpoint_epoch_N/, best_model/)")


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint ``path`` names: itself; the one renamed aside by an interrupted swap of
    the earlier layout; or, for a folder holding checkpoints (``best_model/``,
    ``interrupted_checkpoint/``, a ``--checkpoint_dir``), its newest finished one."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    aside = legacy.renamed_aside(path)
    if aside is not None:
        return aside
    if path.is_dir():
        inside = checkpoints_in(path)
        if inside:
            return max(inside, key=lambda d: (_step_of(d), d.stat().st_mtime))
        if not (path / "state").exists():
            raise CheckpointError(f"{path}: neither a checkpoint (best_model/, "
                                  f"checkpoint_epoch_N/, interrupted_checkpoint/) nor a folder "
                                  f"holding one")
        raise CheckpointError(f"{path}: incomplete checkpoint; it was not finished and cannot "
                              f"be used")
    raise CheckpointError(f"{path}: no such checkpoint")


def _step_of(path: Path) -> int:
    try:
        return int(json.loads(meta_file(path).read_text()).get("step", -1))
    except (OSError, ValueError):
        return -1


def read_meta(path: str | Path) -> dict[str, Any]:
    path = resolve_checkpoint(path)
    try:
        meta = json.loads(meta_file(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{meta_file(path)}: unreadable checkpoint metadata ({e})") from e
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a jaxaudio training checkpoint "
                              f"(format {meta.get('format')!r}, expected {FORMAT!r})")
    return meta


def _first_line(e: Exception, limit: int = 200) -> str:
    """The gist of an orbax/TensorStore error, without its multi-line spec dump."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return text if len(text) <= limit else text[:limit] + " ..."


def _restore_managed(path: Path, abstract: Any) -> Any:
    import orbax.checkpoint as ocp

    m = STEP_NAME.match(path.name)
    options = ocp.CheckpointManagerOptions(step_prefix=m["prefix"], read_only=True,
                                           enable_async_checkpointing=False)
    with ocp.CheckpointManager(path.parent.absolute(), options=options) as manager:
        restored = manager.restore(int(m["step"]), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))
    return restored.state


def _restore(path: Path, abstract: Any) -> Any:
    """The state in ``abstract``'s structure. Checkpoints written before the adaptive
    discriminator noise existed (both layouts) have no ``disc_noise``: it starts at 0, where a
    new run starts it."""
    noise = getattr(abstract, "disc_noise", None)
    if not is_managed(path):
        state = legacy.restore(path, abstract)  # the earlier layout never had it
    else:
        try:
            return _restore_managed(path, abstract)
        except Exception as e:
            if noise is None:
                raise
            # Perhaps a saved tree without a ``disc_noise`` node: its fields by name.
            fields = {f.name: getattr(abstract, f.name) for f in dataclasses.fields(abstract)
                      if f.name != "disc_noise"}
            try:
                state = dataclasses.replace(abstract, **_restore_managed(path, fields),
                                            disc_noise=None)
            except Exception:
                raise e from None
    if noise is not None and state.disc_noise is None:
        zero = jnp.zeros(noise.shape, noise.dtype)
        if getattr(noise, "sharding", None) is not None:
            zero = jax.device_put(zero, noise.sharding)
        state = dataclasses.replace(state, disc_noise=zero)
    return state


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
        state = _restore(path, abstract)
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
