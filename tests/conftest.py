"""Shared test set-up.

Four fake CPU devices are configured before JAX is imported so the sharding tests can build
a real ``data`` mesh; single-device tests simply use device 0.
"""

import os

# Optimisation level 0 roughly halves XLA's CPU compile times, which dominate this suite;
# results stay within the fixtures' tolerances.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4 --xla_backend_optimization_level=0"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

# One persistent XLA cache for the whole test run (subprocesses inherit it): the training
# tests compile the same step several times.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    import atexit
    import shutil
    import tempfile

    _cache = tempfile.mkdtemp(prefix="jaxaudio-xla-cache-")
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
