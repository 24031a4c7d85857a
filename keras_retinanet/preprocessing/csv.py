"""Datasets described by two CSV files, in the format of fizyr's keras-retinanet.

Annotations, one box per line, no header::

    path/to/image.jpg,x1,y1,x2,y2,class_name
    path/to/image.jpg,x1,y1,x2,y2,class_name
    path/to/empty.jpg,,,,,

An image may take several lines; ``path,,,,,`` lists an image with no objects. Relative paths
are relative to the annotations file's folder (or ``base_dir``). Coordinates are absolute
pixels, ``(x1, y1)`` the top-left and ``(x2, y2)`` the bottom-right corner, 0-based, so the box
is ``x2 - x1`` wide (integers or decimals).

Classes, one per line, labels counted from 0::

    class_name,id
"""

from __future__ import annotations

import csv
import os
from typing import Any

import numpy as np

from keras_retinanet.model.files import DataFileError
from keras_retinanet.preprocessing.generator import Generator

ANNOTATION_FORMAT = "path,x1,y1,x2,y2,class_name (or path,,,,, for an image with no objects)"


def read_classes_csv(path: str | os.PathLike) -> list[str]:
    """Class names by label from a ``class_name,id`` CSV file.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line, a duplicate name or id, or ids that are not
            ``0 .. K-1``; the message names the file and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"classes CSV not found: {path} (expected lines class_name,id)")
    name_line: dict[str, int] = {}
    id_line: dict[int, tuple[int, str]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) != 2:
                raise DataFileError(
                    f"{path}, line {line_number}: expected 'class_name,id', got {row!r}"
                )
            name, id_text = row[0].strip(), row[1].strip()
            if not name:
                raise DataFileError(f"{path}, line {line_number}: empty class name")
            try:
                class_id = int(id_text)
            except ValueError:
                raise DataFileError(
                    f"{path}, line {line_number}: malformed class id {id_text!r} for class "
                    f"{name!r} (expected an integer)"
                ) from None
            if name in name_line:
                raise DataFileError(
                    f"{path}, line {line_number}: duplicate class name {name!r} "
                    f"(first on line {name_line[name]})"
                )
            if class_id in id_line:
                raise DataFileError(
                    f"{path}, line {line_number}: duplicate class id {class_id} for {name!r} "
                    f"(already {id_line[class_id][1]!r} on line {id_line[class_id][0]})"
                )
            name_line[name] = line_number
            id_line[class_id] = (line_number, name)
    if not id_line:
        raise DataFileError(f"{path}: no classes (expected lines class_name,id)")
    if sorted(id_line) != list(range(len(id_line))):
        raise DataFileError(
            f"{path}: class ids must be 0 .. {len(id_line) - 1} (one label per class), got "
            f"{sorted(id_line)}. Renumber the ids from 0."
        )
    return [id_line[i][1] for i in range(len(id_line))]


def read_annotations_csv(
    path: str | os.PathLike, name_to_label: dict[str, int], base_dir: str | None = None
) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """Images and boxes of an annotations CSV, images in order of first appearance.

    Args:
        path: the annotations CSV.
        name_to_label: class name -> label.
        base_dir: folder relative image paths start from; the CSV's folder if None.

    Returns:
        ``(image_paths, annotations)``, one annotations dict per image (``"bboxes"``
        ``(M, 4)`` float32, ``"labels"`` ``(M,)`` int64, ``"difficult"`` all False).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a malformed line, number or box (``x2 <= x1``) or an unknown class; the
            message names the file and line.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"annotations CSV not found: {path} (expected {ANNOTATION_FORMAT})")
    if base_dir is None:
        base_dir = os.path.dirname(os.path.abspath(path))
    boxes: dict[str, list[list[float]]] = {}
    labels: dict[str, list[int]] = {}
    with open(path, newline="", encoding="utf-8-sig") as f:
        for line_number, row in enumerate(csv.reader(f), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            where = f"{path}, line {line_number}"
            if len(row) != 6:
                raise DataFileError(f"{where}: expected {ANNOTATION_FORMAT}, got {row!r}")
            image, *coordinates, class_name = (cell.strip() for cell in row)
            if not image:
                raise DataFileError(f"{where}: empty image path")
            image = os.path.normpath(os.path.join(base_dir, image))
            boxes.setdefault(image, [])
            labels.setdefault(image, [])
            if not any(coordinates) and not class_name:
                continue  # an image with no objects
            box = []
            for field, text in zip(("x1", "y1", "x2", "y2"), coordinates):
                try:
                    box.append(float(text))
                except ValueError:
                    raise DataFileError(
                        f"{where}: malformed {field} {text!r} (expected a number; "
                        f"format {ANNOTATION_FORMAT})"
                    ) from None
            x1, y1, x2, y2 = box
            if not np.all(np.isfinite(box)):
                raise DataFileError(f"{where}: coordinates must be finite, got {box}")
            if x2 <= x1:
                raise DataFileError(
                    f"{where}: x2 ({_text_of(x2)}) must be larger than x1 ({_text_of(x1)})"
                )
            if y2 <= y1:
                raise DataFileError(
                    f"{where}: y2 ({_text_of(y2)}) must be larger than y1 ({_text_of(y1)})"
                )
            if class_name not in name_to_label:
                raise DataFileError(
                    f"{where}: unknown class {class_name!r}; the classes CSV has "
                    f"{sorted(name_to_label)}"
                )
            boxes[image].append(box)
            labels[image].append(name_to_label[class_name])
    images = list(boxes)
    annotations = [
        {
            "bboxes": np.asarray(boxes[image], dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels[image], dtype=np.int64).reshape(-1),
            "difficult": np.zeros(len(labels[image]), dtype=bool),
        }
        for image in images
    ]
    return images, annotations


def _text_of(value: float) -> str:
    """A coordinate as written: ``12`` rather than ``12.0``."""
    return str(int(value)) if float(value).is_integer() else str(value)


class CSVGenerator(Generator):
    """Batches from an annotations CSV and a classes CSV (fizyr's keras-retinanet format).

    Args:
        annotations_csv: ``path,x1,y1,x2,y2,class_name`` lines (see the module docstring).
        classes_csv: ``class_name,id`` lines, ids ``0 .. K-1``.
        base_dir: folder relative image paths start from; the annotations file's folder if
            None.
        **kwargs: options of :class:`~keras_retinanet.preprocessing.generator.Generator`.

    Raises:
        FileNotFoundError: a missing CSV file.
        ValueError: a malformed line (the message names the file, line and problem).
    """

    def __init__(
        self,
        annotations_csv: str | os.PathLike,
        classes_csv: str | os.PathLike,
        base_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> None:
        self.annotations_csv = os.fspath(annotations_csv)
        self.classes_csv = os.fspath(classes_csv)
        self.base_dir = None if base_dir is None else os.fspath(base_dir)
        self.classes = read_classes_csv(self.classes_csv)
        name_to_label = {name: label for label, name in enumerate(self.classes)}
        self._image_paths, self._annotations = read_annotations_csv(
            self.annotations_csv, name_to_label, self.base_dir
        )
        super().__init__(**kwargs)

    def size(self) -> int:
        """Number of images."""
        return len(self._image_paths)

    def image_path(self, image_index: int) -> str:
        """Path of the image file."""
        return self._image_paths[image_index]

    def load_annotations(self, image_index: int) -> dict[str, np.ndarray]:
        """Boxes (original pixels), labels and (all False) difficult flags of an image."""
        return {key: value.copy() for key, value in self._annotations[image_index].items()}

    def dataset_info(self) -> dict[str, Any]:
        """``{"type": "csv", "annotations_csv", "classes_csv", "base_dir"}``."""
        return {
            "type": "csv",
            "annotations_csv": os.path.abspath(self.annotations_csv),
            "classes_csv": os.path.abspath(self.classes_csv),
            "base_dir": None if self.base_dir is None else os.path.abspath(self.base_dir),
        }
