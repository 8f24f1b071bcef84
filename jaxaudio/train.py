"""`python -m jaxaudio.train`: train the cascade transformer (see `--help`).

With no arguments it runs the built-in default: a synthetic dataset made on first use, the
weight-free MDCT codec and a small cascade, a few minutes on a CPU.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys

TRAIN_EXTRA = ("orbax", "tqdm", "soundfile", "matplotlib")  # the `train` extra's, imported here


def main(argv: list[str] | None = None, *, devices: list | None = None) -> int:
    """The command line; exit status (:mod:`jaxaudio.training.failures` lists them).
    ``devices`` (for tests and scripts) trains on those devices instead of every device of
    every process."""
    argv = sys.argv[1:] if argv is None else argv
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.config import ConfigError

    missing = [m for m in TRAIN_EXTRA if importlib.util.find_spec(m) is None]
    if missing:
        print(f"error: training needs {', '.join(missing)}, which the core install leaves out: "
              f"pip install 'jaxaudio[train]'", file=sys.stderr)
        return 2
    notes: list[str] = []
    try:
        cfg = parse_config(argv, notes)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("absl", "jax._src", "orbax", "alembic", "mlflow", "urllib3", "numba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

    from jaxaudio.runtime import setup_runtime
    from jaxaudio.training.signals import unblock_stop_signals

    unblock_stop_signals()

    # Before anything starts a backend: the persistent compilation cache (under the run's
    # checkpoint folder) and the GPU's XLA flags.
    try:
        info = setup_runtime(cfg.checkpoint_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("jaxaudio.train").info("runtime: %s", info)

    from jaxaudio.runtime import initialize_distributed
    from jaxaudio.training.failures import EXIT_INTERRUPTED

    initialize_distributed()
    try:
        return _fit(cfg, devices)
    except KeyboardInterrupt:
        print(f"\n{interrupted_message(cfg)}", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED


def _fit(cfg, devices) -> int:
    """Train; every failure reported in one line with its exit status (see
    :mod:`jaxaudio.training.failures`), the traceback only with ``--debug``."""
    import traceback

    from jaxaudio.training.trainer import fit

    try:
        return fit(cfg, devices)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        msg, status = describe_failure(e, cfg)
        if cfg.debug:
            traceback.print_exception(e)
        print(f"error: {msg}", file=sys.stderr, flush=True)
        return status


def describe_failure(e: Exception, cfg) -> tuple[str, int]:
    """A failure's one-line message and exit status."""
    from jaxaudio.codecs.encodec import EncodecWeightsError
    from jaxaudio.data.pairs import BadFileError
    from jaxaudio.torch_io import TorchFileError
    from jaxaudio.training.checkpoint import CheckpointError
    from jaxaudio.training.config import ConfigError
    from jaxaudio.training.failures import (EXIT_DISK_FULL, EXIT_ERROR, EXIT_INPUT, DiskFullError,
                                            disk_full, first_line, is_no_space)

    if isinstance(e, (ConfigError, CheckpointError, BadFileError, EncodecWeightsError,
                      TorchFileError)):
        msg = str(e)
        if isinstance(e, EncodecWeightsError) and str(cfg.codec_weights) not in msg:
            msg = f"--codec_weights {cfg.codec_weights}: {msg}"  # name the file
        return msg, EXIT_INPUT
    if isinstance(e, DiskFullError):
        return str(e), EXIT_DISK_FULL
    if is_no_space(e):
        where = getattr(e, "filename", None) or cfg.checkpoint_dir
        return str(disk_full(where, None, "a file")), EXIT_DISK_FULL
    return first_line(e) + ("" if cfg.debug else " (--debug prints the traceback)"), EXIT_ERROR


def interrupted_message(cfg) -> str:
    """What Ctrl-C outside the training loop leaves, and how to go on."""
    from pathlib import Path

    from jaxaudio.training.checkpoint import checkpoints_in

    found = checkpoints_in(Path(cfg.checkpoint_dir))
    if found:
        return (f"Interrupted (Ctrl-C) before this run saved a checkpoint. The run's folder "
                f"holds earlier checkpoints; continue with: --resume {cfg.checkpoint_dir}")
    return ("Interrupted (Ctrl-C) before the first checkpoint: nothing of the run was saved. "
            "What the dataset and latent-cache builds finished is kept and reused: run the "
            "same command again")


if __name__ == "__main__":
    status = main()
    if status == 4:  # a save cut short by a full disk: orbax's writer threads, still running,
        sys.stdout.flush()  # would print tracebacks at interpreter exit; nothing is left to do
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
