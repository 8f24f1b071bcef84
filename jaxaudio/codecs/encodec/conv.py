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
``weights.py``): ``g * v / ||v||`` with the norm over every axis but 0. Both layers compute in
their input's dtype (the float32 weights are cast to it): a bfloat16 input is a bfloat16
convolution (cuDNN accumulates in float32), as in a bf16 decode (``EncodecCodec.decode``).

Neither pads a copy of its input where it can avoid it. On a GPU, XLA hands cuDNN only
symmetric zero padding; asymmetric padding (every causal layer), reflect padding and the
transposed convolution's dilated input all become a copy of the input first (the latter
``stride`` times its size, with ``stride - 1`` of every ``stride`` products spent on zeros).
Here :class:`SConv1d` pads symmetrically inside the convolution, drops the outputs that extra
padding adds, and overwrites the few outputs whose window reaches into reflect padding with a
small convolution of the reflected edge (:func:`conv1d_same_padding`). :class:`SConvTranspose1d`
runs as ``stride`` phases of one undilated convolution with ``stride`` times the output
channels, interleaved by a reshape (:func:`conv_transpose1d`); its ``ceil(k / stride) - 1``
frames of one-sided padding remain a padded copy of the undilated input, ``stride`` times
smaller than the dilated one. The tests check both against the reference's literal order (pad
the input, then a VALID convolution; the transposed convolution as a convolution of the
``stride``-dilated input).
"""

from __future__ import annotations

import functools
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


def _conv(x, w, stride, dilation, padding, precision):
    return jax.lax.conv_general_dilated(x, w, window_strides=(stride,), padding=padding,
                                        rhs_dilation=(dilation,), dimension_numbers=_DIMS,
                                        precision=precision)


def _padded_conv(x, w, b, stride, dilation, left, right, mode, precision):
    return _conv(pad1d(x, left, right, mode), w, stride, dilation, "VALID", precision) + b


def conv1d_same_padding(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int, dilation: int,
                        left: int, right: int, mode: str, precision=None) -> jax.Array:
    """``conv(pad1d(x, left, right, mode), w) + b`` (VALID, ``[B, N, C]``) without padding a copy
    of ``x`` when ``mode`` is zero or reflect padding and ``N > max(left, right)``.

    The convolution pads ``p = max(left, right)`` zeros on both sides (symmetric padding, which
    cuDNN takes inside the kernel) and its surplus outputs are sliced off; for reflect padding
    the outputs whose window reaches into the padding (``ceil(left / stride)`` at the start,
    a few at the end when ``right > 0``) are recomputed from a reflect-padded slice of the edge
    and written over the zero-padded ones. Other cases take the padded copy. The gradient is
    the padded form's: the backward of the slices and edge writes kept one more activation
    alive (on an H200 the raw train step's peak was 7.77 GiB with it, 7.46 without).
    """
    args = (stride, dilation, left, right, mode, precision)
    if _unpadded_plan(x.shape[1], w.shape[0], *args[:5]) is None:
        return _padded_conv(x, w, b, *args)
    return _unpadded_conv(x, w, b, *args)


def _unpadded_plan(n, k, stride, dilation, left, right, mode):
    """``(p, drop, n_out, edges)`` for :func:`_unpadded_conv`, or None where it does not apply:
    symmetric padding ``p``, the surplus outputs ``drop`` before ours, our ``n_out``, and the
    reflected edges as ``(first output, x start, x stop, left pad, right pad, outputs)``."""
    span = (k - 1) * dilation + 1
    n_out = (n + left + right - span) // stride + 1
    zero = mode in ("constant", "zero")
    if n_out < 1 or not (zero or (mode == "reflect" and n > max(left, right))):
        return None
    # symmetric padding p: the output grid starts at x[-p], ours at x[-left]; p - left must be
    # a multiple of the stride for the grids to align
    p = max(left, right)
    if (p - left) % stride:
        return None
    edges = []
    if not zero:
        n_left = -(-left // stride)  # outputs whose window starts in the left padding
        if n_left:
            m = min(n, max(left + 1, (n_left - 1) * stride + span - left))
            if left + m < (n_left - 1) * stride + span:
                return None
            edges.append((0, 0, m, left, 0, n_left))
        if right:
            # first output whose window ends in the right padding, moved earlier if the slice
            # it starts would be too short to reflect
            j0 = min(max(0, -(-(left + n - span + 1) // stride)), (n - right - 1 + left) // stride)
            start = j0 * stride - left
            if start < 0 or j0 >= n_out:
                return None
            edges.append((j0, start, n, 0, right, n_out - j0))
    return p, (p - left) // stride, n_out, tuple(edges)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7, 8))
def _unpadded_conv(x, w, b, stride, dilation, left, right, mode, precision):
    p, drop, n_out, edges = _unpadded_plan(x.shape[1], w.shape[0], stride, dilation, left, right,
                                           mode)
    y = _conv(x, w, stride, dilation, [(p, p)], precision) + b
    for j, start, stop, lo, hi, count in edges:
        e = jnp.pad(x[:, start:stop], ((0, 0), (lo, hi), (0, 0)), mode="reflect")
        e = _conv(e, w, stride, dilation, "VALID", precision)[:, :count] + b
        y = jax.lax.dynamic_update_slice_in_dim(y, e.astype(y.dtype), drop + j, axis=1)
    return y if (drop == 0 and y.shape[1] == n_out) else y[:, drop: drop + n_out]


def _unpadded_fwd(x, w, b, *args):
    return _unpadded_conv(x, w, b, *args), (x, w, b)


def _unpadded_bwd(stride, dilation, left, right, mode, precision, res, g):
    # the padded form's gradient (same function); with frozen weights only the input's is live
    _, vjp = jax.vjp(lambda x, w, b: _padded_conv(x, w, b, stride, dilation, left, right, mode,
                                                  precision), *res)
    return vjp(g)


_unpadded_conv.defvjp(_unpadded_fwd, _unpadded_bwd)


def conv_transpose1d(x: jax.Array, w: jax.Array, b: jax.Array, *, stride: int, left: int,
                     right: int, precision=None) -> jax.Array:
    """Transposed convolution ``[B, L, C_in] -> [B, (L - 1) * stride + k - left - right, C_out]``
    with ``w [k, C_in, C_out]`` the equivalent forward kernel flipped in time (see
    :class:`SConvTranspose1d`), as ``stride`` phases of one convolution of the undilated input.

    Output sample ``q * stride + p`` of the full transposed convolution is
    ``sum_j x[q - j] W[j * stride + p]`` (``W`` the torch kernel, ``J = ceil(k / stride)`` taps a
    phase): one convolution of ``x`` with ``J`` taps and ``stride * C_out`` outputs, whose rows
    ``[q, p, c]`` reshape to samples ``q * stride + p``. Only the frames ``q`` that survive the
    trim are computed; a remainder of the trim is sliced off the samples.
    """
    k, c_in, c_out = w.shape
    s = stride
    taps = -(-k // s)
    if taps * s != k:  # zero taps at the start of the flipped kernel (the torch kernel's end)
        w = jnp.pad(w, ((taps * s - k, 0), (0, 0), (0, 0)))
    full = (x.shape[1] - 1) * s + k  # the untrimmed length
    # flipped kernel row u * s + (s - 1 - p) holds phase p's tap J - 1 - u
    wp = w.reshape(taps, s, c_in, c_out)[:, ::-1].transpose(0, 2, 1, 3).reshape(taps, c_in, s * c_out)
    q0, q1 = left // s, -(-(full - right) // s)  # frames holding the kept samples
    # frame q reads x[q - J + 1 .. q]: padding J - 1 on the left gives frame 0 at output 0
    lo, hi = taps - 1 - q0, q1 - x.shape[1]
    y = _conv(x, wp, 1, 1, [(lo, hi)], precision) + jnp.tile(b, s)
    y = y.reshape(y.shape[0], (q1 - q0) * s, c_out)
    a = left - q0 * s
    n = full - left - right
    return y if (a == 0 and y.shape[1] == n) else y[:, a: a + n]


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

    def paddings(self, length: int) -> tuple[int, int]:
        """Samples the reference pads on the left and on the right of an input of ``length``."""
        k, s, d = self.kernel_size, self.stride, self.dilation
        padding_total = (k - 1) * d - (s - 1)
        # the reference passes the undilated kernel size here; identical whenever stride = 1
        extra = extra_padding_for_conv1d(length, k, s, padding_total)
        if self.causal:
            return padding_total, extra
        right = padding_total // 2
        return padding_total - right, right + extra

    def __call__(self, x: jax.Array) -> jax.Array:
        s, d = self.stride, self.dilation
        left, right = self.paddings(x.shape[1])
        w, b = self.weight[...].astype(x.dtype), self.bias[...].astype(x.dtype)
        return conv1d_same_padding(x, w, b, stride=s, dilation=d, left=left, right=right,
                                   mode=self.pad_mode, precision=self.precision)


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
        s = self.stride
        left, right = self.trims()
        w, b = self.weight[...].astype(x.dtype), self.bias[...].astype(x.dtype)
        return conv_transpose1d(x, w, b, stride=s, left=left, right=right,
                                precision=self.precision)
