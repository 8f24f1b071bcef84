"""Multi-scale component extraction (rhythm, harmony, timbre) and the component selector.

Built from :mod:`jaxaudio.nn` layers, which keep PyTorch's parameter layout and names
(``weight``/``bias`` of ``Conv1d`` as ``[out, in, k]``; ``BatchNorm1d``'s
``running_mean``/``running_var``/``num_batches_tracked``), so a torch state dict maps onto the
NNX tree by splitting names on ``.`` (digits index an ``nnx.List``), with no transposes.
:mod:`jaxaudio.agents.compositional.agent` lists every name.
"""

from __future__ import annotations

import jax
from flax import nnx

# BN_MOMENTUM, BatchNorm1d and Conv1d are re-exported: callers import them from here.
from jaxaudio.nn import BN_MOMENTUM, BatchNorm1d, Conv1d, LeakyReLU, run_layers

__all__ = [
    "BN_MOMENTUM", "BRANCH_KERNELS", "COMPONENT_NAMES", "LEAKY_SLOPE", "NUM_COMPONENTS",
    "BatchNorm1d", "Conv1d", "MultiScaleExtractor", "apply_component_selector",
    "component_weights", "make_component_selector", "weight_components",
]

LEAKY_SLOPE = 0.2
NUM_COMPONENTS = 6  # rhythm, harmony, timbre of the input, then of the target
COMPONENT_NAMES = (
    "input_rhythm", "input_harmony", "input_timbre",
    "target_rhythm", "target_harmony", "target_timbre",
)

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
    return run_layers(selector, all_components)


def component_weights(selection_logits: jax.Array) -> jax.Array:
    """Softmax over the 6 component types: ``[B, 6, T] -> [B, 6, T]``."""
    return jax.nn.softmax(selection_logits, axis=1)


def weight_components(all_components: jax.Array, weights: jax.Array) -> jax.Array:
    """Scale each component's ``C`` channels by its type weight: ``[B, 6 C, T] x [B, 6, T]``."""
    b, dc, t = all_components.shape
    k = weights.shape[1]
    grouped = all_components.reshape(b, k, dc // k, t) * weights[:, :, None, :]
    return grouped.reshape(b, dc, t)
