"""One run per checkpoint folder.

A run holds ``<checkpoint_dir>/.run.lock`` from before it touches the folder until it ends: an
advisory ``flock`` on the open file (the kernel drops it when the process dies, however it
dies) and, inside the file, who holds it (process id, host, start time, command line). A second
run on the folder is refused before any work, naming the holder. A lock file whose ``flock`` is
free was left by a run that was killed: it is taken over, with a line saying so.

In a multi-host run, process 0 holds the lock for the run. ``flock`` is local to a machine on
some network file systems; where two hosts share a folder over such a file system, the file's
contents still name the holder, and a lock held by a live process on another host is refused.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from jaxaudio.training.config import ConfigError

LOCK_NAME = ".run.lock"


class FolderInUseError(ConfigError):
    """The checkpoint folder is held by another run."""


def _holder_text(holder: dict[str, Any]) -> str:
    started = holder.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "an unknown time")
    command = holder.get("command") or "?"
    return (f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}, "
            f"started {when}: {command}")


def _read(fd: int) -> dict[str, Any]:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        data = os.read(fd, 1 << 16)
        holder = json.loads(data.decode() or "{}")
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


class RunLock:
    """The lock on ``folder`` (``with RunLock(folder):`` or :meth:`acquire` / :meth:`release`)."""

    def __init__(self, folder: str | Path, command: str | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.command = command if command is not None else " ".join(
            [Path(sys.executable).name, *sys.argv])
        self._fd: int | None = None
        self.took_over: dict[str, Any] | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or raise :class:`FolderInUseError` naming the run that holds it."""
        import fcntl

        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read(fd)
            os.close(fd)
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise FolderInUseError(self._refusal(holder)) from None
        holder = _read(fd)
        host = socket.gethostname()
        if holder.get("pid") and holder.get("host") not in (None, host):
            # Written on another host and not released: its liveness cannot be asked there.
            os.close(fd)
            raise FolderInUseError(self._refusal(holder) + f" (if that run is no longer "
                                   f"running, delete {self.path})")
        if holder.get("pid") not in (None, os.getpid()):
            self.took_over = holder
            print(f"note: taking over the lock on {self.folder}, left by a run that is no "
                  f"longer running ({_holder_text(holder)})", file=sys.stderr, flush=True)
        me = {"pid": os.getpid(), "host": host, "started": time.time(),
              "command": self.command}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def _refusal(self, holder: dict[str, Any]) -> str:
        return (f"--checkpoint_dir {self.folder}: another run is using this folder "
                f"({_holder_text(holder)}). Wait for it to end, stop it, or choose another "
                f"--checkpoint_dir")

    def release(self) -> None:
        """Let go of the lock (the file is emptied, then closed; the next run takes it)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


@contextlib.contextmanager
def hold_folder(folder: str | Path) -> Iterator[RunLock | None]:
    """Process 0 holds ``folder``'s lock while the block runs; in a multi-process run the
    others learn whether it could, and refuse with it."""
    import jax

    lock, refusal = None, None
    if jax.process_index() == 0:
        try:
            lock = RunLock(folder).acquire()
        except FolderInUseError as e:
            refusal = e
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        import numpy as np

        held = multihost_utils.broadcast_one_to_all(np.int32(lock is not None))
        if not int(held) and refusal is None:
            refusal = FolderInUseError(f"--checkpoint_dir {folder}: process 0 found another "
                                       f"run using this folder")
    if refusal is not None:
        raise refusal
    try:
        yield lock
    finally:
        if lock is not None:
            lock.release()
