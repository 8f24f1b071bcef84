"""Writes that survive a crash, and the clean-up of what a killed writer left behind.

:func:`atomic_path` is jaxaudio's one way to write a file that appears complete or not at all
(temporary file beside it, fsync, rename); JSON tables are written through it.

Temporary folders (of the cache, checkpoints and dataset builds) record their writer's host
and process id in ``OWNER``; :func:`remove_stale` deletes those whose writer on this host is
gone (killed), and those without ``OWNER`` older than an hour, with a log line for each.
Folders of running writers and of other hosts are left alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Iterable, Iterator

log = logging.getLogger(__name__)

OWNER = "OWNER"
ORPHAN_AGE_S = 3600.0
FAULT_ENV = "JAXAUDIO_FAULT"
_fault_hits: dict[str, int] = {}


def fault_point(name: str) -> None:
    """A place where the fault-injection tests strike (``tests/test_faults.py``).

    ``JAXAUDIO_FAULT=name`` (or ``name@N``: the N-th time it is reached) SIGKILLs the process
    here, so a kill lands in the middle of a save or build without timing guesses;
    ``name[@N]:enospc`` raises ``OSError(ENOSPC)`` (a full disk) and ``name[@N]:sigint``
    sends the process SIGINT (Ctrl-C). Unset, it costs one dictionary lookup.
    """
    want = os.environ.get(FAULT_ENV)
    if not want or not want.startswith(name):
        return
    want, _, kind = want.partition(":")
    point, _, nth = want.partition("@")
    if point != name:
        return
    _fault_hits[name] = _fault_hits.get(name, 0) + 1
    if _fault_hits[name] != int(nth or 1):
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), f"(fault point {name})")
    if kind == "sigint":
        # To this thread (raise(3)), as Ctrl-C reaches the main thread. In some full test
        # runs the signal did not arrive (the run trained on; cause not found): then say so
        # and raise what Python's handler would have.
        signal.raise_signal(signal.SIGINT)
        status = [line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith(("SigBlk", "SigIgn"))] if Path("/proc/self").exists() else []
        print(f"fault point {name}: SIGINT was raised but not delivered (handler "
              f"{signal.getsignal(signal.SIGINT)!r}, blocked/ignored {status}); raising "
              f"KeyboardInterrupt", file=sys.stderr, flush=True)
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGKILL)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, overwrite: bool = True) -> Iterator[Path]:
    """A fresh name beside ``path`` to write a file to; on a clean exit it becomes ``path``.

    ``with atomic_path(out) as tmp: write(tmp)``: the file is fsynced and renamed over ``path``
    (then the folder is fsynced), so ``path`` appears complete or not at all; on an error the
    temporary file is removed. The writer creates the file itself, so it gets a normal file's
    mode (``mkstemp``'s would be private), and the name keeps ``path``'s suffix for writers
    that read the format from it. ``overwrite=False`` never replaces an existing ``path``:
    ``FileExistsError``, even when the file appears while being written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp{path.suffix}")
    exists = FileExistsError(f"{path} already exists; pass --overwrite (overwrite=True) to replace it")
    if path.exists() and not overwrite:
        raise exists
    try:
        yield tmp
        fsync_path(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: never clobber
            except FileExistsError:
                raise exists from None
            except OSError:  # a filesystem without hard links
                if path.exists():
                    raise exists from None
                os.replace(tmp, path)
        fsync_path(path.parent)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_owner(folder: Path) -> None:
    """Mark ``folder`` as this process's work in progress (see :func:`remove_stale`)."""
    (folder / OWNER).write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_stale(folder: Path, orphan_age_s: float = ORPHAN_AGE_S) -> bool:
    """Whether ``folder``'s writer is gone: a dead process of this host, or no ``OWNER`` and
    untouched for ``orphan_age_s``."""
    try:
        owner = json.loads((folder / OWNER).read_text())
        return owner["host"] == socket.gethostname() and not _pid_running(int(owner["pid"]))
    except (OSError, ValueError, KeyError, TypeError):
        try:
            return time.time() - folder.stat().st_mtime > orphan_age_s
        except OSError:
            return False


def remove_tree(path: Path) -> None:
    """Delete a folder, first renaming it so it is never seen half-deleted under its name."""
    trash = path.with_name(f".trash-{path.name}-{uuid.uuid4().hex[:8]}")
    try:
        os.rename(path, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def remove_stale(parent: Path, prefixes: Iterable[str], what: str,
                 orphan_age_s: float = ORPHAN_AGE_S) -> list[Path]:
    """Delete the stale folders in ``parent`` whose names start with one of ``prefixes``
    (``what`` says who left them, for the log line), and half-deleted ``.trash-*`` folders.
    Returns the folders removed."""
    removed: list[Path] = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return removed
    prefixes = tuple(prefixes)
    for d in entries:
        if not d.is_dir():
            continue
        if d.name.startswith(".trash-"):
            shutil.rmtree(d, ignore_errors=True)
        elif d.name.startswith(prefixes) and is_stale(d, orphan_age_s):
            log.info("removing %s, left by %s that did not finish", d, what)
            remove_tree(d)
            removed.append(d)
    return removed
