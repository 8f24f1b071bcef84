"""A trained model and its codec, from a jaxaudio checkpoint or the original's ``best_model.pt``.

``--checkpoint`` may name:

- a jaxaudio checkpoint (``.../checkpoint_epoch_N``, ``.../best_model/epoch_N``), or a folder
  of one kind (``.../best_model``, ``.../interrupted_checkpoint``: its newest): the model is
  rebuilt from the configuration saved in it, so no model flags are needed;
- a training run's ``--checkpoint_dir`` (the folder that holds ``best_model/``): its
  best model is used;
- a file: the original trainer's PyTorch ``best_model.pt``, converted on loading (no torch
  needed). The original always used EnCodec 24 kHz, so it needs ``--codec_weights`` (or
  ``--codec mdct``, which runs but was not what the model learnt on).

The codec is the one the checkpoint was trained with; ``--codec`` and ``--codec_weights``
override it (a different codec than the training one is allowed, with a warning).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flax import nnx

from jaxaudio.training.checkpoint import (checkpoints_in, is_checkpoint, meta_file, read_meta,
                                          resolve_checkpoint)
from jaxaudio.training.checkpoint_manager import BEST

ENCODEC_HINT = ("the published encodec_24khz-d7cc33bc.th, a Hugging Face model.safetensors or a "
                "file made by `python -m jaxaudio.codecs.convert`")


class GenerateError(ValueError):
    """A bad flag, file or checkpoint for generation, named with what was expected."""


@dataclass
class LoadedModel:
    model: nnx.Module
    codec: Any  # jaxaudio.codecs.Codec
    cascade: bool
    encoding_dim: int
    source: str  # one line saying what was loaded
    codec_name: str
    unity_test: bool = False
    warnings: list[str] = field(default_factory=list)


def user_errors() -> tuple[type[Exception], ...]:
    """The errors a bad flag, file or checkpoint raises in the command-line tools: each is
    printed as one line and exits 2 (`generate`, `evaluate`)."""
    from jaxaudio.codecs.encodec import EncodecWeightsError
    from jaxaudio.data.audio_io import BadFileError
    from jaxaudio.torch_io import TorchFileError
    from jaxaudio.torch_port import StateDictError
    from jaxaudio.training.checkpoint import CheckpointError
    from jaxaudio.training.config import ConfigError

    return (GenerateError, CheckpointError, BadFileError, EncodecWeightsError, StateDictError,
            TorchFileError, ConfigError)


def locate_checkpoint(path: str | Path) -> tuple[str, Path]:
    """``("jaxaudio", folder)`` or ``("torch", file)`` for a ``--checkpoint`` value."""
    p = Path(path)
    if p.is_file():
        return "torch", p
    if p.is_dir():
        if is_checkpoint(p) or (p / "state").is_dir():
            return "jaxaudio", p
        if (p / BEST).exists() or any(p.glob(f".{BEST}.old-*")):
            return "jaxaudio", p / BEST
        inside = [q for q in checkpoints_in(p) if q.parent == p]
        if inside and all(q.name.startswith(("epoch_", "step_")) for q in inside):
            return "jaxaudio", p  # one kind's folder (interrupted_checkpoint/): its newest
        others = sorted(q.relative_to(p).as_posix() for q in checkpoints_in(p))
        hint = f" (it holds {', '.join(others)}: pass one of them)" if others else ""
        raise GenerateError(
            f"--checkpoint {p}: not a checkpoint{hint}; expected a jaxaudio checkpoint folder "
            f"(with state/), a training --checkpoint_dir holding {BEST}/, or the "
            f"original's best_model.pt")
    if any(p.parent.glob(f".{p.name}.old-*")):  # a swap interrupted by a crash
        return "jaxaudio", p
    raise GenerateError(f"--checkpoint {p}: no such file or folder")


def build_codec(name: str, weights: str | None, encoding_dim: int, *,
                weights_origin: str = "--codec_weights"):
    """The codec ``name`` with latent dimension ``encoding_dim``; errors name the flag."""
    from jaxaudio.codecs import CodecError, make_codec

    try:
        return make_codec(name, weights, encoding_dim, weights_origin=weights_origin)
    except CodecError as e:
        raise GenerateError(str(e)) from e


def _load_jaxaudio(folder: Path, codec: str | None, codec_weights: str | None) -> LoadedModel:
    from jaxaudio.training.config import TrainConfig
    from jaxaudio.training.builders import load_trained_model

    from jaxaudio.training.checkpoint_meta import validate_meta

    folder = resolve_checkpoint(folder)
    meta = read_meta(folder)
    validate_meta(meta, meta_file(folder), training=False)  # the field an edit broke, named
    cfg = TrainConfig.from_dict(meta["config"])
    name = codec or cfg.codec
    warnings = []
    if name != cfg.codec:
        warnings.append(f"the model was trained on {cfg.codec} latents; running it on {name} "
                        f"latents (--codec {name}) will not sound like its training")
    if codec_weights is None and name == "encodec" and cfg.codec == "encodec":
        the_codec = build_codec(name, cfg.codec_weights, cfg.encoding_dim,
                                weights_origin=f"the checkpoint's codec weights ({meta_file(folder)})")
    else:
        the_codec = build_codec(name, codec_weights, cfg.encoding_dim)
    model, cfg, meta = load_trained_model(folder)
    # The trainer saves the index of the epoch it is in: the number of completed epochs.
    source = (f"jaxaudio checkpoint {folder} ({int(meta.get('epoch', 0))} epoch(s) trained, "
              f"{'cascade' if cfg.cascade else 'single stage'}, agent {cfg.agent or 'none'})")
    return LoadedModel(model, the_codec, cfg.cascade, cfg.encoding_dim, source, name,
                       bool(cfg.unity_test), warnings)


def _load_torch(path: Path, codec: str | None, codec_weights: str | None) -> LoadedModel:
    from jaxaudio.models.transformer import SimpleTransformer
    from jaxaudio.torch_port import from_torch_state_dict, read_original_checkpoint

    ckpt = read_original_checkpoint(path)
    config = ckpt.config
    dim = config["encoding_dim"]
    name = codec or "encodec"
    warnings = []
    if name == "encodec" and not codec_weights:
        raise GenerateError(
            f"--checkpoint {path} is the original's PyTorch checkpoint, which was trained on "
            f"EnCodec 24 kHz latents: pass --codec_weights PATH ({ENCODEC_HINT}; its latent "
            f"dimension must be the model's encoding_dim {dim}), or --codec mdct to run it on "
            f"MDCT latents of dimension {dim} (it never learnt those)")
    if name == "mdct":
        warnings.append(f"{path} was trained on EnCodec latents; running it on MDCT latents "
                        f"(--codec mdct) will not sound like its training")
    the_codec = build_codec(name, codec_weights, dim)
    model = from_torch_state_dict(lambda: SimpleTransformer(**config, rngs=nnx.Rngs(0)),
                                  ckpt.state_dict, source=str(path))
    cascade = config["num_transformer_layers"] > 1
    agent = ("compositional" if config.get("use_compositional_agent") else
             "masking" if config.get("use_creative_agent") else "none") if cascade else "none"
    epoch = "" if ckpt.epoch is None else f"{ckpt.epoch + 1} epoch(s) trained, "  # 0-based
    source = (f"original PyTorch checkpoint {path} ({epoch}"
              f"{'cascade' if cascade else 'single stage'}, agent {agent})")
    return LoadedModel(model, the_codec, cascade, dim, source, name,
                       bool(ckpt.args.get("unity_test", False)), warnings)


def load_for_inference(checkpoint: str | Path, *, codec: str | None = None,
                       codec_weights: str | None = None) -> LoadedModel:
    """Model and codec for ``--checkpoint`` (see the module docstring for what it may name)."""
    kind, path = locate_checkpoint(checkpoint)
    if kind == "torch":
        return _load_torch(path, codec, codec_weights)
    return _load_jaxaudio(path, codec, codec_weights)
