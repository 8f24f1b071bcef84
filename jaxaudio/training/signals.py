"""Graceful stops: SIGINT and SIGTERM finish the current step, save, and exit cleanly."""

from __future__ import annotations

import signal
from typing import Any

import jax
import jax.numpy as jnp

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def unblock_stop_signals() -> None:
    """Let SIGINT and SIGTERM through to this thread. A process inherits its parent's blocked
    signals (a launcher or a test harness may leave some blocked): blocked, Ctrl-C would stop
    neither the dataset and cache builds nor, later, the training loop."""
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, saves, and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopFlag":
        for sig in STOP_SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl+C stops at once
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def agreed(self) -> bool:
        """Whether any process was asked to stop (a collective in multi-process runs)."""
        if jax.process_count() == 1:
            return self.requested
        from jax.experimental import multihost_utils

        flags = multihost_utils.process_allgather(jnp.asarray(int(self.requested)))
        return bool(jnp.any(flags))
