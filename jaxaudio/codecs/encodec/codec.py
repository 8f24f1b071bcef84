"""``EncodecCodec``: EnCodec's SEANet encoder and decoder as a frozen, differentiable codec.

The defaults are the published 24 kHz model: ``[B, 1, N] -> [B, 128, ceil(N / 320)]`` latents
at 75 frames a second, and ``[B, 128, T] -> [B, 1, T * 320]`` audio. It never quantises: the
latents are the encoder's continuous output, as the original system uses them. Every size is
a constructor argument, so tiny configurations (tests, the built-in training run) work the
same way; :func:`random_encodec` builds one with seeded random frozen weights.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs.base import FrozenWeight
from jaxaudio.codecs.encodec.seanet import SEANetDecoder, SEANetEncoder


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

    def seanet_kwargs(self) -> dict[str, Any]:
        common = dict(
            channels=self.channels,
            dimension=self.dimension,
            n_filters=self.n_filters,
            n_residual_layers=self.n_residual_layers,
            ratios=self.ratios,
            activation=self.activation,
            activation_params=dict(self.activation_params),
            kernel_size=self.kernel_size,
            last_kernel_size=self.last_kernel_size,
            residual_kernel_size=self.residual_kernel_size,
            dilation_base=self.dilation_base,
            causal=self.causal,
            pad_mode=self.pad_mode,
            true_skip=self.true_skip,
            compress=self.compress,
            lstm=self.lstm,
        )
        decoder = dict(
            common,
            final_activation=self.final_activation,
            final_activation_params=dict(self.final_activation_params),
            trim_right_ratio=self.trim_right_ratio,
        )
        return {"encoder": common, "decoder": decoder}


class EncodecCodec(nnx.Module):
    """EnCodec's SEANet as a codec: ``encode [B, C, N] -> [B, D, T]``, ``decode [B, D, T] -> [B, C, T * hop]``.

    ``T = ceil(N / hop)`` with ``hop = prod(ratios)``; inputs of any length are padded as the
    reference pads them. Weights are :class:`FrozenWeight` (never ``nnx.Param``), so
    ``nnx.state(codec, nnx.Param)`` is empty while gradients flow through ``decode`` to the
    latents. ``lstm_impl`` is ``"auto"`` (the ``lax.scan``; ``"cudnn"`` opts into cuDNN on GPU),
    ``"scan"`` or ``"cudnn"``; ``precision`` is passed to every convolution and matmul
    (``None``: XLA's default, which is TF32 on recent NVIDIA GPUs; ``"highest"``: full float32).
    Load published weights with :func:`jaxaudio.codecs.encodec.load_encodec`.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        n_residual_layers: int = 1,
        ratios: Sequence[int] = (8, 5, 4, 2),
        activation: str = "ELU",
        activation_params: dict | None = None,
        final_activation: str | None = None,
        final_activation_params: dict | None = None,
        norm: str = "weight_norm",
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = True,
        pad_mode: str = "reflect",
        true_skip: bool = False,
        compress: int = 2,
        lstm: int = 2,
        trim_right_ratio: float = 1.0,
        sample_rate: int = 24000,
        *,
        lstm_impl: str = "auto",
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        config = EncodecConfig(
            channels=channels,
            dimension=dimension,
            n_filters=n_filters,
            n_residual_layers=n_residual_layers,
            ratios=tuple(ratios),
            activation=activation,
            activation_params=(
                {"alpha": 1.0} if activation_params is None and activation == "ELU" else activation_params
            ),
            final_activation=final_activation,
            final_activation_params=final_activation_params,
            norm=norm,
            kernel_size=kernel_size,
            last_kernel_size=last_kernel_size,
            residual_kernel_size=residual_kernel_size,
            dilation_base=dilation_base,
            causal=causal,
            pad_mode=pad_mode,
            true_skip=true_skip,
            compress=compress,
            lstm=lstm,
            trim_right_ratio=trim_right_ratio,
            sample_rate=sample_rate,
        )
        self.config_json = config.to_json()
        self.channels = config.channels
        self.dim = config.dimension
        self.hop_length = config.hop_length
        self.sample_rate = config.sample_rate
        self.lstm_impl = lstm_impl
        self.precision = precision
        kw = config.seanet_kwargs()
        self.encoder = SEANetEncoder(**kw["encoder"], lstm_impl=lstm_impl, precision=precision, rngs=rngs)
        self.decoder = SEANetDecoder(**kw["decoder"], lstm_impl=lstm_impl, precision=precision, rngs=rngs)

    @classmethod
    def from_config(cls, config: EncodecConfig, *, lstm_impl: str = "auto", precision=None, rngs: nnx.Rngs):
        d = config.to_dict()
        d["ratios"] = tuple(d["ratios"])
        return cls(**d, lstm_impl=lstm_impl, precision=precision, rngs=rngs)

    @property
    def config(self) -> EncodecConfig:
        return EncodecConfig.from_dict(json.loads(self.config_json))

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    def encode(self, audio: jax.Array) -> jax.Array:
        """``[B, C, N]`` audio to ``[B, D, ceil(N / hop)]`` continuous latents."""
        if audio.ndim != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"EncodecCodec.encode expects audio [B, {self.channels}, N], got shape {audio.shape}")
        if audio.shape[2] < 1:
            raise ValueError("EncodecCodec.encode needs at least one sample")
        z = self.encoder(jnp.swapaxes(audio, 1, 2))
        return jnp.swapaxes(z, 1, 2)

    def decode(self, latents: jax.Array) -> jax.Array:
        """``[B, D, T]`` latents to ``[B, C, T * hop]`` audio."""
        if latents.ndim != 3 or latents.shape[1] != self.dim:
            raise ValueError(f"EncodecCodec.decode expects latents [B, {self.dim}, T], got shape {latents.shape}")
        y = self.decoder(jnp.swapaxes(latents, 1, 2))
        return jnp.swapaxes(y, 1, 2)

    def weights(self) -> dict[str, np.ndarray]:
        """Every frozen weight as ``{"encoder.layers.0.weight": array}`` (jaxaudio's own names)."""
        flat = nnx.to_flat_state(nnx.state(self, FrozenWeight))
        return {".".join(str(p) for p in path): np.asarray(jax.device_get(v.get_value())) for path, v in flat}

    def identity(self) -> str:
        """Name, sizes and a SHA-256 of configuration and weights (the latent cache's key)."""
        h = hashlib.sha256(self.config_json.encode())
        for name, value in sorted(self.weights().items()):
            h.update(f"{name}:{value.dtype.str}:{value.shape}".encode())
            h.update(np.ascontiguousarray(value).tobytes())
        return f"encodec:d{self.dim}-hop{self.hop_length}-sr{self.sample_rate}:{h.hexdigest()[:20]}"


def random_encodec(seed: int = 0, *, lstm_impl: str = "auto", precision=None, **config) -> EncodecCodec:
    """An :class:`EncodecCodec` of any size with seeded random frozen weights (tests, smoke runs).

    ``random_encodec(0, n_filters=2, dimension=16, ratios=(4, 2), lstm=1)`` is a codec with a
    hop of 8 samples that runs in milliseconds on a CPU.
    """
    return EncodecCodec(**config, lstm_impl=lstm_impl, precision=precision, rngs=nnx.Rngs(seed))
