"""A checkpoint's metadata checked like the command line, before it is used.

``train --resume``, ``generate`` and ``evaluate`` read a checkpoint's metadata (its
configuration, epoch, scheduler, ...). The file is covered by the checkpoint's checksums, and
:func:`validate_meta` checks each field's type and range, and the configuration with the same
checks as the flags, so an edited or damaged field is refused naming the file and the field
instead of training at a learning rate of -1 or failing an epoch later.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jaxaudio.training.checkpoint import CheckpointError


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _count(v: Any) -> str | None:
    return None if _is_int(v) and v >= 0 else "a whole number >= 0"


def _loss(v: Any) -> str | None:
    return None if v is None or (_is_number(v) and v >= 0) else "null or a finite number >= 0"


def _positive(v: Any) -> str | None:
    return None if _is_number(v) and v > 0 else "a finite number > 0"


def _non_negative(v: Any) -> str | None:
    return None if _is_number(v) and v >= 0 else "a finite number >= 0"


def _fraction(v: Any) -> str | None:
    return None if _is_number(v) and 0 < v < 1 else "a number between 0 and 1"


def _optional_str(v: Any) -> str | None:
    return None if v is None or isinstance(v, str) else "a string or null"


def _optional_dict(v: Any) -> str | None:
    return None if v is None or isinstance(v, dict) else "an object or null"


def _dict(v: Any) -> str | None:
    return None if isinstance(v, dict) else "an object"


# field: check (None when the value is fine, else what was expected); required fields first.
REQUIRED = {"config": _dict, "epoch": _count, "step": _count}
OPTIONAL = {"position": _dict, "best_val_loss": _loss, "patience_counter": _count,
            "scheduler": _dict, "gan_curriculum_counter": _count,
            "partial_metrics": _optional_dict, "mlflow_run_id": _optional_str,
            "dataset": _dict, "jax_version": _optional_str}
SCHEDULER = {"lr": _positive, "factor": _fraction, "patience": _count,
             "threshold": _non_negative, "cooldown": _count, "min_lr": _non_negative,
             "eps": _non_negative, "best": _loss, "num_bad_epochs": _count,
             "cooldown_counter": _count}


def _refuse(file: Path, field: str, value: Any, expected: str) -> CheckpointError:
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    return CheckpointError(f"{file}: field {field!r} is {shown}; expected {expected}. The "
                           f"checkpoint's metadata was edited or damaged; use another "
                           f"checkpoint of the run")


def _check_config_types(saved: dict[str, Any], file: Path) -> None:
    """Each saved setting of the type its flag takes (an edited ``"lr": "abc"`` is named)."""
    import dataclasses
    from typing import get_type_hints

    from jaxaudio.training.config import TrainConfig, field_kind

    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        if f.name not in saved:
            continue
        kind, optional = field_kind(hints[f.name])
        v = saved[f.name]
        if v is None and optional:
            continue
        ok = {bool: isinstance(v, bool), int: _is_int(v), str: isinstance(v, str),
              float: _is_number(v)}.get(kind, True)
        if not ok:
            expected = {bool: "true or false", int: "a whole number", str: "a string",
                        float: "a finite number"}[kind] + (" or null" if optional else "")
            raise _refuse(file, f"config.{f.name}", v, expected)


def validate_meta(meta: dict[str, Any], file: Path, *, training: bool = True) -> None:
    """Raise :class:`CheckpointError` naming ``file`` and the first bad field of ``meta``.

    ``training=False`` (``generate``, ``evaluate``) checks the configuration and the counters
    but not the optimisation state a resume needs."""
    from jaxaudio.training.config import ConfigError, TrainConfig

    for name, check in REQUIRED.items():
        if name not in meta:
            raise _refuse(file, name, None, "the field to be present")
        problem = check(meta[name])
        if problem:
            raise _refuse(file, name, meta[name], problem)
    for name, check in (OPTIONAL.items() if training else ()):
        if name in meta and (problem := check(meta[name])):
            raise _refuse(file, name, meta[name], problem)
    if training and isinstance(meta.get("scheduler"), dict):
        sched = meta["scheduler"]
        unknown = sorted(set(sched) - set(SCHEDULER))
        if unknown:
            raise _refuse(file, f"scheduler.{unknown[0]}", sched[unknown[0]],
                          f"one of the scheduler's fields ({', '.join(SCHEDULER)})")
        for name, check in SCHEDULER.items():
            if name in sched and (problem := check(sched[name])):
                raise _refuse(file, f"scheduler.{name}", sched[name], problem)
    _check_config_types(meta["config"], file)
    try:
        cfg = TrainConfig.from_dict(meta["config"])
        from jaxaudio.training import config_checks

        config_checks.check_values(cfg.resolved())  # not its paths: they were the run's
    except (ConfigError, TypeError, ValueError) as e:
        text = str(e)
        field = "config"
        if text.startswith("--"):  # "--nhead: expected ..." -> field 'config.nhead'
            name, _, text = text[2:].partition(": ")
            field = f"config.{name}"
        raise CheckpointError(f"{file}: field {field!r}: {text}. The checkpoint's metadata was "
                              f"edited or damaged, or written by a version whose settings this "
                              f"one cannot read") from None
