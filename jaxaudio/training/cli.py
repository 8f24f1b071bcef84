"""`python -m jaxaudio.train` flags: one per :class:`TrainConfig` field, help from the field.

The original's names and meanings, plus jaxaudio's own. Booleans take ``--flag true|false``
(the original's spelling) or a bare ``--flag``; a field with ``switch`` metadata is a plain
switch; ``choices`` metadata becomes argparse choices; ``X | None`` fields accept ``none``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence, get_type_hints

from jaxaudio.training.config import BUILTIN_DEFAULTS, ConfigError, TrainConfig

_BOOL_TRUE = {"true", "1", "yes", "on"}
_BOOL_FALSE = {"false", "0", "no", "off"}


def _parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in _BOOL_TRUE:
        return True
    if t in _BOOL_FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _optional(kind):
    def parse(text: str):
        return None if text.strip().lower() in ("", "none") else kind(text)

    parse.__name__ = kind.__name__
    return parse


def _base_type(hint) -> tuple[type, bool]:
    """``(int, True)`` for ``int | None``; ``(float, False)`` for ``float``."""
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    if args:
        return args[0], True
    return hint, False


# Flags of the original's scripts (train_simple_ddp.py) that have no job in jaxaudio: accepted,
# checked, and answered with a one-line note saying what jaxaudio does instead. Not saved.
ENCODEC_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # EnCodec 24 kHz's target bandwidths, kbps


def _world_size(value: int, cfg: TrainConfig) -> str:
    if value < 1:
        raise ConfigError(f"--world_size: expected a number of GPUs >= 1, got {value}")
    return (f"--world_size {value}: not needed; jaxaudio uses every visible device of every "
            f"process, and the global batch is --batch_size times their number")


def _local_rank(value: int, cfg: TrainConfig) -> str:
    return ("--local_rank: not needed; one process drives all of a host's devices, and several "
            "hosts start through jax.distributed.initialize (a SLURM job step is detected, or "
            "set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID)")


def _num_workers(value: int, cfg: TrainConfig) -> str:
    if value < 0:
        raise ConfigError(f"--num_workers: expected a number >= 0, got {value}")
    return ("--num_workers: not needed; batches are read and prefetched on background threads "
            "(from the latent cache, or --use_cache false for raw clips)")


def _codec_note(cfg: TrainConfig) -> str:
    if cfg.codec == "encodec":
        return ""
    return (f"; this run's codec is {cfg.codec}: for EnCodec's latents as in the original, add "
            f"--codec encodec --codec_weights FILE")


def _encodec_bandwidth(value: float, cfg: TrainConfig) -> str:
    if value not in ENCODEC_BANDWIDTHS:
        raise ConfigError(f"--encodec_bandwidth: EnCodec 24 kHz's bandwidths are "
                          f"{', '.join(f'{b:g}' for b in ENCODEC_BANDWIDTHS)} kbps, got {value:g}")
    return ("--encodec_bandwidth: changes nothing; the latents are EnCodec's continuous encoder "
            "output, before the quantiser, as in the original's step" + _codec_note(cfg))


def _encodec_sr(value: int, cfg: TrainConfig) -> str:
    from jaxaudio.training.config import SAMPLE_RATE

    if value != SAMPLE_RATE:
        raise ConfigError(f"--encodec_sr: jaxaudio's EnCodec is the 24 kHz model (the original "
                          f"loads that model whatever this flag says), expected {SAMPLE_RATE}, "
                          f"got {value}")
    return "--encodec_sr 24000: EnCodec's rate, as always" + _codec_note(cfg)


ORIGINAL_ONLY = {  # dest: (flags, type, what jaxaudio does instead)
    "world_size": (("--world_size",), int, _world_size),
    "local_rank": (("--local_rank", "--local-rank"), int, _local_rank),
    "num_workers": (("--num_workers",), int, _num_workers),
    "encodec_bandwidth": (("--encodec_bandwidth",), float, _encodec_bandwidth),
    "encodec_sr": (("--encodec_sr",), int, _encodec_sr),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxaudio.train",
        description=(
            "Train the cascade transformer over frozen codec latents. With no arguments, runs "
            "the built-in default (synthetic music, MDCT codec, small model; a few minutes on "
            "a CPU). --builtin starts from those defaults and lets other flags override them."
        ),
    )
    p.add_argument("--builtin", action="store_true",
                   help="start from the built-in default run's settings")
    hints = get_type_hints(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = f.metadata
        if meta.get("flag", True) is False:
            continue
        flag = f"--{f.name}"
        if meta.get("switch"):
            p.add_argument(flag, action="store_true", default=argparse.SUPPRESS,
                           help=meta["help"])
            continue
        kw: dict[str, Any] = dict(default=argparse.SUPPRESS,
                                  help=f"{meta['help']} (default: {f.default})")
        kind, optional = _base_type(hints[f.name])
        if kind is bool:
            p.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="true|false",
                           **kw)
        elif "choices" in meta:
            p.add_argument(flag, choices=meta["choices"], **kw)
        else:
            p.add_argument(flag, type=_optional(kind) if optional else kind, **kw)
    orig = p.add_argument_group(
        "the original's flags that jaxaudio does not need",
        "accepted so that the original's command lines run; each prints a note saying what "
        "jaxaudio does instead")
    for dest, (flags, kind, _) in ORIGINAL_ONLY.items():
        orig.add_argument(*flags, dest=dest, type=kind, default=argparse.SUPPRESS)
    return p


def parse_config(argv: Sequence[str], notes: list[str] | None = None) -> TrainConfig:
    """Flags to a validated :class:`TrainConfig`; no arguments means the built-in run.

    The original's flags that jaxaudio does not need (:data:`ORIGINAL_ONLY`) are checked and
    leave one line each in ``notes`` (when given), saying what jaxaudio does instead.
    """
    ns = vars(build_parser().parse_args(list(argv)))
    original_only = {k: ns.pop(k) for k in ORIGINAL_ONLY if k in ns}
    builtin = ns.pop("builtin", False) or not argv
    values: dict[str, Any] = dict(BUILTIN_DEFAULTS) if builtin else {}
    values.update(ns)
    if builtin:
        values["builtin"] = True
    try:
        cfg = TrainConfig(**values).validate()
    except TypeError as e:  # pragma: no cover - guarded by argparse
        raise ConfigError(str(e)) from e
    for dest, value in original_only.items():
        note = ORIGINAL_ONLY[dest][2](value, cfg)
        if notes is not None:
            notes.append(note)
    return cfg
