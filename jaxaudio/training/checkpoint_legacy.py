"""The earlier checkpoint layout, still read (no longer written).

A checkpoint was a folder ``NAME/`` (``best_model``, ``checkpoint_epoch_N``,
``interrupted_checkpoint``) holding ``state/`` (orbax), ``meta.json``, ``checksums.json`` and a
``COMPLETE`` marker, written under ``.NAME.tmp-*`` and swapped in through ``.NAME.old-*``. Its
train state had a ``nonfinite_run`` counter and the generator's optimizer state without
``optax.apply_if_finite``'s wrapper; :func:`restore` maps both into today's state.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxaudio.data.atomic_files import is_stale, remove_tree

log = logging.getLogger(__name__)

COMPLETE = "COMPLETE"
META = "meta.json"


@jax.tree_util.register_dataclass
@dataclass
class LegacyTrainState:
    """The train state as the earlier layout saved it (same field names and order)."""
    step: Any
    params: Any
    buffers: Any
    opt_state: Any  # the optax chain's state, unwrapped
    disc_params: Any
    disc_buffers: Any
    disc_opt_state: Any
    nonfinite_run: Any


def restore(path: Path, abstract: Any) -> Any:
    """The state of the earlier-layout checkpoint ``path``, in the structure of ``abstract``
    (today's :class:`~jaxaudio.training.state.TrainState`, ``disc_noise`` left None)."""
    import optax
    import orbax.checkpoint as ocp

    wrapped = abstract.opt_state
    count = jax.ShapeDtypeStruct((), jnp.int32, sharding=getattr(
        wrapped.notfinite_count, "sharding", None))
    old = LegacyTrainState(**{f.name: getattr(abstract, f.name) for f in fields(abstract)
                              if f.name not in ("opt_state", "disc_noise")},
                           opt_state=wrapped.inner_state, nonfinite_run=count)
    saved = ocp.StandardCheckpointer().restore((path / "state").absolute(), old)
    run = jnp.asarray(saved.nonfinite_run, jnp.int32)
    opt_state = optax.ApplyIfFiniteState(notfinite_count=run, last_finite=run == 0,
                                         total_notfinite=run, inner_state=saved.opt_state)
    # The layout predates the adaptive discriminator noise: ``disc_noise`` None (the caller,
    # :func:`jaxaudio.training.checkpoint.load_checkpoint`, starts it at 0).
    return type(abstract)(**{f.name: getattr(saved, f.name) for f in fields(abstract)
                             if f.name not in ("opt_state", "disc_noise")},
                          opt_state=opt_state, disc_noise=None)


def renamed_aside(path: Path) -> Path | None:
    """The complete ``.NAME.old-*`` that a swap cut between its two renames left, if any."""
    aside = sorted(path.parent.glob(f".{path.name}.old-*"), key=lambda p: p.stat().st_mtime)
    for cand in reversed(aside):
        if (cand / COMPLETE).exists():
            return cand
    return None


def remove_stale_temps(directory: Path) -> None:
    """Clean up after saves of the earlier layout that were killed: delete ``.NAME.tmp-*``
    folders whose writer is gone; put a complete ``.NAME.old-*`` back as ``NAME`` when the swap
    was cut before ``NAME`` reappeared, and delete it when ``NAME`` is complete."""
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
