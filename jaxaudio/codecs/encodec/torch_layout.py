"""Mapping EnCodec checkpoints (``encodec`` package and Hugging Face layouts) onto ``EncodecCodec``.

Two torch layouts name the same SEANet weights (``N`` is the index in the reference's
``nn.Sequential``, which our layer lists mirror):

====================  ==========================================  =================================
ours                  ``encodec`` package (``encodec_24khz-*.th``)  Hugging Face (``model.safetensors``)
====================  ==========================================  =================================
``P.layers.N``        ``P.model.N.conv.conv.{weight_g,weight_v,bias}``  ``P.layers.N.conv.*``
``P.layers.N`` (tr.)  ``P.model.N.convtr.convtr.*``                 ``P.layers.N.conv.*``
``P.layers.N.block.J``  ``P.model.N.block.J.conv.conv.*``           ``P.layers.N.block.J.conv.*``
``P.layers.N.shortcut`` ``P.model.N.shortcut.conv.conv.*``          ``P.layers.N.shortcut.conv.*``
``P.layers.N`` (LSTM) ``P.model.N.lstm.{weight_ih_l0,...}``         ``P.layers.N.lstm.*``
====================  ==========================================  =================================

with ``P`` in ``encoder``, ``decoder``. Newer ``transformers`` spell the weight-norm pair
``parametrizations.weight.original0`` / ``original1``; both spellings are accepted.
``quantizer.*`` is ignored (the codec never quantises). Loading is strict: every expected key
must be present with the expected shape and every other key is an error, all listed at once.
Weight norm is folded in float64: ``w = g * v / ||v||``, the norm over every axis but 0
(for a transposed convolution axis 0 is the input channel).
"""

from __future__ import annotations

import functools
import re
from typing import Iterator, Mapping, NamedTuple

import numpy as np
from flax import nnx

from jaxaudio.codecs.encodec.codec import EncodecCodec
from jaxaudio.codecs.encodec.config import EncodecConfig
from jaxaudio.codecs.encodec.conv import SConv1d, SConvTranspose1d
from jaxaudio.codecs.encodec.lstm import SLSTM
from jaxaudio.codecs.encodec.seanet import ResnetBlock
from jaxaudio.torch_port.names import StateDictError, from_torch_state_dict, mismatch_message

IGNORED_PREFIXES = ("quantizer.",)
_PARAM_SPELLING = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}


class EncodecWeightsError(ValueError):
    """EnCodec weights that do not fit the model: names the file and every bad key."""


class _Slot(NamedTuple):
    target: str  # our name of the layer ("encoder.layers.3")
    kind: str  # "conv", "convtr" or "lstm"
    source: str  # the torch prefix ("encoder.model.3.conv.conv")
    module: object


def detect_layout(keys) -> str:
    """``"encodec"`` (``encoder.model.N...``) or ``"hf"`` (``encoder.layers.N...``)."""
    keys = list(keys)
    if any(k.startswith(("encoder.model.", "decoder.model.")) for k in keys):
        return "encodec"
    if any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        return "hf"
    raise EncodecWeightsError(
        "not an EnCodec state dict: expected keys like 'encoder.model.0.conv.conv.weight_g' (encodec "
        f"package) or 'encoder.layers.0.conv.weight_g' (Hugging Face); found {', '.join(sorted(keys)[:40])}"
    )


def _normalize(state: Mapping[str, np.ndarray], source: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Drop ignored keys, rename the parametrization spelling; also return new name -> file name."""
    out: dict[str, np.ndarray] = {}
    spelled: dict[str, str] = {}
    clashes = []
    for key, value in state.items():
        if key.startswith(IGNORED_PREFIXES):
            continue
        new = key
        for long, short in _PARAM_SPELLING.items():
            if key.endswith("." + long):
                new = key[: -len(long)] + short
        if new in out:
            clashes.append(f"{spelled.get(new, new)} and {key}")
        out[new] = np.asarray(value)
        spelled[new] = key
    if clashes:
        raise EncodecWeightsError(f"{source}: the same weight is stored twice under both spellings: {', '.join(clashes)}")
    return out, spelled


def _slots(codec: EncodecCodec, layout: str) -> Iterator[_Slot]:
    sep = "model" if layout == "encodec" else "layers"
    conv = "conv.conv" if layout == "encodec" else "conv"
    convtr = "convtr.convtr" if layout == "encodec" else "conv"
    for part in ("encoder", "decoder"):
        for i, layer in enumerate(getattr(codec, part).layers):
            mine, theirs = f"{part}.layers.{i}", f"{part}.{sep}.{i}"
            if isinstance(layer, SConv1d):
                yield _Slot(mine, "conv", f"{theirs}.{conv}", layer)
            elif isinstance(layer, SConvTranspose1d):
                yield _Slot(mine, "convtr", f"{theirs}.{convtr}", layer)
            elif isinstance(layer, SLSTM):
                yield _Slot(mine, "lstm", f"{theirs}.lstm", layer)
            elif isinstance(layer, ResnetBlock):
                for j, sub in enumerate(layer.block):
                    if isinstance(sub, SConv1d):
                        yield _Slot(f"{mine}.block.{j}", "conv", f"{theirs}.block.{j}.{conv}", sub)
                if layer.shortcut is not None:
                    yield _Slot(f"{mine}.shortcut", "conv", f"{theirs}.shortcut.{conv}", layer.shortcut)


def _expected(slot: _Slot, norm: str) -> dict[str, tuple[int, ...]]:
    """Torch key suffix -> torch shape for one layer."""
    m = slot.module
    if slot.kind == "lstm":
        h = m.dimension
        out = {}
        for layer in range(m.num_layers):
            out |= {f"weight_ih_l{layer}": (4 * h, h), f"weight_hh_l{layer}": (4 * h, h)}
            out |= {f"bias_ih_l{layer}": (4 * h,), f"bias_hh_l{layer}": (4 * h,)}
        return out
    k, cin, cout = m.kernel_size, m.in_channels, m.out_channels
    w_shape = (cout, cin, k) if slot.kind == "conv" else (cin, cout, k)
    if norm == "weight_norm":
        return {"weight_g": (w_shape[0], 1, 1), "weight_v": w_shape, "bias": (cout,)}
    return {"weight": w_shape, "bias": (cout,)}


def _fold_weight_norm(g: np.ndarray, v: np.ndarray) -> np.ndarray:
    v = v.astype(np.float64)
    norm = np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
    return g.astype(np.float64).reshape(norm.shape) * v / norm


def _convert(slot: _Slot, arrays: dict[str, np.ndarray], norm: str) -> dict[str, np.ndarray]:
    """Torch arrays of one layer to our names and layouts (float32)."""
    if slot.kind == "lstm":
        return {f"{slot.target}.{k}": v.astype(np.float32) for k, v in arrays.items()}
    w = _fold_weight_norm(arrays["weight_g"], arrays["weight_v"]) if norm == "weight_norm" else arrays["weight"]
    if slot.kind == "conv":  # torch [C_out, C_in, k] -> [k, C_in, C_out]
        w = np.transpose(w, (2, 1, 0))
    else:  # torch [C_in, C_out, k] -> the equivalent forward kernel [k, C_in, C_out], flipped in time
        w = np.transpose(w, (2, 0, 1))[::-1]
    return {
        f"{slot.target}.weight": np.ascontiguousarray(w, dtype=np.float32),
        f"{slot.target}.bias": arrays["bias"].astype(np.float32),
    }


@functools.lru_cache(maxsize=16)
def _abstract_split(config: EncodecConfig, precision) -> tuple:
    model = nnx.eval_shape(lambda: EncodecCodec(config, precision=precision, rngs=nnx.Rngs(0)))
    return nnx.split(model)


def abstract_codec(config: EncodecConfig, *, precision=None) -> EncodecCodec:
    """The codec's structure with shapes only (no weights are initialised)."""
    return nnx.merge(*_abstract_split(config, precision))


def torch_state_to_arrays(
    state: Mapping[str, np.ndarray], config: EncodecConfig, *, layout: str | None = None, source: str = "state dict"
) -> dict[str, np.ndarray]:
    """A torch-layout EnCodec state dict to our ``{name: array}``; strict, raising :class:`EncodecWeightsError`."""
    state, spelled = _normalize(state, source)
    layout = layout or detect_layout(state)
    uses_param_spelling = any(k != spelled[k] for k in state)
    model = abstract_codec(config)
    out: dict[str, np.ndarray] = {}
    used: set[str] = set()
    missing: list[str] = []
    bad_shape: list[str] = []
    for slot in _slots(model, layout):
        expected = _expected(slot, config.norm)
        arrays = {}
        for suffix, shape in expected.items():
            key = f"{slot.source}.{suffix}"
            if key not in state:
                name = key
                if uses_param_spelling and suffix in ("weight_g", "weight_v"):
                    name = f"{slot.source}.parametrizations.weight.original{0 if suffix == 'weight_g' else 1}"
                missing.append(f"{name} {list(shape)}")
                continue
            used.add(key)
            if tuple(state[key].shape) != shape:
                bad_shape.append(f"{spelled[key]}: {list(state[key].shape)}, expected {list(shape)}")
            arrays[suffix] = state[key]
        if len(arrays) == len(expected) and not bad_shape:
            out |= _convert(slot, arrays, config.norm)
    unused = sorted(spelled[k] for k in set(state) - used)
    message = mismatch_message(f"{source}: EnCodec weights ({layout} layout) do not fit the model "
                               f"{config.to_json()}", missing, unused, bad_shape)
    if message:
        raise EncodecWeightsError(message)
    return out


def codec_from_arrays(
    arrays: Mapping[str, np.ndarray],
    config: EncodecConfig,
    *,
    precision=None,
    source: str = "weights",
) -> EncodecCodec:
    """Build an :class:`EncodecCodec` from our ``{name: array}``, strictly, as every model is loaded."""
    try:
        codec = from_torch_state_dict(
            lambda: EncodecCodec(config, precision=precision, rngs=nnx.Rngs(0)),
            arrays, source=f"{source} (EnCodec model {config.to_json()})")
    except StateDictError as e:
        raise EncodecWeightsError(str(e)) from None
    for _, module in nnx.iter_graph(codec):
        if isinstance(module, SLSTM):
            module.check_float16_range()  # float16 recurrent products only for weights that fit
    return codec


# --- configuration from the shapes of a torch-layout state dict -------------------------------

_IDX = re.compile(r"^encoder\.(?:model|layers)\.(\d+)\.(.*)$")


def infer_config(state: Mapping[str, np.ndarray]) -> dict:
    """Sizes that a torch-layout state dict determines: channels, n_filters, ratios, ...

    Not determined by shapes (and so left to the caller / the 24 kHz defaults): ``causal``,
    ``pad_mode``, ``dilation_base``, activations, ``trim_right_ratio``, ``sample_rate``.
    Raises ``ValueError`` when the encoder's structure cannot be read.
    """
    state, _ = _normalize(state, "state dict")
    layers: dict[int, dict[str, np.ndarray]] = {}
    for key, value in state.items():
        m = _IDX.match(key)
        if m:
            layers.setdefault(int(m.group(1)), {})[m.group(2)] = value
    if not layers:
        raise ValueError("no encoder keys")

    def conv_weight(entries: dict[str, np.ndarray], prefix: str) -> np.ndarray | None:
        for suffix in ("weight_v", "weight"):
            for name in (f"{prefix}conv.conv.{suffix}", f"{prefix}convtr.convtr.{suffix}", f"{prefix}conv.{suffix}"):
                if name in entries and np.ndim(entries[name]) == 3:
                    return entries[name]
        return None

    kinds = {}  # layers without a recognisable weight are left to the strict key check
    for i, entries in layers.items():
        if "lstm.weight_ih_l0" in entries:
            kinds[i] = "lstm"
        elif conv_weight(entries, "block.1.") is not None:
            kinds[i] = "res"
        elif conv_weight(entries, "") is not None:
            kinds[i] = "conv"
    order = sorted(kinds)
    convs = [i for i in order if kinds[i] == "conv"]
    first, last, downs = convs[0], convs[-1], convs[1:-1]
    w0, wl = conv_weight(layers[first], ""), conv_weight(layers[last], "")
    res = [i for i in order if kinds[i] == "res"]
    cfg = dict(
        channels=int(w0.shape[1]),
        n_filters=int(w0.shape[0]),
        kernel_size=int(w0.shape[2]),
        dimension=int(wl.shape[0]),
        last_kernel_size=int(wl.shape[2]),
        ratios=tuple(int(conv_weight(layers[i], "").shape[2]) // 2 for i in reversed(downs)),
        n_residual_layers=sum(1 for i in res if downs and i < downs[0]),
        norm="weight_norm" if any(k.endswith("weight_g") for k in state) else "none",
    )
    lstm_layers = [i for i in order if kinds[i] == "lstm"]
    cfg["lstm"] = sum(1 for k in layers[lstm_layers[0]] if k.startswith("lstm.weight_ih_l")) if lstm_layers else 0
    if res:
        block = layers[res[0]]
        w1 = conv_weight(block, "block.1.")
        cfg["residual_kernel_size"] = int(w1.shape[2])
        cfg["compress"] = max(1, int(w1.shape[1]) // int(w1.shape[0]))
        cfg["true_skip"] = not any(k.startswith("shortcut.") for k in block)
    return cfg
