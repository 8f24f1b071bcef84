"""Loop helpers: the plateau scheduler, multi-host start-up, graceful stops, tree statistics."""

from __future__ import annotations

import logging
import math
import os
import signal
from dataclasses import asdict, dataclass
from typing import Any

import jax
import jax.numpy as jnp

log = logging.getLogger(__name__)


@dataclass
class ReduceLROnPlateau:
    """torch's ``ReduceLROnPlateau`` (mode min, relative threshold), stepped once per epoch.

    The original built one and never stepped it; this one really steps on the validation loss,
    and its whole state goes into the checkpoint.
    """

    lr: float
    factor: float = 0.5
    patience: int = 5
    threshold: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8
    best: float = math.inf
    num_bad_epochs: int = 0
    cooldown_counter: int = 0

    def step(self, metric: float) -> float:
        """Record one epoch's validation loss; returns the (possibly reduced) learning rate."""
        if not math.isfinite(metric):
            self.num_bad_epochs += 1
        elif metric < self.best * (1.0 - self.threshold):
            self.best = metric
            self.num_bad_epochs = 0
        else:
            self.num_bad_epochs += 1
        if self.cooldown_counter > 0:
            self.cooldown_counter -= 1
            self.num_bad_epochs = 0
        if self.num_bad_epochs > self.patience:
            new_lr = max(self.lr * self.factor, self.min_lr)
            if self.lr - new_lr > self.eps:
                log.info("ReduceLROnPlateau: learning rate %.3g -> %.3g", self.lr, new_lr)
                self.lr = new_lr
            self.cooldown_counter = self.cooldown
            self.num_bad_epochs = 0
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["best"] = None if math.isinf(self.best) else self.best
        return d

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "ReduceLROnPlateau":
        d = dict(d)
        d["best"] = math.inf if d.get("best") is None else d["best"]
        return cls(**d)


def epoch_learning_rate(cfg, epoch: int, plateau_lr: float) -> float:
    """The learning rate of ``epoch`` (0-based): a linear warm-up over ``--warmup_epochs``,
    then the plateau scheduler's rate, or a cosine decay from ``--lr`` to ``--min_lr`` over the
    remaining epochs (``--lr_schedule cosine``)."""
    warm = cfg.warmup_epochs
    if epoch < warm:
        return cfg.lr * (epoch + 1) / (warm + 1)
    if cfg.lr_schedule == "plateau":
        return plateau_lr
    span = max(cfg.epochs - warm - 1, 1)
    t = min(max(epoch - warm, 0) / span, 1.0)
    lo = cfg.min_lr_value
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def make_plateau(cfg) -> "ReduceLROnPlateau":
    return ReduceLROnPlateau(lr=cfg.lr, factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                             threshold=cfg.plateau_threshold, cooldown=cfg.plateau_cooldown,
                             min_lr=cfg.min_lr_value)


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


class StopFlag:
    """Set by SIGINT/SIGTERM; the loop finishes the current step, saves, and exits cleanly."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> "StopFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
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


def count_params(tree: Any) -> int:
    return int(sum(x.size for x in jax.tree.leaves(tree)))
