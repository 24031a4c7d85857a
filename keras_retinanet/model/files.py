"""Recognising what a file given as a model is, before Keras tries (and fails obscurely).

:func:`check_model_file` reads a few bytes and, for a ``.keras`` zip or an HDF5 file, the model's
config: a missing, empty, truncated or damaged file, a file that is not a model (weights only,
an image, an exported artifact, a PyTorch checkpoint) and a model of another package (fizyr's
keras-retinanet) each get a :class:`ModelFileError` that says which and what to do.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
ZIP_SIGNATURE = b"PK\x03\x04"
# A model of this package has one of these layers (training model / inference model).
OUR_LAYERS = ("regression_submodel", "filtered_detections")


class ModelFileError(ValueError):
    """A file given as a model is not one this package can load; the message says why."""


def _artifact_hint(path: str) -> str | None:
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, "saved_model.pb")):
            return (
                "an exported SavedModel: retinanet-evaluate and retinanet-predict take it, this "
                "command needs the .keras snapshot it was exported from"
            )
        return "a folder, not a model file"
    lower = path.lower()
    if lower.endswith((".tflite", ".onnx")):
        return (
            "an exported artifact: retinanet-evaluate and retinanet-predict take it, this "
            "command needs the .keras snapshot it was exported from"
        )
    if lower.endswith((".pth", ".pt")):
        return (
            "a PyTorch checkpoint; convert torchvision's RetinaNet with retinanet-convert --from "
            f"torchvision {path} OUT.keras --arch v1|v2"
        )
    return None


def check_model_file(path: str, ours: bool = True) -> str:
    """Check that ``path`` is a model file of this package; return ``"keras"`` or ``"h5"``.

    Args:
        path: the file.
        ours: also require a RetinaNet of this package (False: any intact Keras model file,
            as reading a snapshot's metadata needs; fizyr's models are refused either way).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ModelFileError: anything else that is not a loadable model of this package (the
            message names the file, what it looks like and what to do).
    """
    path = os.fspath(path)
    hint = _artifact_hint(path)
    if hint and os.path.exists(path):
        raise ModelFileError(f"{path} is {hint}")
    if not path.endswith((".keras", ".h5")):
        raise ModelFileError(f"{path}: a model file must end in .keras or .h5")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    size = os.path.getsize(path)
    if size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): an interrupted copy or download?")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if path.endswith(".keras"):
        return _check_keras_zip(path, head, ours)
    return _check_hdf5(path, head, ours)


def _check_keras_zip(path: str, head: bytes, ours: bool) -> str:
    if not head.startswith(ZIP_SIGNATURE):
        raise ModelFileError(f"{path} is not a .keras model: it is not a zip archive{_looks(head)}")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            config = archive.read("config.json").decode() if "config.json" in names else None
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as error:
        raise ModelFileError(
            f"{path} is truncated or damaged ({error}): an interrupted copy or download? "
            "Copy or download it again"
        ) from error
    if config is None:
        raise ModelFileError(f"{path} is a zip archive without config.json: not a Keras model")
    if ours and not any(f'"{name}"' in config for name in OUR_LAYERS):
        raise ModelFileError(
            f"{path} is a Keras model, but not a RetinaNet of this package (it has no "
            f"{' or '.join(OUR_LAYERS)} layer)"
        )
    return "keras"


def _check_hdf5(path: str, head: bytes, ours: bool) -> str:
    if head != HDF5_SIGNATURE:
        raise ModelFileError(f"{path} is not an .h5 model: it is not an HDF5 file{_looks(head)}")
    import h5py  # Keras' own dependency; only .h5 files need it

    try:
        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except (OSError, RuntimeError) as error:
        raise ModelFileError(
            f"{path} is a truncated or damaged HDF5 file ({error}); copy or download it again"
        ) from error
    if config is None:
        raise ModelFileError(
            f"{path} holds weights but no model (no model_config): pass it as backbone "
            "weights (retinanet-train --weights PATH), or give the snapshot file instead"
        )
    text = config.decode() if isinstance(config, bytes) else str(config)
    if _is_fizyr_config(text):
        raise ModelFileError(
            f"{path} is a model of fizyr's keras-retinanet; convert it first: retinanet-convert "
            f"--from fizyr {path} OUT.keras"
        )
    if ours and not any(f'"{name}"' in text for name in OUR_LAYERS):
        raise ModelFileError(
            f"{path} is a Keras model, but not a RetinaNet of this package (it has no "
            f"{' or '.join(OUR_LAYERS)} layer)"
        )
    try:
        json.loads(text)
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{path} has a damaged model config ({error})") from error
    return "h5"


def _is_fizyr_config(text: str) -> bool:
    # keras-resnet's BatchNormalization carries "freeze"; its layers name their package.
    return "keras_resnet" in text or '"freeze"' in text


def is_fizyr_model(path: str) -> bool:
    """Whether ``path`` is a training or inference ``.h5`` of fizyr's keras-retinanet
    (keras-resnet layers in its model config); False for anything else, readable or not."""
    path = os.fspath(path)
    if not path.endswith(".h5") or not os.path.isfile(path):
        return False
    try:
        import h5py  # Keras' own dependency; only .h5 files need it

        with h5py.File(path, "r") as handle:
            config = handle.attrs.get("model_config")
    except (OSError, RuntimeError):
        return False
    if config is None:
        return False
    return _is_fizyr_config(config.decode() if isinstance(config, bytes) else str(config))


def _looks(head: bytes) -> str:
    kinds = {
        b"\xff\xd8\xff": "a JPEG image",
        b"\x89PNG": "a PNG image",
        HDF5_SIGNATURE: "an HDF5 file (rename it to .h5?)",
        ZIP_SIGNATURE: "a zip archive (rename it to .keras?)",
    }
    for signature, kind in kinds.items():
        if head.startswith(signature):
            return f"; it looks like {kind}"
    return ""


class DataFileError(ValueError):
    """A data file (annotations, class list, anchor configuration) cannot be used; the message
    names the file, the line or field, and the fix. A ``ValueError``, as these errors were
    before they had their own class."""
