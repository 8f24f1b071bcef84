"""`python -m jaxaudio.train`: train the cascade transformer (see `--help`).

With no arguments it runs the built-in default: a synthetic dataset made on first use, the
weight-free MDCT codec and a small cascade, a few minutes on a CPU.
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None, *, devices: list | None = None) -> int:
    """The command line; exit status. ``devices`` (for tests and scripts) trains on those
    devices instead of every device of every process."""
    argv = sys.argv[1:] if argv is None else argv
    from jaxaudio.training.cli import parse_config
    from jaxaudio.training.config import ConfigError

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

    # Before anything starts a backend: the persistent compilation cache (under the run's
    # checkpoint folder) and the GPU's XLA flags.
    try:
        info = setup_runtime(cfg.checkpoint_dir)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logging.getLogger("jaxaudio.train").info("runtime: %s", info)

    from jaxaudio.training.utils import initialize_distributed

    initialize_distributed()
    from jaxaudio.codecs.encodec import EncodecWeightsError
    from jaxaudio.data.pairs import BadFileError
    from jaxaudio.torch_io import TorchFileError
    from jaxaudio.training.checkpoint import CheckpointError
    from jaxaudio.training.trainer import fit

    try:
        return fit(cfg, devices)
    except (ConfigError, CheckpointError, BadFileError, EncodecWeightsError, TorchFileError) as e:
        msg = str(e)
        if isinstance(e, EncodecWeightsError) and str(cfg.codec_weights) not in msg:
            msg = f"--codec_weights {cfg.codec_weights}: {msg}"  # name the file
        print(f"error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
