"""Reading PyTorch checkpoints (``.pt``, ``.th``) without importing torch.

``torch.save`` has written a zip archive since torch 1.6: a pickle (``data.pkl``) whose tensors
point into raw little-endian storages (``data/<key>``). This module unpickles that archive with
an allow-list of globals (tensor rebuilders, storages, ``OrderedDict``, ``argparse.Namespace``,
NumPy scalars) and turns every tensor into a NumPy array. Anything else in the pickle is refused
with an error naming it, so loading a checkpoint never runs code from the file.

Legacy (pre-zip) files need torch itself: install the ``torch`` extra
(``pip install 'jaxaudio[torch]'``) and they are read through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import argparse
import collections
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

try:  # bfloat16 for NumPy; ships with jax
    import ml_dtypes

    _BF16 = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - jax always brings ml_dtypes
    _BF16 = None

_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": _BF16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}

_TORCH_DTYPES: dict[str, Any] = {
    "float32": np.float32,
    "float": np.float32,
    "float64": np.float64,
    "double": np.float64,
    "float16": np.float16,
    "half": np.float16,
    "bfloat16": _BF16,
    "int64": np.int64,
    "long": np.int64,
    "int32": np.int32,
    "int": np.int32,
    "int16": np.int16,
    "int8": np.int8,
    "uint8": np.uint8,
    "bool": np.bool_,
}


class TorchFileError(ValueError):
    """A file that is not a readable PyTorch checkpoint, named with the reason."""


class _StorageType:
    def __init__(self, name: str):
        if name not in _STORAGE_DTYPES or _STORAGE_DTYPES[name] is None:
            raise TorchFileError(f"unsupported torch storage type {name!r}")
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _TorchDtype:
    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_TORCH_DTYPES[name])


class _Storage:
    """A flat storage: the bytes of ``data/<key>`` viewed with the storage's dtype."""

    def __init__(self, raw: bytes, dtype: np.dtype, byteorder: str):
        arr = np.frombuffer(raw, dtype=dtype.newbyteorder("<" if byteorder == "little" else ">"))
        self.array = arr.astype(dtype, copy=False)


def _rebuild_tensor(storage: _Storage, offset: int, size, stride, dtype: np.dtype | None = None):
    flat = storage.array
    if dtype is not None and flat.dtype != dtype:
        flat = flat.view(dtype)
    size = tuple(int(s) for s in size)
    stride = tuple(int(s) for s in stride)
    if not size:
        return np.array(flat[offset], copy=True)
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[offset:], shape=size, strides=tuple(s * itemsize for s in stride), writeable=False
    )
    return np.array(view, copy=True)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
    return _rebuild_tensor(storage, offset, size, stride, dtype.dtype)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    return func(*args)


def _numpy_scalar(dtype, data=None):
    dtype = np.dtype(dtype)
    if data is None:
        return dtype.type(0)
    return np.frombuffer(data, dtype=dtype, count=1)[0]


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("argparse", "Namespace"): argparse.Namespace,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
    ("torch", "Tensor"): None,
    ("torch.nn.parameter", "Parameter"): None,
    ("torch", "Size"): tuple,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy", "dtype"): np.dtype,
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storages: dict[str, bytes], byteorder: str, path: Path):
        super().__init__(io.BytesIO(data))
        self._storages = storages
        self._byteorder = byteorder
        self._path = path
        self._loaded: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        if module == "torch" and name in _TORCH_DTYPES:
            return _TorchDtype(name)
        key = (module, name)
        if key in _ALLOWED:
            obj = _ALLOWED[key]
            if obj is None:  # a class only ever used as a type marker (_rebuild_from_type_v2)
                return key
            return obj
        if module.startswith("torch") and name == "device":
            return str
        raise TorchFileError(
            f"{self._path}: refusing to unpickle {module}.{name}; a checkpoint should hold only "
            f"tensors, containers, numbers, strings and argparse.Namespace"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise TorchFileError(f"{self._path}: unexpected persistent id {pid!r}")
        _, storage_type, key, _location, _numel = pid
        if not isinstance(storage_type, _StorageType):
            raise TorchFileError(f"{self._path}: storage {key!r} has no known storage type")
        if key not in self._loaded:
            if key not in self._storages:
                raise TorchFileError(f"{self._path}: storage data/{key} is missing from the archive")
            self._loaded[key] = _Storage(self._storages[key], storage_type.dtype, self._byteorder)
        return self._loaded[key]


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise TorchFileError(f"{path}: not a torch.save archive (no single data.pkl inside)")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = zf.read(prefix + "byteorder").decode().strip() or "little"
        storages = {
            n[len(prefix) + len("data/"):]: zf.read(n)
            for n in names
            if n.startswith(prefix + "data/") and not n.endswith("/")
        }
        data = zf.read(pkl[0])
    return _Unpickler(data, storages, byteorder, path).load()


def _load_with_torch(path: Path) -> Any:
    try:
        import torch
    except ImportError as e:
        raise TorchFileError(
            f"{path} is a legacy (pre-zip) PyTorch file, which only torch can read; install the "
            f"optional extra with `pip install 'jaxaudio[torch]'`, or re-save it with torch >= 1.6"
        ) from e
    torch.serialization.add_safe_globals([argparse.Namespace])
    obj = torch.load(path, map_location="cpu", weights_only=True)

    def to_numpy(x):
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().float().numpy() if x.dtype == torch.bfloat16 else x.detach().cpu().numpy()
        if isinstance(x, dict):
            return type(x)((k, to_numpy(v)) for k, v in x.items()) if isinstance(x, collections.OrderedDict) else {k: to_numpy(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return type(x)(to_numpy(v) for v in x)
        return x

    return to_numpy(obj)


def load_torch_file(path: str | Path) -> Any:
    """Load a ``torch.save`` file with every tensor as a NumPy array.

    Zip-format files (torch >= 1.6, which includes the published EnCodec weights and the
    original's ``best_model.pt``) need no torch. Raises :class:`TorchFileError` naming the file
    for a missing, truncated or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise TorchFileError(f"{path}: no such file")
    if zipfile.is_zipfile(path):
        try:
            return _load_zip(path)
        except TorchFileError:
            raise
        except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, KeyError, ValueError) as e:
            raise TorchFileError(f"{path}: corrupt PyTorch archive ({e})") from e
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a raw pickle: the legacy format
        return _load_with_torch(path)
    raise TorchFileError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor a pickle)")


def flatten_state_dict(obj: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """Nested dicts of arrays to ``{"a.b.c": array}``, the shape of a torch ``state_dict``."""
    out: dict[str, np.ndarray] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten_state_dict(v, f"{prefix}{k}."))
    elif isinstance(obj, np.ndarray):
        out[prefix[:-1]] = obj
    return out
