"""Failures outside our code, reported in one line with an exit status.

``python -m jaxaudio.train`` ends with one of these statuses (README, "Exit status"):

==== =======================================================================================
0    finished; or stopped by ``--stop_after_steps`` or SIGTERM after saving a resumable
     checkpoint
1    an unexpected error (one line; ``--debug`` prints the traceback)
2    bad input: a flag, file, dataset, checkpoint or tracking store, named
3    stopped after ``--max_nonfinite_steps`` steps with a non-finite loss or gradient
4    the disk is full (the path and the space needed are named; earlier checkpoints intact)
130  interrupted by Ctrl-C (what was saved and how to continue are printed)
==== =======================================================================================
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

EXIT_ERROR, EXIT_INPUT, EXIT_NONFINITE, EXIT_DISK_FULL, EXIT_INTERRUPTED = 1, 2, 3, 4, 130


class DiskFullError(RuntimeError):
    """A write that found no space left; the message names the path and the space needed."""


def _chain(e: BaseException):
    """``e``, its causes and contexts, and the members of exception groups, once each."""
    seen, todo = set(), [e]
    while todo:
        x = todo.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        todo += [x.__cause__, x.__context__, *getattr(x, "exceptions", ())]


def is_no_space(e: BaseException) -> bool:
    """Whether ``e`` (or what it wraps: orbax and TensorStore wrap the ``OSError``) is a full
    disk."""
    for x in _chain(e):
        if isinstance(x, OSError) and x.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        if "No space left on device" in str(x) or "Disk quota exceeded" in str(x):
            return True
    return False


def _mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB" if n < 2**30 else f"{n / 2**30:.2f} GB"


def free_bytes(path: str | Path) -> int | None:
    """Free space on the file system of ``path`` (or of its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def disk_full(path: str | Path, needed: int | None, what: str) -> DiskFullError:
    """The error for a full disk while writing ``what`` to ``path``."""
    path = Path(path)
    left = free_bytes(path)
    free = "free space unknown" if left is None else f"{_mb(left)} free"
    need = f"needs about {_mb(needed)}; " if needed else ""
    return DiskFullError(f"no space left on the device of {path} while writing {what} ({need}"
                         f"{free}). Earlier checkpoints are intact; free some space, then "
                         f"continue with --resume {path}")


def first_line(e: BaseException, limit: int = 300) -> str:
    """``Type: the first line of the message``, shortened."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    text = text if len(text) <= limit else text[:limit] + " ..."
    return f"{type(e).__name__}: {text}" if text else type(e).__name__
