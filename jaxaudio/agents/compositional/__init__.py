"""Compositional creative agent (rhythm / harmony / timbre decomposition and recomposition).

``agent.py`` holds :class:`CompositionalCreativeAgent` and the torch-name -> NNX-path table;
``extractors.py`` the multi-scale extractors and the component selector; ``composer.py`` the
512-wide transformer composer; ``losses.py`` the novelty and balance penalties. The layers
(torch-semantics Conv1d, BatchNorm1d, attention, transformer) are :mod:`jaxaudio.nn`'s.
"""

from .agent import CompositionalCreativeAgent, component_statistics
from .composer import ComponentComposer, sinusoidal_table
from .extractors import COMPONENT_NAMES, BatchNorm1d, MultiScaleExtractor
from .losses import balance_penalty, novelty_loss

__all__ = [
    "COMPONENT_NAMES",
    "BatchNorm1d",
    "ComponentComposer",
    "CompositionalCreativeAgent",
    "MultiScaleExtractor",
    "balance_penalty",
    "component_statistics",
    "novelty_loss",
    "sinusoidal_table",
]
