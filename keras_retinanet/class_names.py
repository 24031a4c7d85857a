"""Class names of a model by label: from a text file or a snapshot's metadata (what
``retinanet-predict`` captions and writes)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from keras_retinanet.model import retinanet as models


def load_class_names(
    model_path: str | os.PathLike,
    classes_file: str | os.PathLike | None = None,
    metadata: dict | None = None,
) -> list[str] | None:
    """Class names by label: from ``classes_file`` if given, else from the snapshot metadata.

    Args:
        model_path: a snapshot written by :func:`keras_retinanet.model.retinanet.save_model`.
        classes_file: a text file with one class name per line (label = line index, blank
            lines ignored), for models saved without metadata.
        metadata: the model's metadata, if already read (an exported artifact's).

    Returns:
        The names, or None when neither source has them (labels are then shown as numbers).

    Raises:
        FileNotFoundError: ``classes_file`` or ``model_path`` does not exist.
    """
    if classes_file is not None:
        classes_file = os.fspath(classes_file)
        if not os.path.isfile(classes_file):
            raise FileNotFoundError(
                f"classes file not found: {classes_file} (expected one class name per line)"
            )
        with open(classes_file, encoding="utf-8-sig") as f:
            names = [line.strip() for line in f if line.strip()]
        if not names:
            raise ValueError(f"no class names in {classes_file} (expected one name per line)")
        return names
    if metadata is None:
        metadata = models.read_metadata(os.fspath(model_path))
    names = metadata.get("classes")
    return [str(n) for n in names] if names else None


def class_name(label: int, class_names: Sequence[str] | None) -> str:
    """Name of ``label``, or the label number when it has none."""
    label = int(label)
    if class_names is not None and 0 <= label < len(class_names):
        return class_names[label]
    return str(label)
