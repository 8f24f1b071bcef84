"""Content hashes of files, remembered between runs, and the contents known to be bad.

Used by the latent cache: a file's hash is recomputed only when its size, mtime, ctime or
inode changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jaxaudio.data.atomic_files import atomic_write_text


def file_digest(path: str | Path) -> str:
    """The file's blake2b-128 content hash."""
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
