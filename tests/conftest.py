"""Shared test set-up.

Four fake CPU devices are configured before JAX is imported so the sharding tests can build
a real ``data`` mesh; single-device tests simply use device 0.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
