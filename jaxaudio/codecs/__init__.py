"""Codecs: audio ``[B, 1, N]`` <-> continuous latents ``[B, D, T]``, frozen and differentiable.

- ``"mdct"``: :class:`MDCTCodec`, weight-free and exactly invertible (the default);
- ``"encodec"``: :class:`EncodecCodec`, EnCodec 24 kHz's SEANet with weights the user supplies
  (``--codec_weights PATH``: the published ``.th``, a Hugging Face ``model.safetensors``, or a
  file made by ``python -m jaxaudio.codecs.convert``). jaxaudio never downloads weights.

Build one by name with :func:`make_codec`; :mod:`jaxaudio.codecs.registry` holds them all.
"""

from __future__ import annotations

from jaxaudio.codecs.base import Codec, FrozenWeight
from jaxaudio.codecs.encodec import EncodecCodec, EncodecWeightsError, load_encodec, random_encodec
from jaxaudio.codecs.mdct import MDCTCodec
from jaxaudio.codecs.registry import CODECS, REGISTRY, CodecError, CodecSpec, codec_spec, make_codec

__all__ = [
    "CODECS",
    "REGISTRY",
    "Codec",
    "CodecError",
    "CodecSpec",
    "EncodecCodec",
    "EncodecWeightsError",
    "FrozenWeight",
    "MDCTCodec",
    "codec_spec",
    "load_encodec",
    "make_codec",
    "random_encodec",
]
