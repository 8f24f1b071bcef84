"""Reference implementations that the tests hold the fast paths against (not part of the
package): the codec's convolutions in the reference's literal order, and JAX's own gradient of
the LSTM scan."""

from __future__ import annotations

import jax

from jaxaudio.codecs.encodec import conv as conv_mod
from jaxaudio.codecs.encodec import lstm_scan as scan_mod


def padded_sconv1d(layer: conv_mod.SConv1d, x: jax.Array) -> jax.Array:
    """``SConv1d`` as the ``encodec`` package computes it: pad the input (``pad1d``, reflect
    padding of short inputs included), then a VALID convolution."""
    left, right = layer.paddings(x.shape[1])
    w, b = layer.weight[...].astype(x.dtype), layer.bias[...].astype(x.dtype)
    return conv_mod._padded_conv(x, w, b, layer.stride, layer.dilation, left, right,
                                 layer.pad_mode, layer.precision)


def dilated_sconv_transpose1d(layer: conv_mod.SConvTranspose1d, x: jax.Array) -> jax.Array:
    """``SConvTranspose1d`` as a forward convolution of the ``stride``-dilated input with the
    flipped kernel (the layer stores it flipped); trimming the output is padding less."""
    k, s = layer.kernel_size, layer.stride
    left, right = layer.trims()
    w, b = layer.weight[...].astype(x.dtype), layer.bias[...].astype(x.dtype)
    y = jax.lax.conv_general_dilated(x, w, window_strides=(1,),
                                     padding=[(k - 1 - left, k - 1 - right)], lhs_dilation=(s,),
                                     dimension_numbers=conv_mod._DIMS, precision=layer.precision)
    return y + b


def lstm_scan_autodiff(x, layers, precision=None, unroll: int = 1):
    """The same wavefront scan as :func:`jaxaudio.codecs.encodec.lstm_scan.lstm_scan` with
    float32 products, differentiated by JAX (every step's intermediates kept) instead of by its
    recomputing ``custom_vjp``."""
    layers = tuple(tuple(layer) for layer in layers)
    return scan_mod._scan_forward(x, layers, precision, (unroll, "float32"),
                                  keep_states=False)[0]
