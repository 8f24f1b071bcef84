"""Writing a run's checkpoints with orbax ``CheckpointManager`` (layout: see
:mod:`jaxaudio.training.checkpoint`).

Three managers, one per kind, each with its own step and preservation policy:

=============== ================================ ======= ==========================================
kind            folder                           step    kept
=============== ================================ ======= ==========================================
``periodic``    ``checkpoint_epoch_N/``          epoch   all (written every ``--save_every`` epochs)
``best``        ``best_model/epoch_N/``          epoch   the lowest ``val_loss`` (``best_fn``, 1)
``interrupted`` ``interrupted_checkpoint/step_S`` step   the latest one
=============== ================================ ======= ==========================================

orbax writes a step under a temporary name and renames it when finished, so a crash while
saving never damages an earlier checkpoint; a new best is written before the previous best is
removed. A save killed midway leaves ``*.orbax-checkpoint-tmp-*``, removed at the next start
(:func:`remove_stale_temps`). After orbax finishes, process 0 adds ``checksums.json`` (of ``state/`` and ``meta/``).

Resuming an older checkpoint abandons the later ones: a save at step S first removes that
manager's steps from S on (the earlier layout overwrote them by name).
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import jax

from jaxaudio.data.atomic_files import atomic_write_text, fault_point, remove_tree
from jaxaudio.training import checkpoint_legacy as legacy
from jaxaudio.training.checkpoint import CHECKSUMS, FORMAT, TMP_MARK, checksums

log = logging.getLogger(__name__)

BEST, INTERRUPTED = "best_model", "interrupted_checkpoint"
# kind: (sub-folder of the run's folder, step prefix, options)
KINDS = {
    "periodic": (None, "checkpoint_epoch", {}),
    "best": (BEST, "epoch", dict(best_fn=lambda m: m["val_loss"], best_mode="min",
                                 max_to_keep=1, keep_checkpoints_without_metrics=False)),
    "interrupted": (INTERRUPTED, "step", dict(max_to_keep=1)),
}


@functools.cache
def _meta_save_type():
    """orbax's JSON item through a handler with a fault-injection point (the tests kill a
    save there, after orbax started writing and before it finishes)."""
    import orbax.checkpoint as ocp

    class _MetaHandler(ocp.JsonCheckpointHandler):
        async def async_save(self, directory, *args, **kwargs):
            fault_point("checkpoint-save")
            return await super().async_save(directory, *args, **kwargs)

    @ocp.args.register_with_handler(_MetaHandler, for_save=True)
    class _MetaSave(ocp.args.JsonSave):
        pass

    @ocp.args.register_with_handler(_MetaHandler, for_restore=True)
    class _MetaRestore(ocp.args.JsonRestore):  # orbax asks for one (reads use JsonRestore)
        pass

    return _MetaSave


def _sync(tag: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(tag)


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True))


class RunCheckpoints:
    """The checkpoints of one run in ``directory`` (``--checkpoint_dir``)."""

    def __init__(self, directory: str | Path):
        self.root = Path(directory)
        self._managers: dict[str, Any] = {}

    def manager(self, kind: str):
        import orbax.checkpoint as ocp

        if kind not in self._managers:
            sub, prefix, extra = KINDS[kind]
            folder = self.root / sub if sub else self.root
            if sub:
                self._move_legacy(folder)
            options = ocp.CheckpointManagerOptions(
                step_prefix=prefix, enable_async_checkpointing=False,
                save_root_metadata=False, **extra)
            self._managers[kind] = ocp.CheckpointManager(folder.absolute(), options=options)
        return self._managers[kind]

    def _move_legacy(self, folder: Path) -> None:
        """An earlier-layout checkpoint where this kind's folder goes (a run resumed from
        the earlier layout) is kept as ``legacy_NAME/`` (still found by ``--resume DIR``)."""
        if jax.process_index() == 0 and (folder / legacy.COMPLETE).exists():
            aside, n = folder.with_name(f"legacy_{folder.name}"), 1
            while aside.exists():
                aside, n = folder.with_name(f"legacy_{folder.name}_{n}"), n + 1
            log.info("keeping the earlier-layout checkpoint %s as %s", folder, aside)
            os.replace(folder, aside)
        _sync(f"jaxaudio-ckpt-legacy-{folder.name}")

    def path(self, kind: str, step: int) -> Path:
        sub, prefix, _ = KINDS[kind]
        return (self.root / sub if sub else self.root) / f"{prefix}_{step}"

    def save(self, kind: str, step: int, state: Any, meta: dict[str, Any],
             metrics: dict[str, float] | None = None) -> Path:
        """Write ``state`` and ``meta`` as step ``step`` of ``kind``; every process calls it
        (orbax writes sharded arrays from all of them). Returns the checkpoint's path."""
        import orbax.checkpoint as ocp

        manager = self.manager(kind)
        for old in manager.all_steps():
            if old >= step:  # a later timeline, abandoned by resuming an older checkpoint
                manager.delete(old)
        manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=_meta_save_type()({"format": FORMAT, **meta})),
            metrics=metrics, force=True)
        manager.wait_until_finished()
        path = self.path(kind, step)
        if jax.process_index() == 0:
            _write_json(path / CHECKSUMS, checksums(path))
        _sync(f"jaxaudio-ckpt-done-{kind}-{step}")
        return path

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()


def remove_stale_temps(directory: str | Path) -> None:
    """Delete what killed saves left (orbax's temporary step folders; the earlier layout's
    temporary and renamed-aside folders). Process 0 only."""
    directory = Path(directory)
    if jax.process_index() != 0 or not directory.is_dir():
        return
    for folder in (directory, directory / BEST, directory / INTERRUPTED):
        if not folder.is_dir():
            continue
        for d in sorted(folder.iterdir()):
            if TMP_MARK in d.name:
                log.info("removing %s, left by a checkpoint save that did not finish", d)
                remove_tree(d)
    legacy.remove_stale_temps(directory)
