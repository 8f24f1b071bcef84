"""The original trainer's checkpoints (``best_model.pt``) as jaxaudio models.

``train_simple_worker.py`` saves ``{'epoch', 'model_state_dict': model.module.state_dict(),
'optimizer_state_dict', 'train_loss', 'val_loss', 'best_val_loss', 'args': vars(args)}`` with
``torch.save``. The model's configuration is read from ``args`` and cross-checked against the
weights' shapes; the weights load strictly through :mod:`jaxaudio.torch_port.names`.
Zip-format files (every torch >= 1.6) are read without torch (:mod:`jaxaudio.torch_io`).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path
from typing import Any

import numpy as np
from flax import nnx

from jaxaudio.agents.registry import agent_kind, agent_of_state_dict, agents, get_agent
from jaxaudio.torch_port.names import StateDictError, from_torch_state_dict, strip_prefix
from jaxaudio.torch_io import load_torch_file

# train_simple_ddp.py's argparse defaults for the constructor arguments.
_ARG_DEFAULTS = {
    "encoding_dim": 128,
    "nhead": 8,
    "num_layers": 4,
    "dropout": 0.1,
    "num_transformer_layers": 1,
    "anti_cheating": 0.0,
    "use_creative_agent": False,
    "use_compositional_agent": False,
}


def _count(pattern: str, keys) -> int:
    found = {int(m.group(1)) for k in keys if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def config_from_checkpoint(state_dict: dict[str, np.ndarray], args: Any, *, source: str = "checkpoint") -> dict[str, Any]:
    """``SimpleTransformer`` keyword arguments from the saved ``args`` and the weights' shapes.

    ``args`` is what the original saved (``vars(args)``, or an ``argparse.Namespace``), or None.
    What the weights determine (encoding dim, layers per stage, single/cascade, which agent, the
    composer's size) is read from them, and ``args`` that contradict it raise; ``nhead``,
    ``dropout`` and ``anti_cheating`` come from ``args`` (the original's defaults when absent).
    """
    args = dict(vars(args) if isinstance(args, argparse.Namespace) else (args or {}))
    keys = list(state_dict)
    cascade = any(k.startswith("cascade_stages.") for k in keys)
    prefix = "cascade_stages.0." if cascade else ""
    proj_key = prefix + "output_proj.weight_orig"
    if proj_key not in state_dict:
        raise StateDictError(f"{source}: no {proj_key!r}; not a SimpleTransformer state dict")
    agent = agent_of_state_dict(state_dict)
    inferred = {
        "encoding_dim": int(state_dict[proj_key].shape[0]),
        "num_layers": _count(re.escape(prefix) + r"transformer\.layers\.(\d+)\.", keys),
    }
    conflicts = [f"args[{k!r}] = {args[k]!r} but the weights say {v!r}" for k, v in inferred.items() if k in args and args[k] != v]
    if "num_transformer_layers" in args and (int(args["num_transformer_layers"]) > 1) != cascade:
        conflicts.append(
            f"args['num_transformer_layers'] = {args['num_transformer_layers']!r} but the weights are "
            f"{'a cascade' if cascade else 'a single stage'}"
        )
    flags = {s.flag for s in agents().values()}
    if flags & set(args) and agent_kind(args, cascade) != agent:
        conflicts.append(f"args ask for agent {agent_kind(args, cascade)!r} but the weights hold {agent!r}")
    if conflicts:
        raise StateDictError(f"{source}: " + "; ".join(conflicts))
    config = {k: args.get(k, v) for k, v in _ARG_DEFAULTS.items()}
    config.update(inferred)
    config["num_transformer_layers"] = max(2, int(config["num_transformer_layers"])) if cascade else 1
    for spec in agents().values():
        if spec.flag in _ARG_DEFAULTS:
            config[spec.flag] = spec.name == agent
    if agent is not None and get_agent(agent).torch_options is not None:
        config.update(get_agent(agent).torch_options(state_dict))
    for k in ("nhead", "num_layers", "encoding_dim"):
        config[k] = int(config[k])
    for k in ("dropout", "anti_cheating"):
        config[k] = float(config[k])
    return config


@dataclasses.dataclass
class OriginalCheckpoint:
    """The parts of the original's checkpoint dict that matter here."""

    state_dict: dict[str, np.ndarray]
    args: dict[str, Any]
    config: dict[str, Any]
    epoch: int | None


def checkpoint_from_dict(obj: Any, *, source: str = "checkpoint") -> OriginalCheckpoint:
    """Interpret the original trainer's checkpoint dict (as ``torch.load`` would return it).

    ``model_state_dict`` may carry DDP's ``module.`` prefix; ``args`` may be ``vars(args)`` (what
    ``train_simple_worker.py`` saves), an ``argparse.Namespace``, or absent.
    """
    if not isinstance(obj, dict) or "model_state_dict" not in obj:
        found = sorted(map(str, obj))[:20] if isinstance(obj, dict) else type(obj).__name__
        raise StateDictError(
            f"{source}: expected the original trainer's checkpoint dict with 'model_state_dict' "
            f"(and 'args'); found {found}"
        )
    state_dict = strip_prefix({k: np.asarray(v) for k, v in obj["model_state_dict"].items()})
    args = obj.get("args")
    args = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    config = config_from_checkpoint(state_dict, args, source=source)
    epoch = obj.get("epoch")
    return OriginalCheckpoint(state_dict, args, config, None if epoch is None else int(epoch))


def read_original_checkpoint(path: str | Path) -> OriginalCheckpoint:
    """Read ``best_model.pt`` (``model_state_dict``, ``args``) without building a model."""
    return checkpoint_from_dict(load_torch_file(path), source=str(path))


def load_original_checkpoint(path: str | Path, *, seed: int = 0):
    """The original's ``best_model.pt`` as ``(SimpleTransformer, config)``, loaded strictly.

    ``config`` holds the constructor keyword arguments (``SimpleTransformer(**config, rngs=...)``
    rebuilds the architecture). Needs no torch for zip-format files (every torch >= 1.6 save).
    """
    from jaxaudio.models.transformer import SimpleTransformer

    ckpt = read_original_checkpoint(path)
    model = from_torch_state_dict(
        lambda: SimpleTransformer(**ckpt.config, rngs=nnx.Rngs(seed)), ckpt.state_dict, source=str(path)
    )
    return model, dict(ckpt.config)
