"""EnCodec weight files: the published ``.th``, Hugging Face ``model.safetensors``, and our own format.

:func:`load_encodec` detects the format from the file's first bytes:

- a ``torch.save`` zip (the published ``encodec_24khz-d7cc33bc.th``, or a Hugging Face
  ``pytorch_model.bin``): read with :func:`jaxaudio.torch_io.load_torch_file`, no torch needed;
  legacy (pre-zip) pickles need the ``torch`` extra and say so;
- a ``.safetensors`` file in the Hugging Face layout (``encoder.layers.N.conv.weight_g``...),
  read with ``safetensors``' NumPy API, no torch needed;
- jaxaudio's own format: a ``.safetensors`` file holding our names and layouts (weight norm
  already folded) with the configuration in its metadata, written once by
  ``python -m jaxaudio.codecs.convert SRC DST`` (:func:`save_encodec`); it loads without any
  conversion work.

For the torch layouts the sizes (``n_filters``, ``ratios``, ...) are read from the weights'
shapes; everything shapes cannot tell (``causal``, ``pad_mode``...) defaults to the 24 kHz
model and can be overridden with keyword arguments.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Mapping

import numpy as np

from jaxaudio.codecs.encodec.codec import EncodecCodec
from jaxaudio.codecs.encodec.config import EncodecConfig
from jaxaudio.codecs.encodec.torch_layout import (
    EncodecWeightsError,
    codec_from_arrays,
    infer_config,
    torch_state_to_arrays,
)
from jaxaudio.torch_io import flatten_state_dict, load_torch_file

OWN_FORMAT = "jaxaudio.encodec"
OWN_FORMAT_VERSION = "1"


def _sniff(path: Path) -> str:
    """``"zip"``, ``"pickle"``, ``"safetensors"`` or ``"unknown"`` from the first bytes."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) == 9 and head[8:9] == b"{":
        (n,) = struct.unpack("<Q", head[:8])
        if 0 < n <= path.stat().st_size - 8:
            return "safetensors"
    return "unknown"


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            metadata = dict(f.metadata() or {})
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise EncodecWeightsError(f"{path}: unreadable safetensors file ({e})") from e
    return arrays, metadata


def config_for_state(state: Mapping[str, np.ndarray], source: str, **overrides) -> EncodecConfig:
    """The 24 kHz defaults, updated with the sizes the weights' shapes imply, then ``overrides``."""
    values = EncodecConfig().to_dict()
    try:
        values.update(infer_config(state))
    except (ValueError, KeyError, IndexError):
        pass  # an unreadable structure: the strict key check below reports what is wrong
    values.update(overrides)
    try:
        return EncodecConfig.from_dict(values, source)
    except (TypeError, ValueError) as e:
        raise EncodecWeightsError(f"{source}: {e}") from e


def encodec_from_state_dict(
    state: Mapping[str, np.ndarray],
    *,
    source: str = "state dict",
    precision=None,
    **config,
) -> EncodecCodec:
    """A codec from a torch-layout mapping (``encodec`` package or Hugging Face names)."""
    cfg = config_for_state(state, source, **config)
    arrays = torch_state_to_arrays(state, cfg, source=source)
    return codec_from_arrays(arrays, cfg, precision=precision, source=source)


def load_encodec(path: str | os.PathLike, *, precision=None, **config) -> EncodecCodec:
    """Load EnCodec weights from a ``.th`` / ``.pt`` / ``.bin``, a Hugging Face or a jaxaudio ``.safetensors``.

    jaxaudio never downloads weights: pass the path of a file you have. Keyword arguments
    override configuration values (e.g. ``causal=False``); sizes come from the file.
    """
    path = Path(path)
    if not path.is_file():
        raise EncodecWeightsError(f"{path}: no such file (pass the path of an EnCodec checkpoint you downloaded)")
    kind = _sniff(path)
    if kind == "safetensors":
        arrays, metadata = _read_safetensors(path)
        if metadata.get("format") == OWN_FORMAT:
            return _from_own(path, arrays, metadata, precision, config)
        return encodec_from_state_dict(arrays, source=str(path), precision=precision, **config)
    if kind in ("zip", "pickle"):
        obj = load_torch_file(path)  # a legacy pickle raises torch_io's "install the torch extra" error
        if not isinstance(obj, dict):
            raise EncodecWeightsError(f"{path}: holds a {type(obj).__name__}, expected a state dict of EnCodec weights")
        state = flatten_state_dict(obj)
        return encodec_from_state_dict(state, source=str(path), precision=precision, **config)
    raise EncodecWeightsError(
        f"{path}: not an EnCodec checkpoint; expected a torch.save file (encodec_24khz-d7cc33bc.th), "
        "a Hugging Face model.safetensors or a file written by `python -m jaxaudio.codecs.convert`"
    )


def _from_own(path: Path, arrays, metadata, precision, overrides) -> EncodecCodec:
    version = metadata.get("format_version")
    if version != OWN_FORMAT_VERSION:
        raise EncodecWeightsError(
            f"{path}: jaxaudio EnCodec format version {version!r}; this jaxaudio reads version {OWN_FORMAT_VERSION}"
        )
    try:
        cfg = EncodecConfig.from_dict(json.loads(metadata["config"]), str(path))
    except (KeyError, ValueError, TypeError) as e:
        raise EncodecWeightsError(f"{path}: bad 'config' metadata ({e})") from e
    clashes = {k: v for k, v in overrides.items() if k not in cfg.to_dict() or cfg.to_dict()[k] != v}
    if clashes:
        raise EncodecWeightsError(
            f"{path}: the converted file fixes the configuration; cannot override {sorted(clashes)} "
            "(convert the original checkpoint again with those options instead)"
        )
    return codec_from_arrays(arrays, cfg, precision=precision, source=str(path))


def save_encodec(codec: EncodecCodec, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``codec`` in jaxaudio's own format (``.safetensors``), atomically.

    The file appears complete or not at all: it is written to a temporary file beside
    ``path`` and then renamed. An existing ``path`` is an error unless ``overwrite``.
    """
    from safetensors.numpy import save_file

    from jaxaudio.data.atomic_files import atomic_path

    metadata = {"format": OWN_FORMAT, "format_version": OWN_FORMAT_VERSION, "config": codec.config_json}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_file(codec.weights(), str(tmp), metadata=metadata)
    return Path(path)
