"""The typed training configuration and the command line behind it.

Flag names and meanings are the original's (`train_simple_ddp.py`); boolean flags accept the
original's `--flag true/false` spelling and a bare `--flag`. jaxaudio adds `--codec`,
`--codec_weights`, `--clip_seconds`, `--precision`, `--mlflow_uri`, `--no_mlflow` and a few
loader options. Every value is checked before any work starts (`TrainConfig.validate`).

With no arguments at all, `python -m jaxaudio.train` runs the built-in default: a synthetic
dataset it makes itself, the MDCT codec and a small cascade (see `BUILTIN_DEFAULTS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MASK_TYPES = ("none", "temporal", "frequency", "spectral", "energy", "hybrid")
from jaxaudio.codecs.registry import CODECS  # noqa: E402 - the one list of codec names
PRECISIONS = ("fp32", "bf16")

# The built-in run: small enough for a 2-core CPU in about five minutes.
BUILTIN_DATASET = "data/synthetic"
SAMPLE_RATE = 24000  # both codecs
ENCODEC_HOP = 320  # EnCodec 24 kHz: 75 latent frames a second


SPECTRAL_PENALTY_WEIGHT = 0.01  # the original's fixed weight of the spectral outlier penalty
GAN_VARIANTS = ("stable", "original")
LR_SCHEDULES = ("plateau", "cosine")


class ConfigError(ValueError):
    """A bad flag value, named with what was expected."""


def parse_loss_weights(text: str | None) -> dict[str, float]:
    """``"name=w,name=w"`` -> ``{name: w}``; names must be loss terms the objective knows."""
    if not text:
        return {}
    from jaxaudio.training.objective import known_terms

    out: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.strip().partition("=")
        try:
            w = float(value)
        except ValueError:
            w = math.nan
        if not sep or not math.isfinite(w) or w < 0:
            raise ConfigError(f"--loss_weights: expected NAME=WEIGHT pairs with weights >= 0, "
                              f"separated by commas, got {item.strip()!r}")
        if name not in known_terms():
            raise ConfigError(f"--loss_weights: unknown loss term {name!r}; known: "
                              f"{', '.join(known_terms())}")
        out[name] = w
    return out


@dataclass
class TrainConfig:
    # Model (the original's defaults)
    encoding_dim: int = 128
    nhead: int = 8
    num_layers: int = 4
    num_transformer_layers: int = 1
    dropout: float = 0.1
    # Data
    dataset_folder: str | None = None
    clip_seconds: float = 16.0
    shuffle_targets: bool = False
    skip_bad_files: bool = False
    use_cache: bool = True
    cache_dir: str | None = None
    # Optimisation
    epochs: int = 200
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 10.0
    patience: int = 20
    seed: int = 42
    # Checkpoints
    checkpoint_dir: str = "checkpoints_simple"
    save_every: int = 10
    resume: str | None = None
    # Behaviour
    unity_test: bool = False
    anti_cheating: float = 0.0
    # Loss weights
    loss_weight_input: float = 0.0
    loss_weight_target: float = 1.0
    loss_weight_spectral: float = 0.0
    loss_weight_mel: float = 0.0
    # Fixed complementary masking
    mask_type: str = "none"
    mask_temporal_segment: int = 150
    mask_freq_split: float = 0.3
    mask_channel_keep: float = 0.5
    mask_energy_threshold: float = 0.7
    # Creative agents
    use_creative_agent: bool = False
    use_compositional_agent: bool = False
    mask_reg_weight: float = 0.1
    balance_loss_weight: float = 5.0
    corr_weight: float = 0.0
    # GAN
    gan_weight: float = 0.0
    disc_lr: float | None = None
    disc_update_freq: int = 1
    pure_gan_mode: float = 0.0
    gan_curriculum_start_epoch: int = 0
    gan_noise_ceiling: float = 1.0
    # jaxaudio additions
    creative_agent: str | None = None
    gan_variant: str = "stable"
    gan_r1: float = 1.0
    loss_weights_extra: str | None = None
    lr_schedule: str = "plateau"
    warmup_epochs: int = 0
    min_lr: float | None = None
    plateau_factor: float = 0.5
    plateau_patience: int = 5
    plateau_threshold: float = 1e-2
    plateau_cooldown: int = 2
    codec: str = "mdct"
    codec_weights: str | None = None
    precision: str = "fp32"
    mlflow_uri: str = "sqlite:///mlruns.db"
    no_mlflow: bool = False
    log_samples: int = 3
    max_nonfinite_steps: int = 5
    stop_after_steps: int | None = None
    builtin: bool = field(default=False, repr=False)

    @property
    def disc_lr_value(self) -> float:
        return self.disc_lr if self.disc_lr is not None else 0.5 * self.lr

    @property
    def makes_builtin_dataset(self) -> bool:
        """The built-in run makes its synthetic dataset, and only at the built-in path."""
        return self.builtin and self.dataset_folder == BUILTIN_DATASET

    @property
    def cascade(self) -> bool:
        return self.num_transformer_layers > 1

    @property
    def agent(self) -> str | None:
        """Which creative agent the model really builds (the original ignores agents without a
        cascade): ``--creative_agent NAME``, else the original's flags."""
        from jaxaudio.agents.registry import agent_kind

        if self.cascade and self.creative_agent:
            return self.creative_agent
        return agent_kind({"use_creative_agent": self.use_creative_agent,
                           "use_compositional_agent": self.use_compositional_agent},
                          self.cascade)

    @property
    def min_lr_value(self) -> float:
        return self.min_lr if self.min_lr is not None else 0.01 * self.lr

    def loss_weights(self) -> dict[str, float]:
        """The objective's ``{term name: weight}``: the original's flags, then
        ``--loss_weights NAME=W,...`` (see :mod:`jaxaudio.training.objective`)."""
        weights = {
            "rms_input": self.loss_weight_input, "rms_target": self.loss_weight_target,
            "spectral": self.loss_weight_spectral, "mel": self.loss_weight_mel,
            "corr_penalty": self.corr_weight, "spectral_penalty": SPECTRAL_PENALTY_WEIGHT,
            "mask_reg_loss": self.mask_reg_weight, "novelty_loss": self.mask_reg_weight,
            "balance_loss": self.balance_loss_weight, "gan_loss": self.gan_weight,
        }
        weights.update(parse_loss_weights(self.loss_weights_extra))
        return weights

    def validate(self) -> "TrainConfig":
        def need(cond: bool, flag: str, expected: str, value: Any) -> None:
            if not cond:
                raise ConfigError(f"--{flag}: expected {expected}, got {value!r}")

        for name in ("encoding_dim", "nhead", "num_layers", "num_transformer_layers", "epochs",
                     "batch_size", "patience", "save_every", "disc_update_freq",
                     "mask_temporal_segment", "max_nonfinite_steps"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, name, "a positive integer", v)
        need(self.encoding_dim % 2 == 0, "encoding_dim", "an even number (sinusoidal positions)",
             self.encoding_dim)
        d0 = self.encoding_dim if not self.cascade else 2 * self.encoding_dim
        d1 = self.encoding_dim if not self.cascade else 3 * self.encoding_dim
        need(d0 % self.nhead == 0 and d1 % self.nhead == 0, "nhead",
             f"a divisor of every stage width ({d0}" + (f" and {d1})" if self.cascade else ")"),
             self.nhead)
        for name in ("lr", "clip_seconds"):
            v = getattr(self, name)
            need(math.isfinite(v) and v > 0, name, "a positive number", v)
        for name in ("weight_decay", "anti_cheating", "loss_weight_input", "loss_weight_target",
                     "loss_weight_spectral", "loss_weight_mel", "mask_reg_weight",
                     "balance_loss_weight", "corr_weight", "gan_weight", "pure_gan_mode",
                     "grad_clip"):
            v = getattr(self, name)
            need(math.isfinite(v) and v >= 0, name, "a number >= 0", v)
        need(0.0 <= self.dropout < 1.0, "dropout", "a rate in [0, 1)", self.dropout)
        for name in ("mask_freq_split", "mask_channel_keep", "mask_energy_threshold",
                     "gan_noise_ceiling"):
            v = getattr(self, name)
            need(0.0 <= v <= 1.0, name, "a fraction in [0, 1]", v)
        need(self.disc_lr is None or (math.isfinite(self.disc_lr) and self.disc_lr > 0),
             "disc_lr", "a positive number", self.disc_lr)
        need(self.gan_curriculum_start_epoch >= 0, "gan_curriculum_start_epoch",
             "an integer >= 0", self.gan_curriculum_start_epoch)
        need(self.mask_type in MASK_TYPES, "mask_type", f"one of {', '.join(MASK_TYPES)}",
             self.mask_type)
        need(self.codec in CODECS, "codec", f"one of {', '.join(CODECS)}", self.codec)
        need(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}",
             self.precision)
        need(self.log_samples >= 0, "log_samples", "an integer >= 0", self.log_samples)
        need(self.stop_after_steps is None or self.stop_after_steps >= 1, "stop_after_steps",
             "a positive integer", self.stop_after_steps)
        if self.cascade:
            from jaxaudio.nn.transformer import MAX_POSITIONS

            hop = self.encoding_dim if self.codec == "mdct" else ENCODEC_HOP
            frames = int(round(self.clip_seconds * SAMPLE_RATE)) // hop
            if frames > MAX_POSITIONS:
                longest = MAX_POSITIONS * hop / SAMPLE_RATE
                raise ConfigError(
                    f"--clip_seconds {self.clip_seconds:g}: {frames} {self.codec} frames, but the "
                    f"cascade's position table holds {MAX_POSITIONS} (at most {longest:.2f} s "
                    f"with --codec {self.codec}"
                    + (f" --encoding_dim {self.encoding_dim}" if self.codec == "mdct" else "")
                    + "); use shorter clips" + (" or --codec encodec" if self.codec == "mdct" else ""))
        need(self.gan_variant in GAN_VARIANTS, "gan_variant", f"one of {', '.join(GAN_VARIANTS)}",
             self.gan_variant)
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule",
             f"one of {', '.join(LR_SCHEDULES)}", self.lr_schedule)
        need(math.isfinite(self.gan_r1) and self.gan_r1 >= 0, "gan_r1", "a number >= 0",
             self.gan_r1)
        need(isinstance(self.warmup_epochs, int) and self.warmup_epochs >= 0, "warmup_epochs",
             "an integer >= 0", self.warmup_epochs)
        need(self.min_lr is None or (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr),
             "min_lr", "a number in [0, --lr]", self.min_lr)
        need(0 < self.plateau_factor < 1, "plateau_factor", "a factor in (0, 1)",
             self.plateau_factor)
        for name in ("plateau_patience", "plateau_cooldown"):
            need(isinstance(getattr(self, name), int) and getattr(self, name) >= 0, name,
                 "an integer >= 0", getattr(self, name))
        need(math.isfinite(self.plateau_threshold) and 0 <= self.plateau_threshold < 1,
             "plateau_threshold", "a relative threshold in [0, 1)", self.plateau_threshold)
        parse_loss_weights(self.loss_weights_extra)
        if self.creative_agent is not None:
            from jaxaudio.agents.registry import agents

            need(self.creative_agent in agents(), "creative_agent",
                 f"one of {', '.join(sorted(agents()))}", self.creative_agent)
        if self.use_creative_agent and self.use_compositional_agent:
            raise ConfigError("--use_creative_agent and --use_compositional_agent are mutually "
                              "exclusive: choose one creative agent")
        if self.mask_type != "none" and not self.cascade:
            raise ConfigError("--mask_type needs the cascade (--num_transformer_layers 2): the "
                              "single-stage model sees no target to mask")
        if self.codec == "encodec":
            if not self.codec_weights:
                raise ConfigError(
                    "--codec encodec needs --codec_weights PATH (the published "
                    "encodec_24khz-d7cc33bc.th, a Hugging Face model.safetensors, or a file made "
                    "by `python -m jaxaudio.codecs.convert`); jaxaudio never downloads weights. "
                    "Use --codec mdct to train without weights.")
            if not Path(self.codec_weights).is_file():
                raise ConfigError(f"--codec_weights: file not found: {self.codec_weights}")
        if self.resume is not None and not Path(self.resume).exists():
            raise ConfigError(f"--resume: checkpoint not found: {self.resume}")
        if self.dataset_folder is None:
            if not self.builtin:
                raise ConfigError("--dataset_folder is required (a folder with train/ and val/ "
                                  "pair folders); run with no arguments, or with --builtin, for "
                                  "the built-in synthetic dataset")
            self.dataset_folder = BUILTIN_DATASET
        if not Path(self.dataset_folder).is_dir() and not self.makes_builtin_dataset:
            raise ConfigError(f"--dataset_folder: no such folder: {self.dataset_folder} "
                              f"(expected train/ and val/ folders of pair_XXXX_input.wav / "
                              f"pair_XXXX_output.wav)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**d)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# What `python -m jaxaudio.train` runs with no arguments (or with --builtin, before other flags).
BUILTIN_DEFAULTS: dict[str, Any] = dict(
    builtin=True,
    codec="mdct",
    encoding_dim=128,
    nhead=4,
    num_layers=1,
    num_transformer_layers=2,
    dropout=0.1,
    clip_seconds=1.5,
    epochs=5,
    batch_size=8,
    lr=3e-4,
    loss_weight_input=0.3,
    loss_weight_target=0.3,
    loss_weight_spectral=0.01,
    loss_weight_mel=0.0,
    checkpoint_dir="runs/builtin/checkpoints",
    save_every=2,
    patience=20,
    log_samples=2,
)
