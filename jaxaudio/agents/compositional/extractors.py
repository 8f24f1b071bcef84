"""Multi-scale component extraction (rhythm, harmony, timbre) and the component selector.

Layers here keep PyTorch's parameter layout and names (``weight``/``bias`` of ``Conv1d`` as
``[out, in, k]``; ``BatchNorm1d``'s ``running_mean``/``running_var``/``num_batches_tracked``), so
a torch state dict maps onto the NNX tree by splitting names on ``.`` (digits index an
``nnx.List``), with no transposes. :mod:`jaxaudio.agents.compositional.agent` lists every name.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

# torch.nn.BatchNorm1d defaults, which the original uses unchanged.
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
LEAKY_SLOPE = 0.2
NUM_COMPONENTS = 6  # rhythm, harmony, timbre of the input, then of the target
COMPONENT_NAMES = (
    "input_rhythm", "input_harmony", "input_timbre",
    "target_rhythm", "target_harmony", "target_timbre",
)


def torch_uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    """U(-bound, bound): torch's default init for Conv1d/Linear weights and biases.

    Drawn flat and reshaped: eager construction compiles one sampler per distinct shape, and
    1-D samplers compile about twice as fast as 3-D ones.
    """
    flat = jax.random.uniform(key, (math.prod(shape),), jnp.float32, -bound, bound)
    return flat.reshape(shape)


class Conv1d(nnx.Module):
    """``torch.nn.Conv1d`` (stride 1, symmetric zero padding): ``[B, C_in, T] -> [B, C_out, T']``.

    ``weight`` is ``[C_out, C_in, k]`` and ``bias`` ``[C_out]``, torch's layout.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, padding: int = 0,
                 *, rngs: nnx.Rngs):
        self.padding = padding
        # kaiming_uniform(a=sqrt(5)) reduces to U(+-1/sqrt(fan_in)), the same bound as the bias.
        bound = 1.0 / math.sqrt(in_channels * kernel_size)
        self.weight = nnx.Param(
            torch_uniform(rngs.params(), (out_channels, in_channels, kernel_size), bound))
        self.bias = nnx.Param(torch_uniform(rngs.params(), (out_channels,), bound))

    def __call__(self, x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x, self.weight[...], window_strides=(1,), padding=[(self.padding, self.padding)],
            dimension_numbers=("NCH", "OIH", "NCH"))
        return y + self.bias[...][None, :, None]


class BatchNorm1d(nnx.Module):
    """``torch.nn.BatchNorm1d`` on ``[B, C, T]`` with torch's exact semantics.

    Train: normalise with the batch mean and the *biased* batch variance over ``(B, T)``; update
    ``running_mean`` and ``running_var`` by ``r <- (1 - momentum) r + momentum s`` where the
    variance fed to the update is the *unbiased* one (``n / (n - 1)``), and add one to
    ``num_batches_tracked``. Eval: normalise with the running statistics, update nothing.
    (``nnx.BatchNorm`` uses the opposite momentum convention and the biased variance.)
    """

    def __init__(self, num_features: int, eps: float = BN_EPS, momentum: float = BN_MOMENTUM):
        self.eps = eps
        self.momentum = momentum
        self.weight = nnx.Param(jnp.ones((num_features,), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((num_features,), jnp.float32))
        self.running_mean = nnx.BatchStat(jnp.zeros((num_features,), jnp.float32))
        self.running_var = nnx.BatchStat(jnp.ones((num_features,), jnp.float32))
        # torch keeps an int64 counter; int32 is JAX's default integer (x64 off).
        self.num_batches_tracked = nnx.BatchStat(jnp.zeros((), jnp.int32))

    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        if train:
            n = x.shape[0] * x.shape[2]
            if n < 2:
                raise ValueError(
                    f"BatchNorm1d: training needs more than one value per channel, got input "
                    f"shape {x.shape} (batch * frames = {n})")
            mean = jnp.mean(x, axis=(0, 2))
            var = jnp.mean(jnp.square(x - mean[None, :, None]), axis=(0, 2))
            # Buffers carry no gradient in torch either.
            m = self.momentum
            batch_mean = jax.lax.stop_gradient(mean)
            batch_var_unbiased = jax.lax.stop_gradient(var) * (n / (n - 1))
            self.running_mean[...] = (1.0 - m) * self.running_mean[...] + m * batch_mean
            self.running_var[...] = (1.0 - m) * self.running_var[...] + m * batch_var_unbiased
            count = self.num_batches_tracked[...]
            self.num_batches_tracked[...] = count + jnp.ones((), count.dtype)
        else:
            mean = self.running_mean[...]
            var = self.running_var[...]
        inv = jax.lax.rsqrt(var + self.eps)
        scale = (self.weight[...] * inv)[None, :, None]
        return (x - mean[None, :, None]) * scale + self.bias[...][None, :, None]


class LeakyReLU(nnx.Module):
    """``torch.nn.LeakyReLU`` (no parameters; a module so it can sit at its Sequential index)."""

    def __init__(self, negative_slope: float = LEAKY_SLOPE):
        self.negative_slope = negative_slope

    def __call__(self, x: jax.Array) -> jax.Array:
        # `x > 0` (not >=) gives torch's gradient at exactly 0: the slope.
        return jnp.where(x > 0, x, self.negative_slope * x)


# kernel sizes of (conv1, conv2) per branch, from the original: short for transients, long for
# texture. Padding k // 2 keeps T.
BRANCH_KERNELS = {"rhythm": (3, 5), "harmony": (7, 9), "timbre": (15, 21)}


class MultiScaleExtractor(nnx.Module):
    """Rhythm, harmony and timbre of one source: ``[B, D, T] -> 3 x [B, output_dim, T]``.

    Each branch: ``norm(act(conv2(act(conv1(x)))) + skip(x))`` with ``conv1: D -> 2 output_dim``,
    ``conv2: 2 output_dim -> output_dim``, a 1x1 ``skip: D -> output_dim``, LeakyReLU(0.2) and
    a torch-semantics ``BatchNorm1d``. Attribute names are the original's
    (``rhythm_conv1``, ``rhythm_conv2``, ``rhythm_norm``, ``rhythm_skip``, ``harmony_*``,
    ``timbre_*``; ``activation``).
    """

    def __init__(self, encoding_dim: int, output_dim: int = 64, *, rngs: nnx.Rngs):
        self.output_dim = output_dim
        for branch, (k1, k2) in BRANCH_KERNELS.items():
            setattr(self, f"{branch}_conv1",
                    Conv1d(encoding_dim, output_dim * 2, k1, padding=k1 // 2, rngs=rngs))
            setattr(self, f"{branch}_conv2",
                    Conv1d(output_dim * 2, output_dim, k2, padding=k2 // 2, rngs=rngs))
            setattr(self, f"{branch}_norm", BatchNorm1d(output_dim))
            setattr(self, f"{branch}_skip", Conv1d(encoding_dim, output_dim, 1, rngs=rngs))
        self.activation = LeakyReLU(LEAKY_SLOPE)

    def _branch(self, branch: str, x: jax.Array, train: bool) -> jax.Array:
        skip = getattr(self, f"{branch}_skip")(x)
        h = self.activation(getattr(self, f"{branch}_conv1")(x))
        h = self.activation(getattr(self, f"{branch}_conv2")(h))
        return getattr(self, f"{branch}_norm")(h + skip, train=train)

    def __call__(self, x: jax.Array, *, train: bool = False
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``x [B, D, T]`` -> ``(rhythm, harmony, timbre)``, each ``[B, output_dim, T]``."""
        rhythm, harmony, timbre = (self._branch(b, x, train) for b in BRANCH_KERNELS)
        return rhythm, harmony, timbre


def make_component_selector(component_dim: int, *, rngs: nnx.Rngs,
                            hidden: int = 256) -> nnx.List:
    """The original's ``component_selector`` Sequential: 1x1 conv, LeakyReLU(0.2), 1x1 conv.

    An ``nnx.List`` so that its items sit at torch's indices (``component_selector.0.weight``,
    ``component_selector.2.bias``). Apply it with :func:`apply_component_selector`.
    """
    return nnx.List([
        Conv1d(component_dim * NUM_COMPONENTS, hidden, 1, rngs=rngs),
        LeakyReLU(LEAKY_SLOPE),
        Conv1d(hidden, NUM_COMPONENTS, 1, rngs=rngs),
    ])


def apply_component_selector(selector: nnx.List, all_components: jax.Array) -> jax.Array:
    """``[B, 6 C, T]`` concatenated components -> selection logits ``[B, 6, T]``."""
    h = all_components
    for layer in selector:
        h = layer(h)
    return h


def component_weights(selection_logits: jax.Array) -> jax.Array:
    """Softmax over the 6 component types: ``[B, 6, T] -> [B, 6, T]``."""
    return jax.nn.softmax(selection_logits, axis=1)


def weight_components(all_components: jax.Array, weights: jax.Array) -> jax.Array:
    """Scale each component's ``C`` channels by its type weight: ``[B, 6 C, T] x [B, 6, T]``."""
    b, dc, t = all_components.shape
    k = weights.shape[1]
    grouped = all_components.reshape(b, k, dc // k, t) * weights[:, :, None, :]
    return grouped.reshape(b, dc, t)
