"""Datasets of (input, target) clip pairs, their batching, and the latent cache.

- :mod:`~jaxaudio.data.pairs`: ``train/`` and ``val/`` folders of ``pair_XXXX_input.wav`` +
  ``pair_XXXX_output.wav`` (or ``_target.wav``) read as mono clips at the codec's rate;
- :mod:`~jaxaudio.data.loader`: reproducible, resumable, per-process, prefetched batches;
- :mod:`~jaxaudio.data.cache`: each clip encoded once by the frozen codec;
- :mod:`~jaxaudio.data.synth`: the built-in procedural music set;
- :mod:`~jaxaudio.data.make_pairs`: a folder of songs to a pair dataset.

The cache (which imports JAX) and the command-line tools are loaded on first use, so
``python -m jaxaudio.data.synth`` starts quickly and runs its module only once.
"""

import importlib

from jaxaudio.data.audio_io import BadFileError
from jaxaudio.data.loader import EpochIterator, PairLoader, RawSource
from jaxaudio.data.pairs import BadFile, Pair, PairDataset, find_pairs, open_pair_folders

_LAZY = {"LatentCache": "cache", "CacheInvalid": "cache", "build_cache": "cache",
         "codec_fields": "cache", "make_synthetic_dataset": "synth"}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(f"jaxaudio.data.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'jaxaudio.data' has no attribute {name!r}")


__all__ = ["BadFile", "BadFileError", "CacheInvalid", "EpochIterator", "LatentCache", "Pair",
           "PairDataset", "PairLoader", "RawSource", "build_cache", "codec_fields", "find_pairs",
           "make_synthetic_dataset", "open_pair_folders"]
