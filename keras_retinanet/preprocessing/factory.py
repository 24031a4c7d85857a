"""Build a generator from a dataset record, as the training CLI stores it in snapshots.

Dataset records (plain JSON):

* ``{"type": "voc", "data_dir": D, "train_set": "trainval", "val_set": "test",
  "classes": None | [names] | "path/classes.txt"}``
* ``{"type": "csv", "annotations": F, "classes": F, "val_annotations": F | None}``
* ``{"type": "coco", "data_dir": D, "train_set": "train2017", "val_set": "val2017"}``
"""

from __future__ import annotations

from typing import Any

from keras_retinanet.preprocessing.coco import CocoGenerator
from keras_retinanet.preprocessing.csv import CSVGenerator
from keras_retinanet.preprocessing.voc import PascalVocGenerator
from keras_retinanet.preprocessing.voc_layout import (
    DEFAULT_SPLIT_SEED,
    DEFAULT_VAL_FRACTION,
)

DATASET_TYPES = ("voc", "csv", "coco")


def create_generator(dataset: dict, split: str = "train", **generator_kwargs: Any) -> Any:
    """Instantiate the generator of a dataset record for ``split`` (``"train"`` or ``"val"``).

    Args:
        dataset: a record as described in this module's docstring.
        split: which part to read.
        **generator_kwargs: options of :class:`keras_retinanet.preprocessing.generator.Generator`.

    Returns:
        A generator, or None when the record has no validation part and ``split == "val"``.

    Raises:
        ValueError: unknown dataset type or split.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    kind = dataset.get("type")
    if kind == "voc":
        set_name = dataset.get("train_set" if split == "train" else "val_set")
        if set_name is None:
            return None
        return PascalVocGenerator(
            dataset["data_dir"],
            set_name,
            classes=dataset.get("classes"),  # None: classes.txt, the annotations' or VOC's
            val_fraction=dataset.get("val_fraction", DEFAULT_VAL_FRACTION),
            split_seed=dataset.get("split_seed", DEFAULT_SPLIT_SEED),
            **generator_kwargs,
        )
    if kind == "csv":
        annotations = dataset["annotations"] if split == "train" else dataset.get("val_annotations")
        if annotations is None:
            return None
        return CSVGenerator(annotations, dataset["classes"], **generator_kwargs)
    if kind == "coco":
        set_name = dataset.get("train_set" if split == "train" else "val_set")
        if set_name is None:
            return None
        return CocoGenerator(dataset["data_dir"], set_name, **generator_kwargs)
    raise ValueError(f"unknown dataset type {kind!r}; expected one of {DATASET_TYPES}")
