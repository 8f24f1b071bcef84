"""torch-compatible neural-network building blocks, shared by every jaxaudio model and agent.

One implementation per ``torch.nn`` concept the original uses, with torch's semantics,
initialisation defaults and parameter layout:

===========================  ===========================================  =====================
module                       NNX variables = torch names                  layout
===========================  ===========================================  =====================
:class:`Linear`              ``weight``, ``bias``                         ``[out, in]``, ``[out]``
:class:`Conv1d`              ``weight``, ``bias``                         ``[out, in, k]``
:class:`LayerNorm`           ``weight``, ``bias``                         ``[E]``
:class:`BatchNorm1d`         ``weight``, ``bias``, ``running_mean``,      ``[C]``; counter ``[]``
                             ``running_var``, ``num_batches_tracked``
:class:`MultiheadAttention`  ``in_proj_weight``, ``in_proj_bias``,        ``[3E, E]``, ``[3E]``
                             ``out_proj.weight``, ``out_proj.bias``
:class:`PositionalEncoding`  none (torch's ``pe`` buffer is a constant)   ``[1, max_len, E]``
===========================  ===========================================  =====================

So the torch ``state_dict`` name of every variable is its NNX path joined with ``.`` (list
indices included: an ``nnx.List`` stands for an ``nn.Sequential``, parameter-free layers such
as :class:`ReLU` hold the other indices) and nothing is transposed; the converter
(:mod:`jaxaudio.torch_port`) maps these modules name for name. Modules: :mod:`.layers` (Linear,
Conv1d, activations, Sequential helpers), :mod:`.norm`, :mod:`.attention`,
:mod:`.transformer` (encoder layer, encoder, sinusoidal positions), :mod:`.functional`
(gradient-safe sqrt / std / abs / normalize, per-sample RMS, clamp).
"""

from jaxaudio.nn.attention import MultiheadAttention, attention_weights
from jaxaudio.nn.functional import (
    NORMALIZE_EPS,
    RMS_EPS,
    clamp,
    l2_normalize,
    safe_sqrt,
    sample_rms,
    torch_abs,
    unbiased_std,
)
from jaxaudio.nn.layers import (
    GELU,
    AdaptiveAvgPool1d,
    Conv1d,
    Flatten,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    fan_in_bound,
    run_layers,
    torch_uniform,
    uses_dropout,
)
from jaxaudio.nn.norm import BN_EPS, BN_MOMENTUM, LN_EPS, BatchNorm1d, LayerNorm
from jaxaudio.nn.transformer import (
    PositionalEncoding,
    TransformerEncoder,
    TransformerEncoderLayer,
    sinusoidal_table,
)

__all__ = [
    "BN_EPS",
    "BN_MOMENTUM",
    "GELU",
    "LN_EPS",
    "NORMALIZE_EPS",
    "RMS_EPS",
    "AdaptiveAvgPool1d",
    "BatchNorm1d",
    "Conv1d",
    "Flatten",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MultiheadAttention",
    "PositionalEncoding",
    "ReLU",
    "Sigmoid",
    "TransformerEncoder",
    "TransformerEncoderLayer",
    "attention_weights",
    "clamp",
    "fan_in_bound",
    "l2_normalize",
    "run_layers",
    "safe_sqrt",
    "sample_rms",
    "sinusoidal_table",
    "torch_abs",
    "torch_uniform",
    "unbiased_std",
    "uses_dropout",
]
