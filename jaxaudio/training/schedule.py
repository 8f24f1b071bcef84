"""The learning rate over epochs: torch's ``ReduceLROnPlateau`` (made to survive a noisy
validation loss), the cosine schedule and the linear warm-up, by epoch."""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

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
    lo = cfg.min_lr
    return lo + 0.5 * (cfg.lr - lo) * (1.0 + math.cos(math.pi * t))


def make_plateau(cfg) -> "ReduceLROnPlateau":
    return ReduceLROnPlateau(lr=cfg.lr, factor=cfg.plateau_factor, patience=cfg.plateau_patience,
                             threshold=cfg.plateau_threshold, cooldown=cfg.plateau_cooldown,
                             min_lr=cfg.min_lr)
