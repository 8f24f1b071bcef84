"""Content hashes of files, remembered between runs, and writes that survive a crash.

Used by the latent cache: a file's hash is recomputed only when its size, mtime, ctime or
inode changed; JSON files are replaced atomically (temporary file, fsync, rename).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from pathlib import Path


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


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
