"""The checks of a :class:`~jaxaudio.training.config.TrainConfig`, apart from its fields.

Each raises :class:`ConfigError` with one line naming the flag and what was expected; none
changes the configuration. Path checks look at the file system only (a probe file that is
removed at once tests that a folder can be written), so they run in well under a second,
before any data is read or anything compiled.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from jaxaudio.training.config import (CODECS, ENCODEC_HOP, MASK_TYPES, MAX_SEED, PRECISIONS,
                                      SAMPLE_RATE, ConfigError)

POSITIVE_INTS = ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "epochs",
                 "batch_size", "patience", "save_every", "disc_update_freq",
                 "mask_temporal_segment", "max_nonfinite_steps")
NON_NEGATIVE = ("weight_decay", "anti_cheating", "loss_weight_input", "loss_weight_target",
                "loss_weight_spectral", "loss_weight_mel", "mask_reg_weight",
                "balance_loss_weight", "corr_weight", "gan_weight", "pure_gan_mode", "grad_clip")
FRACTIONS = ("mask_freq_split", "mask_channel_keep", "mask_energy_threshold",
             "gan_noise_ceiling")


def need(cond: bool, flag: str, expected: str, value: Any) -> None:
    if not cond:
        raise ConfigError(f"--{flag}: expected {expected}, got {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_core(cfg) -> None:
    """The training core's options: GAN variant, schedule, loss weights, agent name."""
    from jaxaudio.training.config import GAN_VARIANTS, LR_SCHEDULES, parse_loss_weights

    need(cfg.gan_variant in GAN_VARIANTS, "gan_variant", f"one of {', '.join(GAN_VARIANTS)}",
         cfg.gan_variant)
    need(cfg.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {', '.join(LR_SCHEDULES)}",
         cfg.lr_schedule)
    need(cfg.mask_gate in ("onset", "energy", "learned"), "mask_gate", "onset, energy or learned",
         cfg.mask_gate)
    need(cfg.cascade_update in ("gain", "additive"), "cascade_update", "gain or additive",
         cfg.cascade_update)
    need(_is_number(cfg.gan_r1) and cfg.gan_r1 >= 0, "gan_r1", "a number >= 0", cfg.gan_r1)
    need(cfg.spectral_penalty_weight is None or (_is_number(cfg.spectral_penalty_weight)
                                                 and cfg.spectral_penalty_weight >= 0),
         "spectral_penalty_weight", "a number >= 0", cfg.spectral_penalty_weight)
    need(_is_number(cfg.disc_dropout) and 0 <= cfg.disc_dropout < 1,
         "disc_dropout", "a number in [0, 1)", cfg.disc_dropout)
    need(cfg.disc_target_acc is None or (_is_number(cfg.disc_target_acc) and (
        cfg.disc_target_acc == 0 or 0.5 < cfg.disc_target_acc < 1)), "disc_target_acc",
         "0 (off) or an accuracy between 0.5 and 1", cfg.disc_target_acc)
    need(_is_number(cfg.disc_noise_rate) and 0 < cfg.disc_noise_rate <= 1, "disc_noise_rate",
         "a number in (0, 1]", cfg.disc_noise_rate)
    need(_is_number(cfg.disc_noise_max) and cfg.disc_noise_max > 0, "disc_noise_max",
         "a number > 0", cfg.disc_noise_max)
    for name in ("warmup_epochs", "plateau_patience", "plateau_cooldown"):
        v = getattr(cfg, name)
        need(_is_int(v) and v >= 0, name, "an integer >= 0", v)
    need(cfg.min_lr is None or (_is_number(cfg.min_lr) and 0 <= cfg.min_lr <= cfg.lr),
         "min_lr", "a number from 0 to --lr", cfg.min_lr)
    need(_is_number(cfg.plateau_factor) and 0 < cfg.plateau_factor < 1, "plateau_factor",
         "a factor between 0 and 1", cfg.plateau_factor)
    need(_is_number(cfg.plateau_threshold) and 0 <= cfg.plateau_threshold < 1,
         "plateau_threshold", "a relative threshold in [0, 1)", cfg.plateau_threshold)
    parse_loss_weights(cfg.loss_weights)
    if cfg.creative_agent is not None:
        from jaxaudio.agents.registry import agents

        need(cfg.creative_agent in agents(), "creative_agent",
             f"one of {', '.join(sorted(agents()))}", cfg.creative_agent)
    cfg.agent_option_map  # raises ConfigError naming the option


def check_values(cfg) -> None:
    """Every value on its own and in combination; no file system access."""
    _check_core(cfg)
    _check_numbers(cfg)
    _check_combinations(cfg)


def _check_numbers(cfg) -> None:
    for name in POSITIVE_INTS:
        v = getattr(cfg, name)
        need(_is_int(v) and v >= 1, name, "a positive integer", v)
    need(_is_int(cfg.seed) and 0 <= cfg.seed <= MAX_SEED, "seed",
         f"an integer from 0 to {MAX_SEED}", cfg.seed)
    need(cfg.encoding_dim % 2 == 0, "encoding_dim", "an even number (sinusoidal positions)",
         cfg.encoding_dim)
    d0 = cfg.encoding_dim if not cfg.cascade else 2 * cfg.encoding_dim
    d1 = cfg.encoding_dim if not cfg.cascade else 3 * cfg.encoding_dim
    need(d0 % cfg.nhead == 0 and d1 % cfg.nhead == 0, "nhead",
         f"a divisor of every stage width ({d0}" + (f" and {d1})" if cfg.cascade else ")"),
         cfg.nhead)
    for name in ("lr", "clip_seconds"):
        v = getattr(cfg, name)
        need(_is_number(v) and v > 0, name, "a positive number", v)
    for name in NON_NEGATIVE:
        v = getattr(cfg, name)
        need(_is_number(v) and v >= 0, name, "a number >= 0", v)
    need(_is_number(cfg.dropout) and 0.0 <= cfg.dropout < 1.0, "dropout", "a rate in [0, 1)",
         cfg.dropout)
    for name in FRACTIONS:
        v = getattr(cfg, name)
        need(_is_number(v) and 0.0 <= v <= 1.0, name, "a fraction in [0, 1]", v)
    need(cfg.disc_lr is None or (_is_number(cfg.disc_lr) and cfg.disc_lr > 0),
         "disc_lr", "a positive number", cfg.disc_lr)
    need(_is_int(cfg.gan_curriculum_start_epoch) and cfg.gan_curriculum_start_epoch >= 0,
         "gan_curriculum_start_epoch", "an integer >= 0", cfg.gan_curriculum_start_epoch)
    if cfg.allow_dataset_change and not cfg.resume:
        raise ConfigError("--allow_dataset_change: does nothing without --resume (it lets a "
                          "resumed run continue on other data)")
    need(cfg.stop_after_steps is None or (_is_int(cfg.stop_after_steps)
                                          and cfg.stop_after_steps >= 1),
         "stop_after_steps", "a positive integer", cfg.stop_after_steps)
    for name in ("log_samples", "quality_clips"):
        v = getattr(cfg, name)
        need(_is_int(v) and v >= 0, name, "an integer >= 0", v)


def _check_combinations(cfg) -> None:
    need(cfg.mask_type in MASK_TYPES, "mask_type", f"one of {', '.join(MASK_TYPES)}",
         cfg.mask_type)
    need(cfg.codec in CODECS, "codec", f"one of {', '.join(CODECS)}", cfg.codec)
    for name in ("precision", "codec_precision"):
        need(getattr(cfg, name) in PRECISIONS, name, f"one of {', '.join(PRECISIONS)}",
             getattr(cfg, name))
    for name in ("checkpoint_dir", "mlflow_uri"):
        need(isinstance(getattr(cfg, name), str) and getattr(cfg, name).strip() != "", name,
             "a non-empty value", getattr(cfg, name))
    if cfg.cascade:
        _check_positions(cfg)
    if cfg.creative_agent is not None and not cfg.cascade:
        raise ConfigError(f"--creative_agent {cfg.creative_agent} (or the original's "
                          f"--use_*_agent true) needs the cascade: --num_transformer_layers 2 "
                          f"or more (the single-stage model has no agent; the original would "
                          f"train without it)")
    if cfg.mask_type != "none" and not cfg.cascade:
        raise ConfigError("--mask_type needs the cascade (--num_transformer_layers 2): the "
                          "single-stage model sees no target to mask")
    if cfg.codec == "encodec" and not cfg.codec_weights:
        raise ConfigError(
            "--codec encodec needs --codec_weights PATH (the published "
            "encodec_24khz-d7cc33bc.th, a Hugging Face model.safetensors, or a file made "
            "by `python -m jaxaudio.codecs.convert`); jaxaudio never downloads weights. "
            "Use --codec mdct to train without weights.")
    if cfg.dataset_folder is None and not cfg.builtin:
        raise ConfigError("--dataset_folder is required (a folder with train/ and val/ pair "
                          "folders); run with no arguments, or with --builtin, for the "
                          "built-in synthetic dataset")


def _check_positions(cfg) -> None:
    from jaxaudio.nn.transformer import MAX_POSITIONS

    hop = cfg.encoding_dim if cfg.codec == "mdct" else ENCODEC_HOP
    frames = int(round(cfg.clip_seconds * SAMPLE_RATE)) // hop
    if frames > MAX_POSITIONS:
        longest = MAX_POSITIONS * hop / SAMPLE_RATE
        raise ConfigError(
            f"--clip_seconds {cfg.clip_seconds:g}: {frames} {cfg.codec} frames, but the "
            f"cascade's position table holds {MAX_POSITIONS} (at most {longest:.2f} s "
            f"with --codec {cfg.codec}"
            + (f" --encoding_dim {cfg.encoding_dim}" if cfg.codec == "mdct" else "")
            + "); use shorter clips" + (" or --codec encodec" if cfg.codec == "mdct" else ""))


def writable_folder(path: Path, shown: str) -> None:
    """``path`` is a folder that can be written, or can be made as one (``shown``: the flag
    and value the message names)."""
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{shown}: exists and is not a folder; expected a folder (or a new "
                          f"name) to write into")
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{shown}: {probe} is a file, so no folder can be made there; "
                          f"expected a writable folder")
    try:
        with tempfile.TemporaryFile(dir=probe, prefix=".jaxaudio-probe-"):
            pass
    except OSError as e:
        raise ConfigError(f"{shown}: no file can be made in {probe} ({e.strerror or e}); "
                          f"expected a writable folder") from None


def check_paths(cfg) -> None:
    if cfg.codec == "encodec" and not Path(cfg.codec_weights).is_file():
        raise ConfigError(f"--codec_weights: file not found: {cfg.codec_weights}")
    if cfg.resume is not None:
        if not Path(cfg.resume).exists():
            raise ConfigError(f"--resume: checkpoint not found: {cfg.resume}")
        if not Path(cfg.resume).is_dir():
            raise ConfigError(f"--resume {cfg.resume}: is a file; expected a checkpoint folder "
                              f"(best_model/, checkpoint_epoch_N/, interrupted_checkpoint/) or "
                              f"a --checkpoint_dir holding one")
    root = Path(cfg.dataset_folder)
    if cfg.makes_builtin_dataset:
        has_splits = (root / "train").is_dir() and (root / "val").is_dir()
        if root.exists() and not has_splits and (not root.is_dir() or any(root.iterdir())):
            raise ConfigError(f"{root} exists but holds no train/ and val/ folders; the "
                              f"built-in run makes its synthetic dataset there: move that "
                              f"folder away, or pass --dataset_folder")
        if not has_splits:
            writable_folder(root, f"--dataset_folder {root}")
    elif not root.is_dir():
        raise ConfigError(f"--dataset_folder: no such folder: {cfg.dataset_folder} "
                          f"(expected train/ and val/ folders of pair_XXXX_input.wav / "
                          f"pair_XXXX_output.wav)")
    else:
        missing = [s for s in ("train", "val") if not (root / s).is_dir()]
        if missing:
            raise ConfigError(f"--dataset_folder {cfg.dataset_folder}: no {' or '.join(missing)}"
                              f"/ folder inside; expected train/ and val/ folders of "
                              f"pair_XXXX_input.wav / pair_XXXX_output.wav")
    writable_folder(Path(cfg.checkpoint_dir), f"--checkpoint_dir {cfg.checkpoint_dir}")
    if cfg.use_cache:
        try:
            writable_folder(cfg.cache_path, f"--cache_dir {cfg.cache_path}")
        except ConfigError as e:
            if cfg.cache_dir is not None:
                raise
            raise ConfigError(f"{e} (the default --cache_dir, inside --dataset_folder); pass "
                              f"--cache_dir a writable folder, or --use_cache false") from None
    if not cfg.no_mlflow and cfg.mlflow_uri.startswith("sqlite:///"):
        db = Path(cfg.mlflow_uri[len("sqlite:///"):])
        if db.is_dir():
            raise ConfigError(f"--mlflow_uri {cfg.mlflow_uri}: {db} is a folder; expected a "
                              f"database file name")
        writable_folder(db.parent, f"--mlflow_uri {cfg.mlflow_uri}")


def validate(cfg):
    """Derived values filled in (:meth:`TrainConfig.resolved`), then every check: values, then
    paths. Returns ``cfg``; raises :class:`ConfigError` naming the flag."""
    cfg.resolved()
    check_values(cfg)
    check_paths(cfg)
    return cfg


# Flags that do nothing in some configurations: (flags, inert when, why). jaxaudio's own flags
# given there are errors; the original's flags (its scripts pass them regardless) get a note.
_NO_GAN = (lambda c: c.gan_weight == 0, "the run has no discriminator (--gan_weight 0)")
INERT_JAXAUDIO = [
    (("cascade_update",), lambda c: not c.cascade,
     "the single-stage model has no cascade (--num_transformer_layers 1)"),
    (("mask_gate",), lambda c: c.agent != "masking", "only the masking agent has a mask gate"),
    (("gan_variant", "gan_r1", "disc_dropout", "disc_lr_schedule", "disc_target_acc",
      "disc_noise_rate", "disc_noise_max"), *_NO_GAN),
    (("gan_r1",), lambda c: c.gan_variant == "original",
     "the R1 penalty is the stable GAN's (--gan_variant original has none)"),
    (("disc_noise_rate", "disc_noise_max"), lambda c: not c.disc_target_acc,
     "the adaptive instance noise is off (--disc_target_acc 0)"),
    (("plateau_factor", "plateau_patience", "plateau_threshold", "plateau_cooldown"),
     lambda c: c.lr_schedule != "plateau", "the schedule is not the plateau's (--lr_schedule)"),
    (("codec_weights",), lambda c: c.codec != "encodec", "the MDCT codec has no weights"),
    (("cache_dir",), lambda c: not c.use_cache, "the latent cache is off (--use_cache false)"),
]
INERT_ORIGINAL = [
    (("disc_lr", "disc_update_freq", "pure_gan_mode", "gan_curriculum_start_epoch",
      "gan_noise_ceiling"), *_NO_GAN),
    (("mask_reg_weight",), lambda c: c.agent is None, "no creative agent is on"),
    (("balance_loss_weight",), lambda c: c.agent != "masking",
     "the balance loss is the masking agent's"),
    (("mask_temporal_segment",), lambda c: c.mask_type not in ("temporal", "hybrid"),
     "only --mask_type temporal and hybrid use it"),
    (("mask_freq_split",), lambda c: c.mask_type not in ("frequency", "hybrid"),
     "only --mask_type frequency and hybrid use it"),
    (("mask_channel_keep",), lambda c: c.mask_type != "spectral", "only --mask_type spectral uses it"),
    (("mask_energy_threshold",), lambda c: c.mask_type != "energy",
     "only --mask_type energy uses it"),
]


def check_given(cfg, given) -> list[str]:
    """Flags given on the command line that do nothing in ``cfg``: raises
    :class:`ConfigError` for jaxaudio's own; returns a note for each of the original's."""
    for flags, inert, why in INERT_JAXAUDIO:
        for flag in flags:
            if flag in given and inert(cfg):
                raise ConfigError(f"--{flag}: does nothing here: {why}")
    return [f"--{flag} has no effect here: {why}" for flags, inert, why in INERT_ORIGINAL
            for flag in flags if flag in given and inert(cfg)]
