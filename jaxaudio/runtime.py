"""Process-wide JAX settings of a training run: the persistent compilation cache, GPU flags and
the multi-host start (:func:`initialize_distributed`).

Call :func:`setup_runtime` once at the start of a run, before the first step is traced or any
device is touched:

- :func:`configure_gpu_flags` keeps cuDNN calls out of XLA's command buffers (``XLA_FLAGS``),
  which cuDNN's fused attention with dropout needs (a crash was seen without it); XLA reads the
  flags when the GPU backend starts, so this only works before that;
- :func:`enable_compilation_cache` turns JAX's persistent compilation cache on under the run's
  directory, so a restarted or resumed run loads the compiled train step instead of compiling
  and autotuning it again (about 60-80 s cold on an H200; experiments/README.md).

``JAXAUDIO_COMPILATION_CACHE`` = ``0``/``off``/``false`` turns the cache off; any other value
names the cache folder to use instead of ``<run_dir>/jax_cache`` (e.g. one shared by runs).
Without it, JAX's own ``JAX_COMPILATION_CACHE_DIR``, when set, is used as JAX reads it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import jax

CACHE_ENV = "JAXAUDIO_COMPILATION_CACHE"
CACHE_SUBDIR = "jax_cache"
_OFF = ("0", "off", "false", "no", "none")
# Every command type of XLA's default set except cuDNN (and dynamic-slice fusions), as measured.
GPU_COMMAND_BUFFER_FLAG = "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL"


def cudnn_command_buffers_off(xla_flags: str | None = None) -> bool:
    """True when ``XLA_FLAGS`` keeps cuDNN calls out of XLA's command buffers."""
    flags = os.environ.get("XLA_FLAGS", "") if xla_flags is None else xla_flags
    m = re.findall(r"--xla_gpu_enable_command_buffer=(\S*)", flags)
    return bool(m) and "CUDNN" not in m[-1].upper().split(",")


def _backends_started() -> bool:
    from jax._src import xla_bridge

    started = getattr(xla_bridge, "backends_are_initialized", None)
    return bool(started()) if started is not None else bool(getattr(xla_bridge, "_backends", {}))


def configure_gpu_flags() -> bool:
    """Add :data:`GPU_COMMAND_BUFFER_FLAG` to ``XLA_FLAGS`` unless the user set that flag.

    Returns True when ``XLA_FLAGS`` now keeps cuDNN out of command buffers. Harmless on CPU
    (the flag is GPU-only). Too late once a backend has started: then nothing changes.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if "--xla_gpu_enable_command_buffer" not in flags and not _backends_started():
        os.environ["XLA_FLAGS"] = (flags + " " + GPU_COMMAND_BUFFER_FLAG).strip()
    return cudnn_command_buffers_off()


def enable_compilation_cache(run_dir: str | os.PathLike | None) -> Path | None:
    """Turn on JAX's persistent compilation cache; returns its folder, or None when off.

    The folder is ``$JAXAUDIO_COMPILATION_CACHE`` when that names one, else JAX's own
    ``$JAX_COMPILATION_CACHE_DIR`` (a cache the user shares between runs; the test suite shares
    one across its processes), else ``<run_dir>/jax_cache``; None when the variable says off or there is
    no folder. Programs that compile in under a second are not stored (JAX's default
    threshold, unless ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise).
    """
    env = os.environ.get(CACHE_ENV, "").strip()
    if env.lower() in _OFF:
        return None
    jax_env = os.environ.get("JAX_COMPILATION_CACHE_DIR", "").strip()
    if env:
        folder = Path(env)
    elif jax_env:
        folder = Path(jax_env)
    elif run_dir is not None:
        folder = Path(run_dir) / CACHE_SUBDIR
    else:
        return None
    # Not created here: JAX makes it at the first compile, after every flag has been
    # checked, so a run refused for a bad value leaves nothing behind.
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder


def setup_runtime(run_dir: str | os.PathLike | None) -> dict:
    """Both of the above; returns what was set, for the run's log."""
    cache = enable_compilation_cache(run_dir)
    return {"compilation_cache": None if cache is None else str(cache),
            "cudnn_out_of_command_buffers": configure_gpu_flags()}


def initialize_distributed() -> bool:
    """Start multi-host JAX when the environment describes several processes.

    Explicit variables (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``)
    win; otherwise a SLURM job step with several tasks is detected and JAX reads SLURM's own
    variables. Returns whether several processes are now running. Must run before any JAX
    computation.
    """
    addr = os.environ.get("JAX_COORDINATOR_ADDRESS")
    if addr:
        try:
            n = int(os.environ["JAX_NUM_PROCESSES"])
            pid = int(os.environ["JAX_PROCESS_ID"])
        except (KeyError, ValueError) as e:
            raise RuntimeError("JAX_COORDINATOR_ADDRESS is set: JAX_NUM_PROCESSES and "
                               "JAX_PROCESS_ID must be integers too") from e
        if n > 1:
            jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
    elif (int(os.environ.get("SLURM_NTASKS", "1")) > 1
          and all(v in os.environ for v in ("SLURM_JOB_ID", "SLURM_STEP_NODELIST",
                                             "SLURM_PROCID", "SLURM_LOCALID"))):
        # Inside an srun job step of several tasks (not merely a multi-task allocation).
        jax.distributed.initialize()
    return jax.process_count() > 1
