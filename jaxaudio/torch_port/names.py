"""Torch ``state_dict`` names <-> NNX module variables, strictly, in both directions.

The mapping walks the NNX module tree generically: a module path is the torch name (attribute
names and list indices joined with ``.``; the ``layers`` list inside an ``nnx.Sequential`` is
skipped, because torch's ``nn.Sequential`` numbers its children directly).

Every jaxaudio model is built from :mod:`jaxaudio.nn` layers, which store torch's names and
layouts, so each of its variables is the torch key of its own path, unchanged (one :class:`Entry`
with the identity conversion): e.g.
``transformer.layers.0.self_attn.in_proj_weight`` (``[3E, E]``), ``input_norm.weight``,
``conv_layers.0.weight`` (``[out, in, k]``), spectral norm's ``output_proj.weight_orig`` /
``weight_u`` / ``weight_v``, BatchNorm's ``running_mean`` / ``num_batches_tracked`` (cast to the
variable's dtype on load). The codec's frozen weights load the same way from jaxaudio's own
names (:mod:`jaxaudio.codecs.encodec.torch_layout` maps EnCodec's torch layouts onto them).

Modules may declare deterministic torch buffers (e.g. the positional table ``pe``) through a
``torch_constants()`` method: such a key is optional, and when present it must match.
RNG state (dropout streams) is never part of the mapping. Every mismatch is reported at once,
in the words :func:`mismatch_message` uses for every loader of the stack.

Usage::

    model = from_torch_state_dict(lambda: SimpleTransformer(..., rngs=nnx.Rngs(0)), state_dict)
    named = torch_state_dict(model)          # the module as a torch state_dict (numpy)
    named_grads = torch_state_dict(model, grads)  # grads of nnx.state(model, nnx.Param)
"""

from __future__ import annotations

from typing import Any, Callable

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Path_ = tuple  # an NNX path: attribute names and list indices
_LIST_LIMIT = 40


@dataclasses.dataclass(frozen=True)
class Entry:
    """One torch key: the NNX variable it fills, or (``var_path`` None) a constant it must equal."""

    torch_name: str
    var_path: Path_ | None
    optional: bool = False
    constant: np.ndarray | None = None  # a deterministic buffer the module computes itself


class StateDictError(KeyError):
    """A state dict that does not match the module: lists every offending key."""

    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0]) if self.args else ""


_SKIPPED_VARIABLES = (nnx.RngState, nnx.Intermediate)


def _fmt(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LIST_LIMIT])
    return shown + (f", ... and {len(keys) - _LIST_LIMIT} more" if len(keys) > _LIST_LIMIT else "")


def mismatch_message(header: str, missing=(), unused=(), wrong_shapes=(), other_values=()) -> str | None:
    """One message listing every missing, unused, mis-shaped and wrong-valued key; ``None`` if all fit."""
    groups = (("missing keys", missing), ("unused keys", unused), ("wrong shapes", wrong_shapes),
              ("constant buffers with other values", other_values))
    if not any(keys for _, keys in groups):
        return None
    return "\n  ".join([header] + [f"{what} ({len(keys)}): {_fmt(list(keys))}" for what, keys in groups if keys])


def _torch_name(path: Path_, nodes: dict[Path_, Any]) -> str:
    parts = []
    for i, part in enumerate(path):
        if part == "layers" and isinstance(nodes.get(path[:i]), nnx.Sequential):
            continue
        parts.append(str(part))
    return ".".join(parts)


def _flat_variables(tree) -> dict[Path_, Any]:
    return {tuple(path): var for path, var in nnx.to_flat_state(nnx.state(tree))}


def _value(x) -> np.ndarray:
    if isinstance(x, nnx.Variable):
        x = x.get_value()
    if isinstance(x, jax.ShapeDtypeStruct):  # an abstract module: a zero-stride stand-in
        return np.broadcast_to(np.zeros((), x.dtype), x.shape)
    return np.asarray(x)


def _abstract_paths(module: nnx.Module) -> list[str]:
    return [
        ".".join(map(str, p))
        for p, v in _flat_variables(module).items()
        if isinstance(v.get_value(), jax.ShapeDtypeStruct)
    ]


def from_torch_state_dict(factory: Callable[[], nnx.Module], state_dict: dict[str, Any], *, source: str = "state dict"):
    """``factory()``'s module filled from ``state_dict``, without initialising random weights.

    The module is first built abstractly (``nnx.eval_shape``: shapes only, so a large model is
    not drawn just to be overwritten), then loaded strictly. If the abstract build leaves
    variables the state dict cannot fill (e.g. RNG state kept by a module), it is built for real.
    """
    module = nnx.eval_shape(factory)
    load_torch_state_dict(module, state_dict, source=source)
    if _abstract_paths(module):
        module = load_torch_state_dict(factory(), state_dict, source=source)
    return module


def torch_entries(module: nnx.Module) -> list[Entry]:
    """Every torch key of ``module``: one a variable (tree order), plus declared constants."""
    nodes = {tuple(p): n for p, n in nnx.iter_graph(module) if isinstance(n, nnx.Module)}
    variables = _flat_variables(module)
    entries: list[Entry] = []
    for path, node in nodes.items():
        if hasattr(node, "torch_constants"):
            prefix = _torch_name(path, nodes)
            prefix = prefix + "." if prefix else ""
            for name, arr in node.torch_constants().items():
                entries.append(Entry(prefix + name, None, optional=True, constant=np.asarray(arr)))
    for path, var in variables.items():
        if not isinstance(var, _SKIPPED_VARIABLES):
            entries.append(Entry(_torch_name(path, nodes), path))
    names = [e.torch_name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{type(module).__name__}: several NNX variables map to the torch keys {dupes}")
    return entries


def strip_prefix(state_dict: dict[str, np.ndarray], prefixes=("module.", "_orig_mod.")) -> dict[str, np.ndarray]:
    """Drop wrapper prefixes every key shares (DDP's ``module.``, ``torch.compile``'s ``_orig_mod.``)."""
    changed = True
    while changed and state_dict:
        changed = False
        for pre in prefixes:
            if all(k.startswith(pre) for k in state_dict):
                state_dict = {k[len(pre):]: v for k, v in state_dict.items()}
                changed = True
    return state_dict


def load_torch_state_dict(module: nnx.Module, state_dict: dict[str, Any], *, source: str = "state dict") -> nnx.Module:
    """Fill ``module`` in place from a torch ``state_dict`` (original names), strictly.

    Every required key must be present with the torch shape, and every key must be used; a
    mismatch raises :class:`StateDictError` listing the missing, unexpected and mis-shaped keys
    (nothing is assigned then). Values are cast to the variables' dtypes. Returns ``module``.
    """
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    entries = torch_entries(module)
    variables = _flat_variables(module)
    missing, bad_shape, bad_value, updates = [], [], [], []
    for e in entries:
        if e.torch_name not in sd:
            if not e.optional:
                missing.append(e.torch_name)
            continue
        arr = sd[e.torch_name]
        if e.constant is not None:
            if arr.shape != e.constant.shape:
                bad_shape.append(f"{e.torch_name}: {list(arr.shape)}, expected {list(e.constant.shape)}")
            elif not np.allclose(arr, e.constant, rtol=0.0, atol=1e-3):
                bad_value.append(e.torch_name)
            continue
        expected = _value(variables[e.var_path]).shape
        if arr.shape != expected:
            bad_shape.append(f"{e.torch_name}: {list(arr.shape)}, expected {list(expected)}")
            continue
        updates.append((e, arr))
    known = {e.torch_name for e in entries}
    unexpected = sorted(k for k in sd if k not in known)
    message = mismatch_message(f"{source} does not match {type(module).__name__}:", missing, unexpected,
                               bad_shape, bad_value)
    if message:
        raise StateDictError(message)
    for e, arr in updates:
        var = variables[e.var_path]
        var.set_value(jnp.asarray(np.asarray(arr, dtype=_value(var).dtype)))
    return module


def torch_state_dict(module: nnx.Module, state: nnx.State | None = None) -> dict[str, np.ndarray]:
    """Torch-named, torch-layout arrays of ``module``'s variables, or of ``state``.

    ``state`` is any NNX state with the module's paths, e.g. parameter gradients from
    ``jax.grad`` over ``nnx.state(model, nnx.Param)``: keys whose variables it lacks are left out.
    Without ``state`` the result is a full torch ``state_dict`` (constant buffers included).
    """
    flat = _flat_variables(module) if state is None else {tuple(p): v for p, v in nnx.to_flat_state(state)}
    out: dict[str, np.ndarray] = {}
    for e in torch_entries(module):
        if e.constant is not None:
            if state is None:
                out[e.torch_name] = e.constant
            continue
        if e.var_path in flat:
            out[e.torch_name] = np.asarray(_value(flat[e.var_path]))
    return out
