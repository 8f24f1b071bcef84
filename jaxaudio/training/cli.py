"""`python -m jaxaudio.train` flags: the original's names and meanings, plus jaxaudio's own."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Sequence

from jaxaudio.training.config import (
    BUILTIN_DEFAULTS,
    CODECS,
    GAN_VARIANTS,
    LR_SCHEDULES,
    MASK_TYPES,
    PRECISIONS,
    ConfigError,
    TrainConfig,
)

HELP: dict[str, str] = {
    "encoding_dim": "latent dimension D; must equal the codec's (128 for EnCodec 24 kHz and the default MDCT)",
    "nhead": "attention heads of every transformer layer",
    "num_layers": "transformer encoder layers per stage",
    "num_transformer_layers": "1 = single stage on the input; 2 or more = the 2-stage cascade on input and target",
    "dropout": "dropout rate in the transformers and position encodings",
    "dataset_folder": "folder with train/ and val/ of pair_XXXX_input.wav + pair_XXXX_output.wav",
    "clip_seconds": "clip length in seconds; longer files are cropped, shorter ones padded",
    "shuffle_targets": "pair each input with a random target instead of its own continuation (true/false)",
    "skip_bad_files": "skip unreadable or invalid pairs with a warning instead of stopping (true/false)",
    "use_cache": "encode every clip once into the latent cache instead of every step (true/false)",
    "cache_dir": "where the latent cache lives (default: <dataset_folder>/.jaxaudio_cache)",
    "epochs": "number of epochs",
    "batch_size": "batch size per device (the global batch is this times the number of devices)",
    "lr": "AdamW learning rate (halved by ReduceLROnPlateau after 5 epochs without improvement)",
    "weight_decay": "AdamW weight decay (generator and discriminator)",
    "grad_clip": "global gradient-norm clip of the generator",
    "patience": "early stopping after this many epochs without a better validation loss",
    "seed": "random seed: parameters, data order, dropout and noise all derive from it",
    "checkpoint_dir": "where checkpoints are written (best, every --save_every epochs, interrupted)",
    "save_every": "save a checkpoint every N epochs",
    "resume": "checkpoint to resume from (restores everything, including the data position); a --checkpoint_dir picks its newest complete checkpoint",
    "unity_test": "sanity check: the target becomes the decoded input (true/false)",
    "anti_cheating": "noise level on the cascade's input in training (0 = none)",
    "loss_weight_input": "weight of RMS(output, input)",
    "loss_weight_target": "weight of RMS(output, target)",
    "loss_weight_spectral": "weight of the multi-resolution STFT loss (against input and target, averaged)",
    "loss_weight_mel": "weight of the mel-spectrogram loss (against input and target, averaged)",
    "mask_type": "fixed complementary masking of input and target latents",
    "mask_temporal_segment": "temporal masking: segment length in frames",
    "mask_freq_split": "frequency/hybrid masking: share of latent channels that go to the input",
    "mask_channel_keep": "spectral masking: share of channels kept per source",
    "mask_energy_threshold": "energy masking: percentile threshold of frame energy",
    "use_creative_agent": "learnable attention masking agent (cascade only) (true/false)",
    "use_compositional_agent": "rhythm/harmony/timbre compositional agent (cascade only) (true/false)",
    "mask_reg_weight": "weight of the agent's mask regulariser (masking) or novelty loss (compositional)",
    "balance_loss_weight": "weight of the masking agent's 50/50 balance loss",
    "corr_weight": "weight of the anti-modulation envelope-correlation penalty",
    "gan_weight": "weight of the latent GAN's generator loss (0 = no discriminator)",
    "disc_lr": "discriminator learning rate (default: half of --lr)",
    "disc_update_freq": "update the discriminator every N steps",
    "pure_gan_mode": "curriculum rate from music to noise inputs (alpha = rate x epochs since start); 0 = off",
    "gan_curriculum_start_epoch": "epoch at which the pure-GAN curriculum starts",
    "gan_noise_ceiling": "largest noise fraction alpha of the curriculum",
    "creative_agent": "a registered creative agent by name (masking, compositional, ...); overrides the two agent flags",
    "gan_variant": "stable: time-centred discriminator, hinge loss, R1 penalty, adaptive weight (no frame-rate buzz); original: the original's BCE latent GAN",
    "gan_r1": "R1 gradient-penalty weight of the stable GAN's discriminator",
    "loss_weights_extra": "extra loss weights NAME=W,NAME=W by term name (see ARCHITECTURE.md); overrides the weight flags",
    "lr_schedule": "plateau: ReduceLROnPlateau on the validation loss; cosine: warm-up then cosine decay to --min_lr over --epochs",
    "warmup_epochs": "linear learning-rate warm-up epochs (both schedules)",
    "min_lr": "lowest learning rate (default: lr / 100; the original's plateau: 0)",
    "plateau_factor": "plateau: factor of each reduction",
    "plateau_patience": "plateau: epochs without improvement before a reduction",
    "plateau_threshold": "plateau: relative improvement that counts (the original's: 1e-4)",
    "plateau_cooldown": "plateau: epochs after a reduction before counting again (the original's: 0)",
    "codec": "latent codec: mdct (weight-free, the default) or encodec (needs --codec_weights)",
    "codec_weights": "EnCodec 24 kHz weights: encodec_24khz-d7cc33bc.th, HF model.safetensors or a converted file",
    "precision": "fp32, or bf16 matrix work (FFTs, logs and reductions stay in float32)",
    "mlflow_uri": "MLflow tracking URI",
    "no_mlflow": "do not log to MLflow",
    "log_samples": "validation clips logged to MLflow each epoch (WAV and plots)",
    "max_nonfinite_steps": "stop after this many consecutive steps with a non-finite loss or gradient",
    "stop_after_steps": "stop after this many steps of this process, saving a resumable checkpoint as SIGTERM does (e.g. before a job's time limit)",
}

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
    defaults = TrainConfig()
    choices = {"mask_type": MASK_TYPES, "codec": CODECS, "precision": PRECISIONS,
               "gan_variant": GAN_VARIANTS, "lr_schedule": LR_SCHEDULES}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "builtin":
            continue
        default = getattr(defaults, f.name)
        flag = "--loss_weights" if f.name == "loss_weights_extra" else f"--{f.name}"
        shown = "" if f.name == "no_mlflow" else f" (default: {default})"
        kw: dict[str, Any] = dict(default=argparse.SUPPRESS, help=HELP[f.name] + shown,
                                  dest=f.name)
        if f.name == "no_mlflow":
            p.add_argument(flag, action="store_true", **kw)
            continue
        if isinstance(default, bool):
            p.add_argument(flag, type=_parse_bool, nargs="?", const=True, metavar="true|false", **kw)
        elif f.name in choices:
            p.add_argument(flag, choices=choices[f.name], **kw)
        elif f.name in ("disc_lr", "min_lr"):
            p.add_argument(flag, type=_optional(float), **kw)
        elif f.name in ("stop_after_steps",):
            p.add_argument(flag, type=_optional(int), **kw)
        elif f.name in ("resume", "codec_weights", "cache_dir", "dataset_folder", "creative_agent",
                        "loss_weights_extra"):
            p.add_argument(flag, type=_optional(str), **kw)
        else:
            p.add_argument(flag, type=type(default), **kw)
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
