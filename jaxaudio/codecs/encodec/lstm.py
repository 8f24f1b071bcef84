"""SEANet's LSTM with skip connection: ``y = lstm(x) + x`` over the frames.

torch's ``nn.LSTM`` (gates ``i, f, g, o``; ``bias_ih`` and ``bias_hh`` both added; zero
initial state) as the first layer's input projection of every frame in one matmul, then one
``lax.scan`` that runs the layers as a wavefront (:func:`lstm_scan`, in
:mod:`jaxaudio.codecs.encodec.lstm_scan`, whose names are re-exported here). It runs on every
device and shards over a batch mesh axis without any collective; on an H200 it beat cuDNN's
LSTM for the full codec (decode forward+backward 61 ms against 107 ms, ``[8, 128, 1200]``;
experiments/README.md), which is why that route is gone.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs.base import FrozenWeight
from jaxaudio.codecs.encodec.conv import uniform_init
from jaxaudio.codecs.encodec.lstm_scan import (  # noqa: F401  (re-exported)
    F16_MAX, GPU_UNROLL, GPU_UNROLL_LOW, LSTM_PRODUCTS, lstm_scan, recurrent_products,
    scan_unroll)

__all__ = ["F16_MAX", "GPU_UNROLL", "GPU_UNROLL_LOW", "LSTM_PRODUCTS", "SLSTM", "lstm_scan",
           "recurrent_products", "scan_unroll"]


class SLSTM(nnx.Module):
    """LSTM over frames with skip: ``[B, T, C] -> [B, T, C]`` (channels-last).

    Weights keep torch's names and layout (``weight_ih_l0 [4C, C]``, ``bias_hh_l1 [4C]``...).
    """

    def __init__(
        self,
        dimension: int,
        num_layers: int = 2,
        skip: bool = True,
        *,
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        self.dimension, self.num_layers, self.skip = dimension, num_layers, skip
        self.precision = precision
        bound = 1.0 / math.sqrt(dimension)  # torch's LSTM init: U(+-1/sqrt(hidden))
        # whether the recurrent weights fit float16 (float16 products, see
        # jaxaudio.codecs.encodec.lstm_scan); loading weights sets it (check_float16_range)
        self.float16_range = bound < F16_MAX
        for layer in range(num_layers):
            for name, shape in (
                ("weight_ih", (4 * dimension, dimension)),
                ("weight_hh", (4 * dimension, dimension)),
                ("bias_ih", (4 * dimension,)),
                ("bias_hh", (4 * dimension,)),
            ):
                setattr(self, f"{name}_l{layer}", FrozenWeight(uniform_init(rngs, shape, bound)))

    def layer_weights(self) -> list[tuple[jax.Array, ...]]:
        return [
            tuple(getattr(self, f"{name}_l{layer}")[...] for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
            for layer in range(self.num_layers)
        ]

    def check_float16_range(self) -> bool:
        """Sets and returns ``float16_range`` from the weights' values (concrete arrays): whether
        every recurrent weight (``weight_hh``, and ``weight_ih`` past the first layer) lies
        inside float16's finite range. Weights outside it keep float32 products."""
        layers = self.layer_weights()
        recurrent = [w_hh for _, w_hh, _, _ in layers] + [w_ih for w_ih, _, _, _ in layers[1:]]
        self.float16_range = all(float(np.max(np.abs(np.asarray(w)))) < F16_MAX for w in recurrent)
        return self.float16_range

    def __call__(self, x: jax.Array) -> jax.Array:
        # States, cells and sums in float32 whatever the input's dtype (the cell state sums
        # over all 1200 frames); a bfloat16 input (a bf16 decode) makes the products bfloat16
        xt = jnp.swapaxes(x, 0, 1).astype(jnp.float32)  # time-major
        weights = self.layer_weights()
        products = None if self.float16_range else "float32"
        if x.dtype == jnp.bfloat16:
            weights = [(w_ih.astype(x.dtype), w_hh.astype(x.dtype), b_ih, b_hh)
                       for w_ih, w_hh, b_ih, b_hh in weights]
        y = lstm_scan(xt, weights, self.precision, products=products)
        if self.skip:
            y = y + xt
        return jnp.swapaxes(y, 0, 1).astype(x.dtype)
