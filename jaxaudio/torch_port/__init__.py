"""The one weight-port stack: PyTorch weights into NNX modules, strictly.

- :mod:`.names`: torch ``state_dict`` names <-> NNX variables (every jaxaudio layer keeps
  torch's names and layouts), loaded strictly with one missing / unused / wrong-shape report;
- :mod:`.original`: the original trainer's ``best_model.pt`` as a ``SimpleTransformer``.

Reading ``torch.save`` files without torch is :mod:`jaxaudio.torch_io`; EnCodec's two torch
layouts are mapped onto jaxaudio's names by :mod:`jaxaudio.codecs.encodec.torch_layout`, which
then loads through :func:`from_torch_state_dict` like every other module.
"""

from jaxaudio.torch_port.names import (
    StateDictError,
    from_torch_state_dict,
    load_torch_state_dict,
    mismatch_message,
    torch_state_dict,
)
from jaxaudio.torch_port.original import (
    OriginalCheckpoint,
    checkpoint_from_dict,
    config_from_checkpoint,
    load_original_checkpoint,
    read_original_checkpoint,
)

__all__ = [
    "OriginalCheckpoint",
    "StateDictError",
    "checkpoint_from_dict",
    "config_from_checkpoint",
    "from_torch_state_dict",
    "load_original_checkpoint",
    "load_torch_state_dict",
    "mismatch_message",
    "read_original_checkpoint",
    "torch_state_dict",
]
