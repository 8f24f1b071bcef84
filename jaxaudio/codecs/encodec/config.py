"""``EncodecConfig``: the one place EnCodec's architecture arguments are written.

The codec, the SEANet encoder and decoder, the weight loaders and the file format all take this
frozen dataclass; its field names are the ``encodec`` package's ``SEANetEncoder`` /
``SEANetDecoder`` constructor arguments, so a reference configuration reads across unchanged.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class EncodecConfig:
    """Architecture of a SEANet encoder/decoder pair (defaults: the 24 kHz EnCodec model).

    Names follow the ``encodec`` package's ``SEANetEncoder`` / ``SEANetDecoder`` arguments;
    ``norm`` only says how a torch checkpoint stores the conv weights (``weight_norm``: ``g``
    and ``v``; ``none``: ``weight``): weight norm is folded into the weights on loading.
    """

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    activation: str = "ELU"
    activation_params: tuple[tuple[str, float], ...] = (("alpha", 1.0),)
    final_activation: str | None = None
    final_activation_params: tuple[tuple[str, float], ...] = ()
    norm: str = "weight_norm"
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = True
    pad_mode: str = "reflect"
    true_skip: bool = False
    compress: int = 2
    lstm: int = 2
    trim_right_ratio: float = 1.0
    sample_rate: int = 24000

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 - frozen dataclass normalisation
        set_("ratios", tuple(int(r) for r in self.ratios))
        for name in ("activation_params", "final_activation_params"):
            value = getattr(self, name)
            items = value.items() if isinstance(value, dict) else (value or ())
            set_(name, tuple(sorted((str(k), float(v)) for k, v in items)))
        if self.norm not in ("weight_norm", "none"):
            raise ValueError(f"EnCodec norm {self.norm!r} is not supported; expected 'weight_norm' or 'none'")
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ValueError(f"EnCodec ratios must be positive integers, got {self.ratios}")

    @property
    def hop_length(self) -> int:
        return int(np.prod(self.ratios))

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config") -> "EncodecConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"{source}: unknown EnCodec config keys {unknown}; expected some of {sorted(names)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ratios"] = list(self.ratios)
        d["activation_params"] = dict(self.activation_params)
        d["final_activation_params"] = dict(self.final_activation_params)
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)
