"""SEANet's LSTM with skip connection: ``y = lstm(x) + x`` over the frames.

Two implementations of the same torch ``nn.LSTM`` (gates ``i, f, g, o``; ``bias_ih`` and
``bias_hh`` both added; zero initial state):

- ``"scan"``: the first layer's input projection of every frame as one matmul, then one
  ``lax.scan`` that runs the layers as a wavefront (:func:`lstm_scan`). Runs anywhere; the
  CPU path, and the one that shards over a batch mesh axis without any collective.
- ``"cudnn"``: cuDNN's fused LSTM through ``jax.experimental.rnn.lstm`` (forward and backward
  kernels), with the torch weights packed into cuDNN's flat layout by
  :func:`pack_lstm_weights`. GPU only.

``"auto"`` picks the scan (faster than cuDNN on an H200, and than a Pallas kernel per step,
see experiments/README.md). The choice is made when the function is traced.

The scan, its GPU forms (unroll, recomputed gradient, float16 operands at TF32, the step's
barrier) and their switches live in :mod:`jaxaudio.codecs.encodec.wavefront`; their names are
re-exported here.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxaudio.codecs.base import FrozenWeight
from jaxaudio.codecs.encodec.conv import uniform_init
from jaxaudio.codecs.encodec.wavefront import (  # noqa: F401  (re-exported)
    F16_MAX, GPU_UNROLL, GPU_UNROLL_LOW, GRAD_ENV, LSTM_GRADS, LSTM_PRODUCTS, LSTM_STEPS,
    PRODUCTS_ENV, STEP_ENV, UNROLL_ENV, lstm_grad_mode, lstm_scan, lstm_step_form,
    recurrent_products, scan_unroll)

__all__ = ["F16_MAX", "GPU_UNROLL", "GPU_UNROLL_LOW", "GRAD_ENV", "LSTM_GRADS", "LSTM_IMPLS",
           "LSTM_PRODUCTS", "LSTM_STEPS", "PRODUCTS_ENV", "SLSTM", "STEP_ENV", "UNROLL_ENV",
           "cudnn_lstm_available", "lstm_cudnn", "lstm_grad_mode", "lstm_scan", "lstm_step_form",
           "pack_lstm_weights", "recurrent_products", "resolve_lstm_impl", "scan_unroll"]

LSTM_IMPLS = ("auto", "scan", "cudnn")


def cudnn_lstm_available() -> bool:
    """True when the default backend is a CUDA GPU and jax ships the cuDNN RNN kernels."""
    if jax.default_backend() != "gpu":
        return False
    try:
        from jax.experimental import rnn
    except ImportError:  # pragma: no cover - part of every jax release we support
        return False
    if getattr(rnn, "gpu_rnn", None) is None:
        return False
    return "rocm" not in str(getattr(jax.devices()[0].client, "platform_version", "")).lower()


def resolve_lstm_impl(impl: str) -> str:
    if impl not in LSTM_IMPLS:
        raise ValueError(f"lstm_impl must be one of {LSTM_IMPLS}, got {impl!r}")
    if impl == "auto":
        # The scan runs both layers as one wavefront (T + L - 1 steps); on an H200 it beat
        # cuDNN's LSTM for the full codec (decode fwd+bwd 61 ms vs 107 ms, [8, 128, 1200];
        # experiments/README.md), so it is the default everywhere. "cudnn" stays selectable.
        return "scan"
    if impl == "cudnn" and not cudnn_lstm_available():
        raise ValueError(
            f"lstm_impl='cudnn' needs a CUDA GPU as JAX's default backend (it is {jax.default_backend()!r}); "
            "use 'scan' or 'auto'"
        )
    return impl


def pack_lstm_weights(layers: list[tuple[jax.Array, ...]]) -> jax.Array:
    """torch LSTM weights to cuDNN's flat vector (unidirectional).

    Layout (see ``jax.experimental.rnn``): every layer's ``W_ih, W_hh`` in order, then every
    layer's ``b_ih, b_hh``; gates stay in torch's ``i, f, g, o`` order.
    """
    mats = [w.reshape(-1) for w_ih, w_hh, _, _ in layers for w in (w_ih, w_hh)]
    biases = [b.reshape(-1) for _, _, b_ih, b_hh in layers for b in (b_ih, b_hh)]
    return jnp.concatenate(mats + biases)


def _cudnn_precision(precision):
    """cuDNN's RNN takes one switch, TF32 or not; it rejects 'default' (bfloat16) outright."""
    if precision is None:
        return None  # follows jax_default_matmul_precision
    name = precision if isinstance(precision, str) else str(jax.lax.Precision(precision))
    return "highest" if name.lower() in ("highest", "float32", "precision.highest") else "high"


def lstm_cudnn(x: jax.Array, layers: list[tuple[jax.Array, ...]], precision=None) -> jax.Array:
    """Multi-layer LSTM through cuDNN, time-major ``[T, B, H_in] -> [T, B, H]`` (GPU only)."""
    from jax.experimental import rnn

    hidden = layers[0][1].shape[1]
    input_size = layers[0][0].shape[1]
    if any(w_ih.shape[1] != hidden for w_ih, *_ in layers[1:]):
        raise ValueError("cuDNN LSTM: layers after the first must take the hidden size as input")
    t, b = x.shape[0], x.shape[1]
    h0 = jnp.zeros((len(layers), b, hidden), x.dtype)
    y, _, _ = rnn.lstm(
        jnp.swapaxes(x, 0, 1),
        h0,
        h0,
        pack_lstm_weights(layers),
        jnp.full((b,), t, jnp.int32),
        input_size=input_size,
        hidden_size=hidden,
        num_layers=len(layers),
        dropout=0.0,
        bidirectional=False,
        precision=_cudnn_precision(precision),
    )
    return jnp.swapaxes(y, 0, 1)


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
        impl: str = "auto",
        precision: str | None = None,
        rngs: nnx.Rngs,
    ):
        if impl not in LSTM_IMPLS:
            raise ValueError(f"lstm_impl must be one of {LSTM_IMPLS}, got {impl!r}")
        self.dimension, self.num_layers, self.skip = dimension, num_layers, skip
        self.impl, self.precision = impl, precision
        bound = 1.0 / math.sqrt(dimension)  # torch's LSTM init: U(+-1/sqrt(hidden))
        # whether the recurrent weights fit float16 (float16 products, see
        # jaxaudio.codecs.encodec.wavefront); loading weights sets it (check_float16_range)
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
        impl = resolve_lstm_impl(self.impl)
        weights = self.layer_weights()
        if impl == "cudnn":
            y = lstm_cudnn(xt, weights, self.precision)
        else:
            products = None if self.float16_range else "float32"
            if x.dtype == jnp.bfloat16:
                weights = [(w_ih.astype(x.dtype), w_hh.astype(x.dtype), b_ih, b_hh)
                           for w_ih, w_hh, b_ih, b_hh in weights]
            y = lstm_scan(xt, weights, self.precision, products=products)
        if self.skip:
            y = y + xt
        return jnp.swapaxes(y, 0, 1).astype(x.dtype)
