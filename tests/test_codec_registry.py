"""The codec registry: one entry adds a codec; every builder's checks name the flag."""

from pathlib import Path

import jax.numpy as jnp
import pytest

from jaxaudio.codecs import CODECS, REGISTRY, CodecError, CodecSpec, MDCTCodec, codec_spec, make_codec
from jaxaudio.training.config import CODECS as CONFIG_CODECS

TH = Path(__file__).resolve().parent / "assets" / "encodec_tiny.th"


class _Halver:
    """A toy codec: every other sample is a latent frame of dimension ``dim``."""

    sample_rate, hop_length = 16000, 2

    def __init__(self, dim):
        self.dim = dim

    @property
    def frame_rate(self):
        return self.sample_rate / self.hop_length

    def encode(self, audio):
        return jnp.repeat(audio[:, :, ::2], self.dim, axis=1)

    def decode(self, latents):
        return jnp.repeat(latents[:, :1], 2, axis=2)

    def identity(self):
        return f"halver:d{self.dim}"


def test_a_codec_is_one_registry_entry(monkeypatch):
    spec = CodecSpec("halver", "toy", lambda weights, dim, **kw: _Halver(dim or 4), sample_rate=16000,
                     hop_length=lambda dim: 2)
    monkeypatch.setitem(REGISTRY, "halver", spec)
    codec = make_codec("halver", encoding_dim=6)
    assert codec_spec("halver") is spec and codec.identity() == "halver:d6"
    assert codec.encode(jnp.ones((1, 1, 10))).shape == (1, 6, 5)
    with pytest.raises(CodecError, match="halver codec has no weights"):
        make_codec("halver", "w.th")


def test_codec_names_are_defined_once():
    assert CONFIG_CODECS is CODECS == ("mdct", "encodec")
    for name, spec in REGISTRY.items():
        assert spec.name == name and spec.needs_weights == (name == "encodec")
    assert codec_spec("mdct").hop_length(64) == make_codec("mdct", encoding_dim=64).hop_length == 64
    enc = make_codec("encodec", random_seed=0, n_filters=2, ratios=(2,), lstm=1)
    assert codec_spec("encodec").hop_length(128) == 320 and enc.dim == 128 and enc.hop_length == 2


def test_checks_name_the_flag_and_what_was_expected(tmp_path):
    assert isinstance(make_codec("mdct", encoding_dim=32), MDCTCodec)
    with pytest.raises(CodecError, match=r"unknown codec 'wavelet' \(--codec\); expected one of mdct, encodec"):
        make_codec("wavelet")
    with pytest.raises(CodecError, match="--codec_weights is required for the encodec codec"):
        make_codec("encodec", None, 128)
    missing = tmp_path / "gone.th"
    with pytest.raises(CodecError, match=f"saved config {missing}: no such file; pass --codec_weights PATH"):
        make_codec("encodec", str(missing), 128, weights_origin="saved config")
    with pytest.raises(CodecError, match=f"--codec_weights {TH}: the encodec codec has latent dimension 16, "
                                         "but the model expects --encoding_dim 128"):
        make_codec("encodec", str(TH), 128)
    assert make_codec("encodec", str(TH), 16).dim == 16
    with pytest.raises(CodecError, match="not both"):
        make_codec("encodec", str(TH), random_seed=0)
