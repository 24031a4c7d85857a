"""Read a PyTorch ``state_dict`` file with the standard library and NumPy only.

A TensorFlow user should not need a 5 GB PyTorch install to read a 130 MB checkpoint. Two
layouts exist:

- the zip layout (``torch.save`` since PyTorch 1.6): ``<root>/data.pkl`` is a pickle whose
  tensors refer, through persistent ids ``("storage", storage type, key, location, numel)``,
  to raw little-endian storages in ``<root>/data/<key>``;
- the legacy layout (before 1.6, e.g. torchvision's 2019 RetinaNet file): five pickles in a
  row (magic number, protocol version, system info, the object, the storage keys), then each
  storage as an 8-byte element count followed by its raw bytes.

Tensors are rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)``
calls inside the pickle, which :class:`_Unpickler` answers with NumPy strided views. Nothing
else is executed: any other global a file names raises :class:`PthError`.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

# PyTorch storage class names -> NumPy dtypes (little-endian, as torch writes them).
_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # read as uint16 and widened below
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class PthError(ValueError):
    """A file that is not a readable PyTorch state_dict; the message names the file."""


class _StorageType:
    def __init__(self, name: str) -> None:
        if name not in _STORAGE_DTYPES:
            raise pickle.UnpicklingError(f"unsupported tensor storage type torch.{name}")
        self.name = name

    def itemsize(self) -> int:
        return (
            2 if self.name == "BFloat16Storage" else np.dtype(_STORAGE_DTYPES[self.name]).itemsize
        )

    def decode(self, raw: bytes) -> np.ndarray:
        if self.name == "BFloat16Storage":  # the high 16 bits of a float32
            return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        return np.frombuffer(raw, dtype=np.dtype(_STORAGE_DTYPES[self.name]).newbyteorder("<"))


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any) -> Any:
    if len(size) == 0:
        return storage[offset].copy()
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(size), strides=tuple(s * itemsize for s in stride)
    )
    return np.array(view)  # contiguous copy; the storage may be shared by several tensors


def _rebuild_parameter(data: Any, requires_grad: bool = False, *_: Any) -> Any:
    return data


class _Unpickler(pickle.Unpickler):
    """Unpickles a state_dict, loading storages through ``load_storage(type, key, numel)``."""

    def __init__(self, file: Any, load_storage: Any, rebuild: Any = None) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._rebuild = rebuild or _rebuild_tensor
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return self._rebuild
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"the file refers to {module}.{name}, which a plain state_dict does not hold"
        )

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self._storages:
            self._storages[key] = self._load_storage(storage_type, key, numel)
        return self._storages[key]


class _DataOnly(pickle.Unpickler):
    """Unpickles plain data (numbers, strings, lists, dicts) and refuses every global."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"the file refers to {module}.{name}, which a checkpoint "
            "header does not hold; refusing to load it"
        )


def _read_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise PthError(f"{path}: a zip without data.pkl is not a PyTorch checkpoint")
        root = pickles[0][: -len("data.pkl")]

        def load(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            raw = archive.read(f"{root}data/{key}")
            return storage_type.decode(raw[: numel * storage_type.itemsize()])

        with archive.open(pickles[0]) as handle:
            return _Unpickler(io.BytesIO(handle.read()), load).load()


class _Deferred:
    """A tensor of the legacy layout, rebuilt once its storage (stored after the pickle that
    refers to it) has been read."""

    def __init__(self, storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_: Any):
        self.args = (storage, offset, size, stride)

    def resolve(self) -> np.ndarray:
        return _rebuild_tensor(*self.args)


def _read_legacy(path: str) -> Any:
    with open(path, "rb") as handle:
        if handle.read(1) != b"\x80":
            raise PthError(f"{path}: neither a zip nor a pickle, so not a PyTorch checkpoint")
        handle.seek(0)
        if _DataOnly(handle).load() != _LEGACY_MAGIC:
            raise PthError(f"{path}: not a PyTorch checkpoint (wrong magic number)")
        _DataOnly(handle).load()  # protocol version
        _DataOnly(handle).load()  # system info (byte order, type sizes)
        storages: dict[str, tuple[_StorageType, np.ndarray]] = {}

        def placeholder(storage_type: _StorageType, key: str, numel: int) -> np.ndarray:
            dtype = np.float32 if storage_type.name == "BFloat16Storage" else None
            array = np.zeros(numel, dtype=dtype or _STORAGE_DTYPES[storage_type.name])
            storages[key] = (storage_type, array)
            return array

        state = _Unpickler(handle, placeholder, rebuild=_Deferred).load()
        for key in _DataOnly(handle).load():
            (count,) = struct.unpack("<q", handle.read(8))
            storage_type, array = storages[str(key)]
            array[:count] = storage_type.decode(handle.read(count * storage_type.itemsize()))
    if not isinstance(state, dict):
        return state
    return {k: (v.resolve() if isinstance(v, _Deferred) else v) for k, v in state.items()}


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The tensors of a ``torch.save``'d state_dict (or ``{"model": state_dict}``), by name.

    Args:
        path: a ``.pth``/``.pt`` file in either layout.

    Returns:
        ``{name: array}`` with each tensor's dtype and shape (contiguous copies).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        PthError: the file is not a PyTorch state_dict of tensors.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"PyTorch checkpoint not found: {path}")
    try:
        if zipfile.is_zipfile(path):
            state = _read_zip(path)
        else:
            state = _read_legacy(path)
    except (pickle.UnpicklingError, EOFError, KeyError, struct.error) as e:
        raise PthError(f"{path}: cannot read it as a PyTorch state_dict: {e}") from e
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # torchvision's reference scripts save {"model": ..., ...}
    if not isinstance(state, dict):
        raise PthError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    return {str(k): np.asarray(v) for k, v in state.items()}
