"""Every codec ``--codec`` can name, each held once: how it is built and what it needs.

Training (:func:`jaxaudio.training.builders.build_codec`), generation
(:func:`jaxaudio.inference.loading.build_codec`), the benchmarks and the tests all build codecs
through :func:`make_codec`, and the config's ``--codec`` choices are :data:`CODECS`. Adding a
codec is its module (a class meeting :class:`jaxaudio.codecs.base.Codec`) plus one
:class:`CodecSpec` in :data:`REGISTRY`. The latent cache keys its entries with the built codec's
``identity()`` (name, sizes and, for codecs with weights, a hash of them), so no spec repeats it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from jaxaudio.codecs.base import Codec


class CodecError(ValueError):
    """A bad codec name, weights file or size, named with the flag and what was expected."""


@dataclass(frozen=True)
class CodecSpec:
    """One codec: ``build(weights, encoding_dim, **kw)`` and what a caller checks before it.

    ``encoding_dim`` is the latent dimension the model expects (``None``: the codec's own);
    ``hop_length(encoding_dim)`` and ``sample_rate`` are those of the codec ``build`` makes
    without keyword overrides, so a config can check clip lengths without building it.
    """

    name: str
    help: str
    build: Callable[..., Codec]
    sample_rate: int
    hop_length: Callable[[int], int]
    needs_weights: bool = False
    weights_hint: str = ""


def _build_mdct(weights: str | None, encoding_dim: int | None, **kw) -> Codec:
    from jaxaudio.codecs.mdct import MDCTCodec

    if encoding_dim is not None:
        kw.setdefault("dim", encoding_dim)
    return MDCTCodec(**kw)


def _build_encodec(weights: str | None, encoding_dim: int | None, **kw) -> Codec:
    from jaxaudio.codecs.encodec import load_encodec, random_encodec

    seed = kw.pop("random_seed", None)
    if weights is not None:
        if seed is not None:
            raise CodecError("pass either --codec_weights or random_seed for the encodec codec, not both")
        return load_encodec(weights, **kw)
    if encoding_dim is not None:
        kw.setdefault("dimension", encoding_dim)
    return random_encodec(int(seed), **kw)


ENCODEC_HINT = ("the published encodec_24khz-d7cc33bc.th, a Hugging Face model.safetensors or a "
                "file made by `python -m jaxaudio.codecs.convert`")

REGISTRY: dict[str, CodecSpec] = {
    spec.name: spec
    for spec in (
        CodecSpec("mdct", "weight-free and exactly invertible; hop = --encoding_dim (the default)",
                  _build_mdct, sample_rate=24000, hop_length=lambda dim: dim),
        CodecSpec("encodec", "EnCodec 24 kHz's SEANet (needs --codec_weights); hop 320",
                  _build_encodec, sample_rate=24000, hop_length=lambda dim: 320,
                  needs_weights=True, weights_hint=ENCODEC_HINT),
    )
}
CODECS = tuple(REGISTRY)


def codec_spec(name: str) -> CodecSpec:
    """The spec of ``--codec name``; :class:`CodecError` naming the choices otherwise."""
    if name not in REGISTRY:
        raise CodecError(f"unknown codec {name!r} (--codec); expected one of {', '.join(CODECS)}")
    return REGISTRY[name]


def make_codec(name: str, weights: str | None = None, encoding_dim: int | None = None, *,
               weights_origin: str = "--codec_weights", **kw) -> Codec:
    """Build codec ``name``, checked against the model's ``encoding_dim`` when one is given.

    ``make_codec("mdct", encoding_dim=128)``; ``make_codec("encodec", "encodec_24khz-d7cc33bc.th")``.
    A codec with weights and no file takes ``random_seed=`` (and any sizes) for seeded random
    frozen weights, for tests and smoke runs only. ``weights_origin`` is where ``weights`` came
    from (a flag, or a checkpoint's saved config), so the errors name it.
    """
    spec = codec_spec(name)
    if weights and not spec.needs_weights:
        raise CodecError(f"{weights_origin} {weights}: the {name} codec has no weights; drop "
                         f"--codec_weights or use a codec that has them "
                         f"({', '.join(n for n, s in REGISTRY.items() if s.needs_weights)})")
    if spec.needs_weights and not weights and "random_seed" not in kw:
        raise CodecError(f"--codec_weights is required for the {name} codec ({spec.weights_hint}); "
                         f"jaxaudio never downloads weights; or use --codec mdct, which needs none")
    if weights and not Path(weights).is_file():
        extra = "" if weights_origin == "--codec_weights" else "; pass --codec_weights PATH"
        raise CodecError(f"{weights_origin} {weights}: no such file{extra} ({spec.weights_hint})")
    codec = spec.build(weights or None, encoding_dim, **kw)
    if encoding_dim is not None and codec.dim != encoding_dim:
        where = f"{weights_origin} {weights}: the" if weights else "the"
        raise CodecError(f"{where} {name} codec has latent dimension {codec.dim}, but the model "
                         f"expects --encoding_dim {encoding_dim}")
    return codec
