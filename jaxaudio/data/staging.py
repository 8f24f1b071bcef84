"""Writing a dataset folder so that an interrupted run never leaves one that looks complete.

Files are written into a hidden sibling ``.<name>.partial-<id>/``; ``metadata.json`` is written
last, and the folder is renamed into place in one step. An existing non-empty output folder is
refused unless ``overwrite`` is set, in which case it is replaced only once the new one is
complete. A staging folder records its writer (``OWNER``); one left by a killed build is
removed by the next build into the same folder (:func:`remove_stale_stages`), with a log line.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

from jaxaudio.data.atomic_files import OWNER, fault_point, remove_stale, write_owner

METADATA = "metadata.json"


def check_output_dir(output_dir: Path, overwrite: bool, flag: str = "--overwrite") -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        if not overwrite:
            raise FileExistsError(f"output folder {output_dir} exists and is not empty; choose "
                                  f"another --output_dir or pass {flag} to replace it")


@contextmanager
def staged_dataset(output_dir: str | Path, overwrite: bool = False):
    """Yield a staging folder; on normal exit it becomes ``output_dir``.

    The caller writes ``train/``, ``val/`` and then calls :func:`write_metadata`.
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir, overwrite)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_stages(output_dir)
    stage = output_dir.parent / f".{output_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    stage.mkdir()
    try:
        write_owner(stage)
        yield stage
        fault_point("dataset-build")
        (stage / OWNER).unlink()
        if not (stage / METADATA).is_file():
            raise RuntimeError(f"{stage}: {METADATA} was not written; the dataset is incomplete")
        if hasattr(os, "sync"):
            os.sync()  # the audio files reach the disk before the folder gets its final name
        if output_dir.exists():
            trash = output_dir.parent / f".{output_dir.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(output_dir, trash)
            os.rename(stage, output_dir)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.rename(stage, output_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def remove_stale_stages(output_dir: str | Path) -> list[Path]:
    """Delete the staging folders of killed builds of ``output_dir`` (see the module doc)."""
    output_dir = Path(output_dir)
    return remove_stale(output_dir.parent, (f".{output_dir.name}.partial-",),
                        "a dataset build")


def write_metadata(stage: Path, metadata: dict) -> None:
    with open(stage / METADATA, "w") as f:
        json.dump(metadata, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
