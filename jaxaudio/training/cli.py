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
    return p


def parse_config(argv: Sequence[str]) -> TrainConfig:
    """Flags to a validated :class:`TrainConfig`; no arguments means the built-in run."""
    ns = vars(build_parser().parse_args(list(argv)))
    builtin = ns.pop("builtin", False) or not argv
    values: dict[str, Any] = dict(BUILTIN_DEFAULTS) if builtin else {}
    values.update(ns)
    if builtin:
        values["builtin"] = True
    try:
        return TrainConfig(**values).validate()
    except TypeError as e:  # pragma: no cover - guarded by argparse
        raise ConfigError(str(e)) from e
