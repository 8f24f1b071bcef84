"""Content hashes of files, remembered between runs, and writes that survive a crash.

Used by the latent cache: a file's hash is recomputed only when its size, mtime, ctime or
inode changed. :func:`atomic_path` is jaxaudio's one way to write a file that appears complete
or not at all (temporary file beside it, fsync, rename); JSON tables are written through it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import uuid
from pathlib import Path
from typing import Iterator


def file_digest(path: str | Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DigestMemo:
    """Content hashes remembered by (size, mtime_ns, ctime_ns, inode), and known-bad contents.

    ``bad`` maps the hash of a file found unusable to its problem, so a dataset opened with
    ``skip_bad_files`` can leave it out again without decoding every file to find it.
    """

    def __init__(self, path: Path):
        self.path = path
        try:
            table = json.loads(path.read_text())
            self.files, self.bad = dict(table["files"]), dict(table["bad"])
        except Exception:
            self.files, self.bad = {}, {}
        self.changed = False

    def digest(self, path: Path) -> str:
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = str(path.resolve())
        hit = self.files.get(key)
        if isinstance(hit, dict) and hit.get("stamp") == stamp:
            return hit["digest"]
        digest = file_digest(path)
        self.files[key] = {"stamp": stamp, "digest": digest}
        self.changed = True
        return digest

    def mark_bad(self, path: Path, problem: str) -> None:
        if path.is_file():
            self.bad[self.digest(path)] = problem
            self.changed = True

    def save(self) -> None:
        if self.changed:
            atomic_write_text(self.path, json.dumps({"files": self.files, "bad": self.bad}))
            self.changed = False


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
