"""What one torch key is (:class:`Entry`), and the layouts of flax's native layers.

jaxaudio's own layers (:mod:`jaxaudio.nn`) keep torch's names and layouts, so each of their
variables is one :class:`Entry` with the identity conversion: the torch name is the NNX path
joined with ``.``. flax's native layers store other names and layouts; :data:`HANDLERS` maps
them, so a module built from them converts as well:

| NNX module          | torch keys                                   | layout                       |
| ------------------- | -------------------------------------------- | ---------------------------- |
| ``nnx.Linear``      | ``weight``, ``bias``                         | kernel ``[in, out]`` = W.T   |
| ``nnx.Conv``        | ``weight``, ``bias``                         | kernel ``[k, in, out]`` from ``[out, in, k]`` |
| ``nnx.LayerNorm``   | ``weight``, ``bias``                         | ``scale``, ``bias``          |
| ``nnx.BatchNorm``   | ``weight``, ``bias``, ``running_mean``, ``running_var``, ``num_batches_tracked`` | ``scale``, ``bias``, ``mean``, ``var`` (the counter only matters for torch's ``momentum=None``; it is accepted and dropped) |
| ``nnx.MultiHeadAttention`` | ``in_proj_weight``, ``in_proj_bias``, ``out_proj.*`` | q/k/v/out kernels split per head |
| ``nnx.Embed``       | ``weight``                                   | ``embedding``                |
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np
from flax import nnx

Path_ = tuple  # an NNX path: attribute names and list indices

IDENTITY = (lambda a: (a,)), (lambda vs: vs[0])


@dataclasses.dataclass(frozen=True)
class Entry:
    """One torch key: the NNX variables it fills and the layout conversions both ways."""

    torch_name: str
    var_paths: tuple[Path_, ...]
    to_vars: Callable[[np.ndarray], tuple[np.ndarray, ...]]
    to_torch: Callable[[tuple[np.ndarray, ...]], np.ndarray]
    optional: bool = False
    constant: np.ndarray | None = None  # a deterministic buffer the module computes itself


def _linear_entries(p: str, path: Path_, m: nnx.Linear) -> list[Entry]:
    out = [Entry(p + "weight", (path + ("kernel",),), lambda w: (w.T,), lambda vs: vs[0].T)]
    if m.bias is not None:
        out.append(Entry(p + "bias", (path + ("bias",),), *IDENTITY))
    return out


def _conv_entries(p: str, path: Path_, m: nnx.Conv) -> list[Entry]:
    def to_vars(w):  # [out, in, *k] -> [*k, in, out]
        return (np.transpose(w, tuple(range(2, w.ndim)) + (1, 0)),)

    def to_torch(vs):  # [*k, in, out] -> [out, in, *k]
        k = vs[0]
        nd = k.ndim - 2
        return np.transpose(k, (nd + 1, nd) + tuple(range(nd)))

    out = [Entry(p + "weight", (path + ("kernel",),), to_vars, to_torch)]
    if m.bias is not None:
        out.append(Entry(p + "bias", (path + ("bias",),), *IDENTITY))
    return out


def _norm_entries(p: str, path: Path_, m) -> list[Entry]:
    out = []
    if getattr(m, "scale", None) is not None:
        out.append(Entry(p + "weight", (path + ("scale",),), *IDENTITY))
    if getattr(m, "bias", None) is not None:
        out.append(Entry(p + "bias", (path + ("bias",),), *IDENTITY))
    if isinstance(m, nnx.BatchNorm):
        out.append(Entry(p + "running_mean", (path + ("mean",),), *IDENTITY))
        out.append(Entry(p + "running_var", (path + ("var",),), *IDENTITY))
        out.append(Entry(p + "num_batches_tracked", (), lambda a: (), lambda vs: None, optional=True))
    return out


def _mha_entries(p: str, path: Path_, m: nnx.MultiHeadAttention) -> list[Entry]:
    qkv = tuple(path + (n,) for n in ("query", "key", "value"))

    def w_to_vars(w):  # [3E, E] rows q, k, v -> 3 x [E_in, H, d]
        parts = np.split(w, 3, axis=0)
        return tuple(x.T.reshape(x.shape[1], m.num_heads, -1) for x in parts)

    def w_to_torch(vs):
        return np.concatenate([k.reshape(k.shape[0], -1).T for k in vs], axis=0)

    def b_to_vars(b):
        return tuple(x.reshape(m.num_heads, -1) for x in np.split(b, 3))

    def b_to_torch(vs):
        return np.concatenate([b.reshape(-1) for b in vs])

    out_path = path + ("out",)
    out = [
        Entry(p + "in_proj_weight", tuple(q + ("kernel",) for q in qkv), w_to_vars, w_to_torch),
        Entry(
            p + "out_proj.weight",
            (out_path + ("kernel",),),
            lambda w: (w.T.reshape(m.num_heads, -1, w.shape[0]),),
            lambda vs: vs[0].reshape(-1, vs[0].shape[-1]).T,
        ),
    ]
    if m.use_bias:
        out.append(Entry(p + "in_proj_bias", tuple(q + ("bias",) for q in qkv), b_to_vars, b_to_torch))
        out.append(Entry(p + "out_proj.bias", (out_path + ("bias",),), *IDENTITY))
    return out


def _embed_entries(p: str, path: Path_, m) -> list[Entry]:
    return [Entry(p + "weight", (path + ("embedding",),), *IDENTITY)]


HANDLERS: list[tuple[type, Callable[[str, Path_, Any], list[Entry]]]] = [
    (nnx.Linear, _linear_entries),
    (nnx.Conv, _conv_entries),
    (nnx.LayerNorm, _norm_entries),
    (nnx.BatchNorm, _norm_entries),
    (nnx.MultiHeadAttention, _mha_entries),
    (nnx.Embed, _embed_entries),
]
