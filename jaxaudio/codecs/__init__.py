"""Codecs: audio ``[B, 1, N]`` <-> continuous latents ``[B, D, T]``, frozen and differentiable.

- ``"mdct"``: :class:`MDCTCodec`, weight-free and exactly invertible (the default);
- ``"encodec"``: :class:`EncodecCodec`, EnCodec 24 kHz's SEANet with weights the user supplies
  (``--codec_weights PATH``: the published ``.th``, a Hugging Face ``model.safetensors``, or a
  file made by ``python -m jaxaudio.codecs.convert``). jaxaudio never downloads weights.
"""

from __future__ import annotations

from jaxaudio.codecs.base import Codec, FrozenWeight
from jaxaudio.codecs.encodec import EncodecCodec, EncodecWeightsError, load_encodec, random_encodec
from jaxaudio.codecs.mdct import MDCTCodec

CODECS = ("mdct", "encodec")


def make_codec(name: str, weights: str | None = None, **kw) -> Codec:
    """Build a codec by name.

    ``make_codec("mdct", dim=128)``; ``make_codec("encodec", "encodec_24khz-d7cc33bc.th")``.
    For EnCodec without a weights file pass ``random_seed=`` (and any sizes) to get seeded
    random frozen weights, for tests and smoke runs only.
    """
    if name == "mdct":
        if weights is not None:
            raise ValueError(f"the mdct codec has no weights; got --codec_weights {weights!r}")
        return MDCTCodec(**kw)
    if name == "encodec":
        seed = kw.pop("random_seed", None)
        if weights is not None:
            if seed is not None:
                raise ValueError("pass either --codec_weights or random_seed for the encodec codec, not both")
            return load_encodec(weights, **kw)
        if seed is not None:
            return random_encodec(int(seed), **kw)
        raise ValueError(
            "the encodec codec needs weights: download encodec_24khz-d7cc33bc.th (or Hugging Face "
            "facebook/encodec_24khz model.safetensors) yourself and pass --codec_weights PATH; "
            "or use --codec mdct, which needs none"
        )
    raise ValueError(f"unknown codec {name!r}; expected one of {list(CODECS)}")


__all__ = [
    "CODECS",
    "Codec",
    "EncodecCodec",
    "EncodecWeightsError",
    "FrozenWeight",
    "MDCTCodec",
    "load_encodec",
    "make_codec",
    "random_encodec",
]
