"""The learning-rate schedules: torch's ReduceLROnPlateau, stepped by epoch, and the warm-up
and cosine schedule of ``epoch_learning_rate``."""

from __future__ import annotations

import logging
import math

import pytest

from jaxaudio.training.config import TrainConfig
from jaxaudio.training.schedule import ReduceLROnPlateau, epoch_learning_rate


def test_plateau_halves_after_patience_then_cools_down(caplog):
    s = ReduceLROnPlateau(lr=1e-3, factor=0.5, patience=2, threshold=1e-2, cooldown=1)
    with caplog.at_level(logging.INFO, logger="jaxaudio.training.schedule"):
        rates = [s.step(v) for v in (1.0, 1.0, 0.995, 1.0, 1.0, 1.0, 1.0, 1.0)]
    # 1.0 sets the best; 0.995 is not 1 % better; the third epoch without improvement halves
    # the rate; the cooldown epoch does not count; three more bad epochs halve it again.
    assert rates == [1e-3, 1e-3, 1e-3, 5e-4, 5e-4, 5e-4, 5e-4, 2.5e-4]
    assert "learning rate 0.001 -> 0.0005" in caplog.text


def test_plateau_state_round_trips_with_an_infinite_best():
    s = ReduceLROnPlateau(lr=1e-3)
    d = s.state_dict()
    assert d["best"] is None  # JSON has no infinity
    assert ReduceLROnPlateau.from_state_dict(d) == s


def test_nonfinite_validation_counts_as_no_improvement():
    s = ReduceLROnPlateau(lr=1e-3, patience=0)
    assert s.step(math.nan) == pytest.approx(5e-4)


def test_warmup_then_cosine():
    cfg = TrainConfig(lr=1e-3, min_lr=1e-5, warmup_epochs=2, epochs=12, lr_schedule="cosine")
    assert epoch_learning_rate(cfg, 0, 1.0) == pytest.approx(1e-3 / 3)
    assert epoch_learning_rate(cfg, 2, 1.0) == pytest.approx(1e-3)
    assert epoch_learning_rate(cfg, 11, 1.0) == pytest.approx(1e-5)
