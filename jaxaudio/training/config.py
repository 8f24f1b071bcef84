"""The typed training configuration: every field with its own help, its checks, its derived values.

Flag names and meanings are the original's (`train_simple_ddp.py`); boolean flags accept the
original's `--flag true/false` spelling and a bare `--flag`. jaxaudio adds `--codec`,
`--codec_weights`, `--clip_seconds`, `--precision`, `--mlflow_uri`, `--no_mlflow` and a few
loader options. :mod:`jaxaudio.training.cli` builds the command line from the fields below
(their ``help`` metadata), so a new option is one field here.

Two kinds of code live here: the fields, and derived values (properties such as
``cascade``, ``agent``, ``dataset_path``, plus
:meth:`TrainConfig.resolved`, which fills the built-in dataset folder). The checks live in
:mod:`jaxaudio.training.config_checks` (``validate``: values, then paths; each raises
:class:`ConfigError` naming the flag and what was expected), which the command line calls
before any data is read or anything compiled.

With no arguments at all, `python -m jaxaudio.train` runs the built-in default: a synthetic
dataset it makes itself, the MDCT codec and a small cascade (see `BUILTIN_DEFAULTS`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
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
MAX_SEED = 2**32 - 1  # NumPy's and JAX's seeds are uint32 words


SPECTRAL_PENALTY_WEIGHT = 0.01  # the original's fixed weight of the spectral outlier penalty
# What a field left at None (its flag not given) takes, by the variant that decides it: each
# default written once, here. The original's values are its variants' (the additive cascade
# update, the original GAN).
VARIANT_DEFAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    "spectral_penalty_weight": ("cascade_update", {"additive": SPECTRAL_PENALTY_WEIGHT,
                                                   "gain": 0.0}),
    "disc_lr_schedule": ("gan_variant", {"original": "fixed", "stable": "follow"}),
    "disc_target_acc": ("gan_variant", {"original": 0.0, "stable": 0.7}),
}
# ... and those that are a fraction of --lr.
LR_FRACTIONS = {"disc_lr": 0.5, "min_lr": 0.01}
# Saved keys of earlier versions: read and mapped (see TrainConfig.from_dict).
RENAMED_AGENT_FLAGS = {"use_compositional_agent": "compositional", "use_creative_agent": "masking"}
# Saved configurations without these keys predate them and meant the original's behaviour.
LEGACY_DEFAULTS = {"mask_gate": "learned", "cascade_update": "additive", "gan_variant": "original", "plateau_threshold": 1e-4,
                   "plateau_cooldown": 0, "min_lr": 0.0, "disc_lr_schedule": "fixed",
                   "spectral_penalty_weight": SPECTRAL_PENALTY_WEIGHT, "disc_target_acc": 0.0}
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


def field_kind(hint) -> tuple[type, bool]:
    """A field's type hint as ``(type, optional)``: ``(int, True)`` for ``int | None``."""
    args = [a for a in getattr(hint, "__args__", ()) if a is not type(None)]
    if args:
        return args[0], True
    return hint, False


def opt(default: Any, help: str, **meta: Any) -> Any:
    """A config field and its command-line help (``meta``: ``choices``, ``flag=False``)."""
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    # Model (the original's defaults)
    encoding_dim: int = opt(128, "latent dimension D; must equal the codec's (128 for EnCodec "
                                 "24 kHz and the default MDCT)")
    nhead: int = opt(8, "attention heads of every transformer layer")
    num_layers: int = opt(4, "transformer encoder layers per stage")
    num_transformer_layers: int = opt(1, "1 = single stage on the input; 2 or more = the 2-stage "
                                         "cascade on input and target")
    dropout: float = opt(0.1, "dropout rate in the transformers and position encodings")
    # Data
    dataset_folder: str | None = opt(None, "folder with train/ and val/ of pair_XXXX_input.wav "
                                           "+ pair_XXXX_output.wav")
    clip_seconds: float = opt(16.0, "clip length in seconds; longer files are cropped, shorter "
                                    "ones padded")
    shuffle_targets: bool = opt(False, "pair each input with a random target instead of its own "
                                       "continuation (true/false)")
    skip_bad_files: bool = opt(False, "skip unreadable or invalid pairs with a warning instead "
                                      "of stopping (true/false)")
    use_cache: bool = opt(True, "encode every clip once into the latent cache instead of every "
                                "step (true/false)")
    cache_dir: str | None = opt(None, "where the latent cache lives (default: "
                                      "<dataset_folder>/.jaxaudio_cache)")
    # Optimisation
    epochs: int = opt(200, "number of epochs")
    batch_size: int = opt(16, "batch size per device (the global batch is this times the "
                              "number of devices)")
    lr: float = opt(1e-4, "AdamW learning rate (halved by ReduceLROnPlateau after 5 epochs "
                          "without improvement)")
    weight_decay: float = opt(0.01, "AdamW weight decay (generator and discriminator)")
    grad_clip: float = opt(10.0, "global gradient-norm clip of the generator")
    patience: int = opt(20, "early stopping after this many epochs without a better "
                            "validation loss")
    seed: int = opt(42, "random seed: parameters, data order, dropout and noise all derive "
                        "from it")
    # Checkpoints
    checkpoint_dir: str = opt("checkpoints_simple", "where checkpoints are written (best, every "
                                                    "--save_every epochs, interrupted)")
    save_every: int = opt(10, "save a checkpoint every N epochs")
    resume: str | None = opt(None, "checkpoint to resume from (restores everything, including "
                                   "the data position); a --checkpoint_dir picks its newest "
                                   "complete checkpoint")
    # Behaviour
    unity_test: bool = opt(False, "sanity check: the target becomes the decoded input "
                                  "(true/false)")
    anti_cheating: float = opt(0.0, "noise level on the cascade's input in training (0 = none)")
    # Loss weights
    loss_weight_input: float = opt(0.0, "weight of RMS(output, input)")
    loss_weight_target: float = opt(1.0, "weight of RMS(output, target)")
    loss_weight_spectral: float = opt(0.0, "weight of the multi-resolution STFT loss (against "
                                           "input and target, averaged)")
    loss_weight_mel: float = opt(0.0, "weight of the mel-spectrogram loss (against input and "
                                      "target, averaged)")
    # Fixed complementary masking
    mask_type: str = opt("none", "fixed complementary masking of input and target latents",
                         choices=MASK_TYPES)
    mask_temporal_segment: int = opt(150, "temporal masking: segment length in frames")
    mask_freq_split: float = opt(0.3, "frequency/hybrid masking: share of latent channels that "
                                      "go to the input")
    mask_channel_keep: float = opt(0.5, "spectral masking: share of channels kept per source")
    mask_energy_threshold: float = opt(0.7, "energy masking: percentile threshold of frame "
                                            "energy")
    # Creative agents
    creative_agent: str | None = opt(None, "the creative agent in front of the cascade: masking "
                                           "(learnable attention masks; the original's "
                                           "--use_creative_agent true) or compositional "
                                           "(rhythm/harmony/timbre; --use_compositional_agent "
                                           "true); needs --num_transformer_layers 2 or more")
    mask_reg_weight: float = opt(0.1, "weight of the agent's mask regulariser (masking) or "
                                      "novelty loss (compositional)")
    balance_loss_weight: float = opt(5.0, "weight of the masking agent's 50/50 balance loss")
    corr_weight: float = opt(0.0, "weight of the anti-modulation envelope-correlation penalty")
    # GAN
    gan_weight: float = opt(0.0, "weight of the latent GAN's generator loss (0 = no "
                                 "discriminator)")
    disc_lr: float | None = opt(None, "discriminator learning rate (default: half of --lr)")
    disc_update_freq: int = opt(1, "update the discriminator every N steps")
    pure_gan_mode: float = opt(0.0, "curriculum rate from music to noise inputs (alpha = rate x "
                                    "epochs since start); 0 = off")
    gan_curriculum_start_epoch: int = opt(0, "epoch at which the pure-GAN curriculum starts")
    gan_noise_ceiling: float = opt(1.0, "largest noise fraction alpha of the curriculum")
    # jaxaudio additions: training core
    agent_options: str | None = opt(None, "the creative agent's own sizes, NAME=V,NAME=V "
                                          "(compositional: component_dim 64, composer_layers "
                                          "4, composer_heads 8, the original's)")
    cascade_update: str = opt("gain", "how each stage changes its residual: gain (a bounded "
                                      "gain per latent cell; no frame-rate buzz) or additive "
                                      "(the original's)", choices=("gain", "additive"))
    mask_gate: str = opt("onset", "masking agent: onset (the louder part takes each cell, the "
                                  "input at its hits and the target between them), energy "
                                  "(the louder part alone) or learned (the original's)",
                         choices=("onset", "energy", "learned"))
    gan_variant: str = opt("stable", "stable: time-centred discriminator, hinge loss, R1 "
                                     "penalty, adaptive weight (no frame-rate buzz); original: "
                                     "the original's BCE latent GAN", choices=GAN_VARIANTS)
    gan_r1: float = opt(1.0, "R1 gradient-penalty weight of the stable GAN's discriminator")
    spectral_penalty_weight: float | None = opt(
        None, "weight of the original's spectral outlier penalty on 1.8-2.2, 3.8-4.2 and "
              "5.8-6.2 kHz (default: 0.01, the original's, with --cascade_update additive, "
              "whose artefacts it was made for; 0 with gain, where it only carves notches into "
              "those bands)")
    disc_dropout: float = opt(0.3, "dropout in the discriminator (the original's 0.3)")
    disc_lr_schedule: str | None = opt(None, "follow: the discriminator's learning rate follows "
                                             "the generator's schedule (default with the stable "
                                             "GAN); fixed: --disc_lr throughout (the original's)",
                                       choices=("follow", "fixed"))
    disc_target_acc: float | None = opt(
        None, "adaptive instance noise on the discriminator's inputs holds its training "
              "accuracy near this value (default: 0.7 with the stable GAN; 0: off, the "
              "original's)")
    disc_noise_rate: float = opt(0.005, "how far each discriminator update moves the adaptive "
                                        "noise's control variable (0-1: noise 0 to "
                                        "--disc_noise_max)")
    disc_noise_max: float = opt(100.0, "largest instance-noise level, in standard deviations "
                                       "of the real latents")
    loss_weights: str | None = opt(None, "loss weights by term name, NAME=W,NAME=W (see "
                                         "ARCHITECTURE.md); overrides the weight flags")
    lr_schedule: str = opt("plateau", "plateau: ReduceLROnPlateau on the validation loss; "
                                      "cosine: cosine decay to --min_lr over --epochs",
                           choices=LR_SCHEDULES)
    warmup_epochs: int = opt(0, "linear learning-rate warm-up epochs (both schedules)")
    min_lr: float | None = opt(None, "lowest learning rate (default: lr / 100; the original's "
                                     "plateau: 0)")
    plateau_factor: float = opt(0.5, "plateau: factor of each reduction")
    plateau_patience: int = opt(5, "plateau: epochs without improvement before a reduction")
    plateau_threshold: float = opt(1e-2, "plateau: relative improvement that counts (the "
                                         "original's: 1e-4)")
    plateau_cooldown: int = opt(2, "plateau: epochs after a reduction before counting again "
                                   "(the original's: 0)")
    # jaxaudio additions: codec, precision, logging
    codec: str = opt("mdct", "latent codec: mdct (weight-free, the default) or encodec (needs "
                             "--codec_weights)", choices=CODECS)
    codec_weights: str | None = opt(None, "EnCodec 24 kHz weights: encodec_24khz-d7cc33bc.th, "
                                          "HF model.safetensors or a converted file")
    precision: str = opt("fp32", "fp32, or bf16 matrix work (FFTs, logs and reductions stay in "
                                 "float32)", choices=PRECISIONS)
    codec_precision: str = opt("fp32", "the frozen codec's decode inside the train step's "
                                       "losses: fp32, or bf16 (EnCodec's convolutions and "
                                       "LSTM products in bfloat16; the LSTM's states, the last "
                                       "convolution, validation and generated audio stay "
                                       "float32)", choices=PRECISIONS)
    mlflow_uri: str = opt("sqlite:///mlruns.db", "MLflow tracking URI")
    no_mlflow: bool = opt(False, "do not log to MLflow", switch=True)
    quality_clips: int = opt(4, "validation clips measured at every validation with "
                                "jaxaudio.evaluate's metrics, logged as quality_* (0 = off)")
    log_samples: int = opt(3, "validation clips logged to MLflow each epoch (WAV and plots)")
    max_nonfinite_steps: int = opt(5, "stop after this many consecutive steps with a "
                                      "non-finite loss or gradient")
    stop_after_steps: int | None = opt(None, "stop after this many steps of this process, "
                                             "saving a resumable checkpoint as SIGTERM does "
                                             "(e.g. before a job's time limit)")
    allow_dataset_change: bool = opt(False, "with --resume: continue on a dataset whose "
                                            "contents differ from the checkpoint's (the best "
                                            "model is then chosen afresh)", switch=True)
    debug: bool = opt(False, "on an error, print the whole traceback after the one-line "
                             "message", switch=True)
    builtin: bool = field(default=False, repr=False, metadata={"flag": False})

    # --- derived values --------------------------------------------------------------------

    def __post_init__(self) -> None:
        """Fill what a flag left at None from the variant that decides it
        (:data:`VARIANT_DEFAULTS`, :data:`LR_FRACTIONS`), so every configuration, saved ones
        too, holds the values it runs with."""
        for name, (variant, values) in VARIANT_DEFAULTS.items():
            if getattr(self, name) is None and getattr(self, variant) in values:
                setattr(self, name, values[getattr(self, variant)])
        lr_ok = isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0
        for name, fraction in LR_FRACTIONS.items():
            if getattr(self, name) is None and lr_ok:  # a bad --lr is the checks' to name
                setattr(self, name, fraction * self.lr)

    @property
    def makes_builtin_dataset(self) -> bool:
        """The built-in run makes its synthetic dataset, and only at the built-in path."""
        return self.builtin and self.dataset_folder == BUILTIN_DATASET

    @property
    def cascade(self) -> bool:
        return self.num_transformer_layers > 1

    @property
    def agent(self) -> str | None:
        """The creative agent the model builds (agents exist only in the cascade; a run that
        names one without it is refused by the checks)."""
        return self.creative_agent if self.cascade else None

    @property
    def agent_option_map(self) -> dict[str, int]:
        """``--agent_options`` as ``{name: value}`` (checked against the agent's options)."""
        from jaxaudio.agents.registry import parse_agent_options

        try:
            return parse_agent_options(self.agent_options, self.agent)
        except ValueError as e:
            raise ConfigError(f"--agent_options: {e}") from e

    def loss_weight_map(self) -> dict[str, float]:
        """The objective's ``{term name: weight}``: the original's flags, then
        ``--loss_weights NAME=W,...`` (see :mod:`jaxaudio.training.objective`)."""
        weights = {
            "rms_input": self.loss_weight_input, "rms_target": self.loss_weight_target,
            "spectral": self.loss_weight_spectral, "mel": self.loss_weight_mel,
            "corr_penalty": self.corr_weight, "spectral_penalty": self.spectral_penalty_weight,
            "mask_reg_loss": self.mask_reg_weight, "novelty_loss": self.mask_reg_weight,
            "balance_loss": self.balance_loss_weight, "gan_loss": self.gan_weight,
        }
        weights.update(parse_loss_weights(self.loss_weights))
        return weights

    @property
    def dataset_path(self) -> Path:
        """The dataset folder with links and ``..`` resolved: how a resume recognises it."""
        return Path(self.dataset_folder or BUILTIN_DATASET).resolve()

    @property
    def cache_path(self) -> Path:
        return Path(self.cache_dir or Path(self.dataset_folder or BUILTIN_DATASET)
                    / ".jaxaudio_cache")

    def resolved(self) -> "TrainConfig":
        """Fill what a flag left to be derived: the built-in run's dataset folder."""
        if self.dataset_folder is None and self.builtin:
            self.dataset_folder = BUILTIN_DATASET
        return self

    # --- serialisation -------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """A saved configuration. One of an earlier version is read as it meant: a key it did not
        have takes the original's behaviour (:data:`LEGACY_DEFAULTS`), and the agent's two
        booleans become ``creative_agent`` (with a log line)."""
        d = dict(d)
        flags = {k: d.pop(k) for k in RENAMED_AGENT_FLAGS if k in d}
        on = [name for key, name in RENAMED_AGENT_FLAGS.items() if flags.get(key)]
        if on and not d.get("creative_agent"):  # the compositional agent won in the original
            d["creative_agent"] = on[0]
            logging.getLogger(__name__).info(
                "saved configuration: %s read as creative_agent=%s",
                ", ".join(f"{k}=true" for k in RENAMED_AGENT_FLAGS if flags.get(k)), on[0])
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown configuration keys: {', '.join(unknown)}")
        return cls(**{**LEGACY_DEFAULTS, **d})

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
