"""`python -m jaxaudio.train` flags: one per :class:`TrainConfig` field, help from the field.

The original's names and meanings, plus jaxaudio's own. Booleans take ``--flag true|false``
(the original's spelling) or a bare ``--flag``; a field with ``switch`` metadata is a plain
switch; ``choices`` metadata becomes argparse choices; ``X | None`` fields accept ``none``.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence, get_type_hints

from jaxaudio.training.config import BUILTIN_DEFAULTS, ConfigError, TrainConfig, field_kind
from jaxaudio.training.config_checks import check_given, validate

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


# --help's topics, in order: every flag of TrainConfig in one of them.
TOPICS: dict[str, tuple[str, ...]] = {
    "model": ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "dropout",
              "cascade_update", "anti_cheating", "unity_test"),
    "data": ("dataset_folder", "clip_seconds", "shuffle_targets", "skip_bad_files", "use_cache",
             "cache_dir"),
    "optimisation": ("epochs", "batch_size", "lr", "weight_decay", "grad_clip", "patience", "seed",
                     "max_nonfinite_steps", "stop_after_steps"),
    "learning-rate schedule": ("lr_schedule", "warmup_epochs", "min_lr", "plateau_factor",
                               "plateau_patience", "plateau_threshold", "plateau_cooldown"),
    "loss weights": ("loss_weight_input", "loss_weight_target", "loss_weight_spectral",
                     "loss_weight_mel", "corr_weight", "spectral_penalty_weight", "loss_weights"),
    "creative agents and masks": ("creative_agent", "agent_options", "mask_gate",
                                  "mask_reg_weight", "balance_loss_weight", "mask_type",
                                  "mask_temporal_segment", "mask_freq_split", "mask_channel_keep",
                                  "mask_energy_threshold"),
    "latent GAN": ("gan_weight", "gan_variant", "disc_lr", "disc_update_freq", "disc_dropout",
                   "gan_r1", "disc_lr_schedule", "disc_target_acc", "disc_noise_rate",
                   "disc_noise_max", "pure_gan_mode", "gan_curriculum_start_epoch",
                   "gan_noise_ceiling"),
    "codec and precision": ("codec", "codec_weights", "precision", "codec_precision"),
    "checkpoints and logging": ("checkpoint_dir", "save_every", "resume",
                                "allow_dataset_change", "mlflow_uri", "no_mlflow",
                                "quality_clips", "log_samples", "debug"),
}
# The original's agent booleans: aliases of --creative_agent NAME.
AGENT_ALIASES = {"use_creative_agent": "masking", "use_compositional_agent": "compositional"}


def _add_field(group, f, hint) -> None:
    meta = f.metadata
    flag = f"--{f.name}"
    if meta.get("switch"):
        group.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=meta["help"])
        return
    kw: dict[str, Any] = dict(default=argparse.SUPPRESS,
                              help=f"{meta['help']} (default: {f.default})")
    kind, optional = field_kind(hint)
    if kind is bool:
        group.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="true|false",
                           **kw)
    elif "choices" in meta:
        group.add_argument(flag, choices=meta["choices"], **kw)
    else:
        group.add_argument(flag, type=_optional(kind) if optional else kind, **kw)


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
    fields = {f.name: f for f in dataclasses.fields(TrainConfig) if f.metadata.get("flag", True)}
    listed = [name for names in TOPICS.values() for name in names]
    if sorted(listed) != sorted(fields):  # a new field must be given a topic
        raise RuntimeError(f"cli.TOPICS and TrainConfig's flags differ: "
                           f"{sorted(set(listed) ^ set(fields))}")
    for topic, names in TOPICS.items():
        group = p.add_argument_group(topic)
        for name in names:
            _add_field(group, fields[name], hints[name])
        if topic == "creative agents and masks":
            for alias, agent in AGENT_ALIASES.items():
                group.add_argument(f"--{alias}", type=_parse_bool, nargs="?", const=True,
                                   metavar="true|false", default=argparse.SUPPRESS,
                                   help=f"the original's flag: true is --creative_agent {agent}")
    orig = p.add_argument_group(
        "the original's flags that jaxaudio does not need",
        "accepted so that the original's command lines run; each prints a note saying what "
        "jaxaudio does instead")
    for dest, (flags, kind, _) in ORIGINAL_ONLY.items():
        orig.add_argument(*flags, dest=dest, type=kind, default=argparse.SUPPRESS)
    return p


def _agent_from_aliases(ns: dict[str, Any]) -> None:
    """``--use_creative_agent true`` and ``--use_compositional_agent true`` (the original's
    flags) as ``--creative_agent masking`` / ``compositional``; they may not disagree."""
    on = [agent for alias, agent in AGENT_ALIASES.items() if ns.pop(alias, False)]
    if len(on) > 1:
        raise ConfigError("--use_creative_agent and --use_compositional_agent are mutually "
                          "exclusive: choose one creative agent")
    if on:
        if ns.get("creative_agent") not in (None, on[0]):
            raise ConfigError(f"--creative_agent {ns['creative_agent']} and the original's "
                              f"flag for the {on[0]} agent disagree: choose one agent")
        ns["creative_agent"] = on[0]


def parse_config(argv: Sequence[str], notes: list[str] | None = None) -> TrainConfig:
    """Flags to a validated :class:`TrainConfig`; no arguments means the built-in run.

    The original's flags that jaxaudio does not need (:data:`ORIGINAL_ONLY`) are checked and
    leave one line each in ``notes`` (when given), saying what jaxaudio does instead.
    """
    ns = vars(build_parser().parse_args(list(argv)))
    original_only = {k: ns.pop(k) for k in ORIGINAL_ONLY if k in ns}
    given = set(ns)
    _agent_from_aliases(ns)
    builtin = ns.pop("builtin", False) or not argv
    values: dict[str, Any] = dict(BUILTIN_DEFAULTS) if builtin else {}
    values.update(ns)
    if builtin:
        values["builtin"] = True
    try:
        cfg = validate(TrainConfig(**values))
    except TypeError as e:  # pragma: no cover - guarded by argparse
        raise ConfigError(str(e)) from e
    inert = check_given(cfg, given)
    for dest, value in original_only.items():
        inert.append(ORIGINAL_ONLY[dest][2](value, cfg))
    if notes is not None:
        notes.extend(inert)
    return cfg
