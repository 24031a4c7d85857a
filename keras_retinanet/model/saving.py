"""Snapshot files: saving a model atomically, with a JSON metadata record inside the file.

Snapshots carry a small JSON metadata record (class names, anchor parameters, backbone, image
sizes, dataset, epoch) inside the model file: an attribute of the root group of an ``.h5`` file,
an extra ``keras_retinanet.json`` entry in a ``.keras`` zip. Keras ignores both when loading,
so a snapshot is still an ordinary Keras model file. :mod:`keras_retinanet.models` re-exports
these names and adds ``load_model``, which can also convert a training model for inference.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile

import keras

from keras_retinanet.model.files import check_model_file

METADATA_KEY = "keras_retinanet"
_METADATA_ZIP_ENTRY = "keras_retinanet.json"


def _check_model_path(path: str) -> str:
    path = os.fspath(path)
    if not path.endswith((".keras", ".h5")):
        raise ValueError(f"model path must end in .keras or .h5, got {path}")
    return path


def write_metadata(path: str, metadata: dict) -> None:
    """Store a JSON metadata record inside a saved ``.keras`` or ``.h5`` model file."""
    path = _check_model_path(path)
    text = json.dumps(metadata, sort_keys=True)
    if path.endswith(".h5"):
        # only .h5 files need it (Keras' own dependency, loaded on demand)
        import h5py

        with h5py.File(path, "a") as f:
            f.attrs[METADATA_KEY] = text
    else:
        with zipfile.ZipFile(path, "a") as archive:
            if _METADATA_ZIP_ENTRY in archive.namelist():
                raise ValueError(f"{path} already has metadata; save the model again first")
            archive.writestr(_METADATA_ZIP_ENTRY, text)


def read_metadata(path: str) -> dict:
    """The metadata record of a model file written by :func:`save_model`, or ``{}``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: ``path`` is not a model file of this package (the message says why).
    """
    path = os.fspath(path)
    check_model_file(path, ours=False)  # any intact Keras model file may carry metadata
    if path.endswith(".h5"):
        # only .h5 files need it (Keras' own dependency, loaded on demand)
        import h5py

        with h5py.File(path, "r") as f:
            text = f.attrs.get(METADATA_KEY)
    else:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            text = archive.read(_METADATA_ZIP_ENTRY) if _METADATA_ZIP_ENTRY in names else None
    if text is None:
        return {}
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return json.loads(text)


def save_model(model: keras.Model, path: str, metadata: dict | None = None) -> str:
    """Save atomically: write a temporary file beside ``path``, then rename it over ``path``.

    A crash or kill during the write leaves any previous file at ``path`` intact, because
    ``os.replace`` is atomic on one filesystem.

    Args:
        model: the model to save (optimizer state included when compiled).
        path: destination ending in ``.keras`` or ``.h5``.
        metadata: JSON-serialisable record stored inside the file (see :func:`read_metadata`).

    Returns:
        ``path``.
    """
    path = _check_model_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    extension = ".keras" if path.endswith(".keras") else ".h5"
    handle, temporary = tempfile.mkstemp(
        prefix=f".{os.path.basename(path)}.", suffix=f".tmp{extension}", dir=directory
    )
    os.close(handle)
    try:
        os.remove(temporary)  # Keras refuses to overwrite without asking in some versions
        model.save(temporary)
        if metadata:
            write_metadata(temporary, metadata)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path
