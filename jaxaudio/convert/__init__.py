"""Loading the original's PyTorch weights: torch names <-> NNX variables, and ``best_model.pt``."""

from jaxaudio.convert.checkpoint import (
    OriginalCheckpoint,
    checkpoint_from_dict,
    config_from_checkpoint,
    load_original_checkpoint,
    read_original_checkpoint,
)
from jaxaudio.convert.state_dict import (
    Entry,
    StateDictError,
    from_torch_state_dict,
    load_torch_state_dict,
    strip_prefix,
    torch_entries,
    torch_state_dict,
)

__all__ = [
    "Entry",
    "OriginalCheckpoint",
    "StateDictError",
    "checkpoint_from_dict",
    "config_from_checkpoint",
    "from_torch_state_dict",
    "load_original_checkpoint",
    "load_torch_state_dict",
    "read_original_checkpoint",
    "strip_prefix",
    "torch_entries",
    "torch_state_dict",
]
