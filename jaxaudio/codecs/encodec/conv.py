r"""Streamable 1-D convolutions of EnCodec's SEANet, channels-last, with the reference's padding.

Both layers work on ``[B, N, C]`` (channels last) and reproduce the ``encodec`` package's
``SConv1d`` / ``SConvTranspose1d`` exactly, including the length rules for inputs whose length
is not a multiple of the stride:

``SConv1d`` pads ``padding_total = (k - 1) * dilation - (stride - 1)`` samples, all on the
left when causal (split ``ceil``/``floor`` left/right otherwise), plus ``extra`` samples on
the right so that the last window is full (``get_extra_padding_for_conv1d``)::

    causal, k = 4, stride = 2, N = 5:   p p | x0 x1 x2 x3 x4 | e
                                         \____/  \____/  \____/     3 frames = ceil(5 / 2)

Reflect padding needs the input to be longer than the padding; for shorter inputs the
reference first appends zeros (so the reflection sees them), reflects, and cuts those zeros
off again (``pad1d``). ``SConvTranspose1d`` produces ``(L - 1) * stride + k`` samples and trims
``k - stride`` of them: all on the right when causal with ``trim_right_ratio = 1``, so the
output has exactly ``L * stride`` samples.

Weights are :class:`~jaxaudio.codecs.base.FrozenWeight` in the layout the convolution uses:
``weight [k, C_in, C_out]`` (for the transposed convolution: the equivalent forward kernel,
flipped in time). Weight norm is folded into ``weight`` when the checkpoint is loaded (see
``weights.py``): ``g * v / ||v||`` with the norm over every axis but 0.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs.base import FrozenWeight

# torch F.pad mode -> jnp.pad mode ("zero" is what the reference calls constant padding)
PAD_MODES = {"reflect": "reflect", "constant": "constant", "zero": "constant", "replicate": "edge", "circular": "wrap"}

_DIMS = ("NWC", "WIO", "NWC")


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int = 0) -> int:
    """Right padding that makes the last window of a strided convolution full.

    Same arithmetic as the reference's ``get_extra_padding_for_conv1d`` (static shapes).
    """
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: jax.Array, left: int, right: int, mode: str = "reflect") -> jax.Array:
    """Pad ``[B, N, C]`` along ``N``; reflect padding of inputs no longer than the padding as the reference does."""
    if left < 0 or right < 0:
        raise ValueError(f"pad1d: negative padding ({left}, {right})")
    if mode not in PAD_MODES:
        raise ValueError(f"pad_mode {mode!r} is not supported; expected one of {sorted(PAD_MODES)}")
    if left == 0 and right == 0:
        return x
    if mode != "reflect":
        return jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode=PAD_MODES[mode])
    length = x.shape[1]
    max_pad = max(left, right)
    extra = 0
    if length <= max_pad:
        # reflect needs length > pad: append zeros first, reflect, then drop them again
        extra = max_pad - length + 1
        x = jnp.pad(x, ((0, 0), (0, extra), (0, 0)))
    y = jnp.pad(x, ((0, 0), (left, right), (0, 0)), mode="reflect")
    return y[:, : y.shape[1] - extra] if extra else y


def uniform_init(rngs: nnx.Rngs, shape: tuple[int, ...], bound: float) -> jax.Array:
    """``U(-bound, bound)`` float32 weights from the ``params`` stream (torch's default inits)."""
    key = rngs.params()
    try:
        data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return jax.random.uniform(key, shape, jnp.float32, -bound, bound)  # abstract (eval_shape) or jitted init
    # eager: draw with NumPy seeded by the key; XLA would compile a threefry kernel per weight shape
    rng = np.random.default_rng(data.astype(np.uint32).ravel().tolist())
    return jnp.asarray(rng.uniform(-bound, bound, shape).astype(np.float32))


class SConv1d(nnx.Module):
    """Conv1d with causal / asymmetric padding: ``[B, N, C_in] -> [B, ceil(N / stride), C_out]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        *,
        causal: bool = False,
        pad_mode: str = "reflect",
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        if pad_mode not in PAD_MODES:
            raise ValueError(f"pad_mode {pad_mode!r} is not supported; expected one of {sorted(PAD_MODES)}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation = kernel_size, stride, dilation
        self.causal, self.pad_mode, self.precision = causal, pad_mode, precision
        # torch's default init (kaiming_uniform with a = sqrt(5)): U(+-1/sqrt(fan_in))
        bound = 1.0 / math.sqrt(in_channels * kernel_size)
        self.weight = FrozenWeight(uniform_init(rngs, (kernel_size, in_channels, out_channels), bound))
        self.bias = FrozenWeight(uniform_init(rngs, (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s, d = self.kernel_size, self.stride, self.dilation
        padding_total = (k - 1) * d - (s - 1)
        # the reference passes the undilated kernel size here; identical whenever stride = 1
        extra = extra_padding_for_conv1d(x.shape[1], k, s, padding_total)
        if self.causal:
            x = pad1d(x, padding_total, extra, self.pad_mode)
        else:
            right = padding_total // 2
            x = pad1d(x, padding_total - right, right + extra, self.pad_mode)
        y = jax.lax.conv_general_dilated(
            x,
            self.weight[...],
            window_strides=(s,),
            padding="VALID",
            rhs_dilation=(d,),
            dimension_numbers=_DIMS,
            precision=self.precision,
        )
        return y + self.bias[...]


class SConvTranspose1d(nnx.Module):
    """ConvTranspose1d with the reference's fixed trim: ``[B, L, C_in] -> [B, L * stride, C_out]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        *,
        causal: bool = False,
        trim_right_ratio: float = 1.0,
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        if not causal and trim_right_ratio != 1.0:
            raise ValueError("trim_right_ratio != 1.0 only makes sense for causal convolutions")
        if not 0.0 <= trim_right_ratio <= 1.0:
            raise ValueError(f"trim_right_ratio must lie in [0, 1], got {trim_right_ratio}")
        if stride > kernel_size:
            raise ValueError(f"SConvTranspose1d: stride {stride} > kernel_size {kernel_size}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = kernel_size, stride
        self.causal, self.trim_right_ratio, self.precision = causal, float(trim_right_ratio), precision
        # torch computes ConvTranspose1d's fan_in from its weight [C_in, C_out, k] as C_out * k
        bound = 1.0 / math.sqrt(out_channels * kernel_size)
        self.weight = FrozenWeight(uniform_init(rngs, (kernel_size, in_channels, out_channels), bound))
        self.bias = FrozenWeight(uniform_init(rngs, (out_channels,), bound))

    def trims(self) -> tuple[int, int]:
        """Samples removed on the left and on the right of the full transposed output."""
        padding_total = self.kernel_size - self.stride
        if self.causal:
            right = math.ceil(padding_total * self.trim_right_ratio)
        else:
            right = padding_total // 2
        return padding_total - right, right

    def __call__(self, x: jax.Array) -> jax.Array:
        k, s = self.kernel_size, self.stride
        left, right = self.trims()
        # a transposed conv is a forward conv of the s-dilated input with the flipped kernel
        # (stored flipped); trimming the output is padding less on that side
        y = jax.lax.conv_general_dilated(
            x,
            self.weight[...],
            window_strides=(1,),
            padding=[(k - 1 - left, k - 1 - right)],
            lhs_dilation=(s,),
            dimension_numbers=_DIMS,
            precision=self.precision,
        )
        return y + self.bias[...]
