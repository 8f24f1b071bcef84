"""EnCodec 24 kHz (SEANet encoder/decoder) in Flax NNX, with loaders for the published weights."""

from jaxaudio.codecs.encodec.weight_files import (
    encodec_from_state_dict,
    load_encodec,
    save_encodec,
)
from jaxaudio.codecs.encodec.codec import EncodecCodec, random_encodec
from jaxaudio.codecs.encodec.config import EncodecConfig
from jaxaudio.codecs.encodec.torch_layout import EncodecWeightsError

__all__ = [
    "EncodecCodec",
    "EncodecConfig",
    "EncodecWeightsError",
    "encodec_from_state_dict",
    "load_encodec",
    "random_encodec",
    "save_encodec",
]
