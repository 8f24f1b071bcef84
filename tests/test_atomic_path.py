"""``atomic_path``: a file appears complete or not at all, with a normal mode, never clobbered."""

import os

import pytest

from jaxaudio.data.atomic_files import atomic_path, atomic_write_text


def test_written_file_appears_whole_with_a_normal_mode(tmp_path):
    out = tmp_path / "sub" / "a.wav"
    with atomic_path(out) as tmp:
        assert tmp.parent == out.parent and tmp.suffix == ".wav" and not out.exists()
        tmp.write_bytes(b"abc")
    umask = os.umask(0)
    os.umask(umask)
    assert out.read_bytes() == b"abc" and out.stat().st_mode & 0o777 == 0o666 & ~umask
    atomic_write_text(out, "new")
    assert out.read_text() == "new" and sorted(p.name for p in out.parent.iterdir()) == ["a.wav"]


def test_a_failed_write_leaves_nothing_and_the_old_file_intact(tmp_path):
    out = tmp_path / "a.json"
    out.write_text("old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(out) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_no_overwrite_never_replaces_a_file(tmp_path):
    out = tmp_path / "w.safetensors"
    out.write_text("old")
    with pytest.raises(FileExistsError, match=f"{out} already exists; pass --overwrite"):
        with atomic_path(out, overwrite=False) as tmp:
            tmp.write_text("new")
    late = tmp_path / "late.bin"
    with pytest.raises(FileExistsError, match="late.bin already exists"):
        with atomic_path(late, overwrite=False) as tmp:
            tmp.write_text("mine")
            late.write_text("theirs")  # appears while we write
    assert out.read_text() == "old" and late.read_text() == "theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.bin", "w.safetensors"]
