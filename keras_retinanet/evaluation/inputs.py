"""The model and the data an evaluation runs on: an inference model from a training one, the
class-count check between model and data, the validation generator a snapshot records, and the
metric a dataset is scored with by default."""

from __future__ import annotations

import json
import os
import re
import warnings
from typing import Any

from keras_retinanet.model.retinanet import read_metadata
from keras_retinanet.preprocessing.factory import create_generator


def model_num_classes(model: Any) -> int | None:
    """Number of classes K of a training or inference RetinaNet model, or None if unknown.

    Read from the output of the classification subnet, ``(B, N, K)``, which both the training
    model and the inference model built on it contain.
    """
    recorded = getattr(model, "num_classes", None)  # an exported artifact records its own
    if isinstance(recorded, int):
        return recorded
    get_layer = getattr(model, "get_layer", None)
    if get_layer is None:
        return None
    try:
        shape = get_layer("classification_submodel").output.shape
    except (ValueError, AttributeError):
        return None
    return None if shape[-1] is None else int(shape[-1])


def check_num_classes(num_model_classes: int | None, generator: Any, model_name: str) -> None:
    """Raises a clear error when a model and a data set disagree on the number of classes.

    Args:
        num_model_classes: classes the model predicts; None skips the check.
        generator: the data set.
        model_name: how to name the model in the message (its file, usually).

    Raises:
        ValueError: the two numbers differ; the message names both and the model.
    """
    num_data_classes = generator.num_classes()
    if num_model_classes is None or num_model_classes == num_data_classes:
        return
    info = _dataset_description(generator)
    raise ValueError(
        f"{model_name} predicts {num_model_classes} classes but the dataset {info} has "
        f"{num_data_classes} classes; evaluate on the dataset the model was trained on, or "
        f"give the dataset's generator the model's {num_model_classes} class names in the "
        "model's label order (retinanet-evaluate: --classes FILE for voc)"
    )


def _dataset_description(generator: Any) -> str:
    try:
        info = generator.dataset_info()
    except (AttributeError, NotImplementedError):
        return type(generator).__name__
    return json.dumps(info, default=str)


def generator_from_snapshot(model_path: str, metadata: dict | None = None, **kwargs: Any) -> Any:
    """The validation generator of the data set a snapshot was trained on.

    Args:
        model_path: a ``.keras``/``.h5`` snapshot written by ``retinanet-train``.
        metadata: its metadata, if already read (:func:`~keras_retinanet.models.read_metadata`).
        **kwargs: generator options (``image_min_side``, ``shuffle``...).

    Returns:
        The generator of the record's ``"val"`` split.

    Raises:
        ValueError: the snapshot has no dataset record, or the record has no validation split.
    """

    if metadata is None:
        metadata = read_metadata(model_path)
    record = metadata.get("dataset")
    if not record:
        raise ValueError(
            f"{model_path} records no dataset (it was not saved by retinanet-train); name the "
            f"dataset, e.g. retinanet-evaluate voc DATA_DIR {model_path}"
        )
    generator = create_generator(record, "val", **kwargs)
    if generator is None:
        raise ValueError(
            f"the dataset recorded in {model_path} has no validation split ({record}); name "
            f"the dataset and split, e.g. retinanet-evaluate voc DATA_DIR {model_path} --set test"
        )
    return generator


def default_metric(dataset: dict | None) -> str:
    """The metric a dataset is published with: ``coco`` for COCO data; for Pascal VOC data,
    ``voc12`` (VOC2010+ all-point AP) when its folder names a year from 2010 on (``VOC2012``,
    ``voc2012_sample``), ``voc07`` (11-point AP) for VOC2007 to VOC2009; ``voc07`` for any other
    data (CSV, a custom VOC-layout folder), as fizyr's tools reported it.

    Args:
        dataset: a dataset record (``generator.dataset_info()`` or a snapshot's ``dataset``).
    """
    dataset = dataset or {}
    if dataset.get("type") == "coco":
        return "coco"
    if dataset.get("type") == "voc":
        folder = os.path.basename(os.path.normpath(str(dataset.get("data_dir", ""))))
        year = re.search(r"voc(\d{4})", folder, flags=re.IGNORECASE)
        if year and int(year.group(1)) >= 2010:
            return "voc12"
    return "voc07"


def warn_if_other_classes(model_path: str, recorded: Any, generator: Any) -> None:
    """Warn when a model's recorded class names differ from the dataset's (labels are then
    matched by index)."""
    if recorded and list(recorded) != list(generator.classes):
        warnings.warn(
            f"{model_path} was trained with classes {list(recorded)} but the dataset names its "
            f"labels {list(generator.classes)}; labels are matched by index",
            stacklevel=3,
        )
