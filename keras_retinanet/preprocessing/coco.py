"""MS COCO layout datasets, read through pycocotools.

Expected layout (the official one, or the older ``images/<set>`` one fizyr used)::

    <data_dir>/annotations/instances_<set_name>.json
    <data_dir>/<set_name>/<file_name>          or  <data_dir>/images/<set_name>/<file_name>

COCO category ids are sparse (1..90 for 80 classes); labels are ``0 .. K-1`` in order of
category id, and :meth:`CocoGenerator.label_to_coco_label` maps back for result files.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from typing import Any

import numpy as np

from keras_retinanet.model.files import DataFileError
from keras_retinanet.preprocessing.generator import Generator


class CocoGenerator(Generator):
    """Batches from a COCO-format dataset.

    Crowd annotations (``iscrowd=1``, one box around a group of objects) are left out of the
    ground truth, as in COCO's own training setups. Boxes ``[x, y, w, h]`` become
    ``(x, y, x + w, y + h)``.

    Args:
        data_dir: the folder holding ``annotations/`` and the image folder.
        set_name: e.g. ``train2017``; names the json file and the image folder.
        **kwargs: options of :class:`~keras_retinanet.preprocessing.generator.Generator`.

    Raises:
        FileNotFoundError: the annotation file is missing (the message names the path).
        ValueError: the json is not a COCO detection file.
    """

    def __init__(self, data_dir: str | os.PathLike, set_name: str, **kwargs: Any) -> None:
        # optional ([coco] extra): only COCO data needs it
        from pycocotools.coco import COCO

        self.data_dir = os.fspath(data_dir)
        self.set_name = set_name
        annotation_file = os.path.join(self.data_dir, "annotations", f"instances_{set_name}.json")
        if not os.path.isfile(annotation_file):
            raise FileNotFoundError(
                f"COCO annotation file not found: {annotation_file}. data_dir must hold "
                f"annotations/instances_<set_name>.json and the images in <set_name>/."
            )
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                self.coco = COCO(annotation_file)
            except (
                KeyError,
                TypeError,
                AssertionError,
                ValueError,
                IndexError,
                AttributeError,
            ) as e:
                # pycocotools indexes the file without checking it: a missing key, a field of
                # the wrong type, or text that is not JSON fail in its own code.
                raise DataFileError(f"not a COCO detection file: {annotation_file} ({e!r})") from e
        self.annotation_file = annotation_file
        check_coco_detections(self.coco.dataset, annotation_file)
        legacy_dir = os.path.join(self.data_dir, "images", set_name)
        self.image_dir = (
            legacy_dir if os.path.isdir(legacy_dir) else os.path.join(self.data_dir, set_name)
        )

        categories = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.classes = [c["name"] for c in categories]
        self._coco_labels = [int(c["id"]) for c in categories]
        self._labels_of_coco = {coco_id: label for label, coco_id in enumerate(self._coco_labels)}
        self.image_ids = sorted(self.coco.getImgIds())
        super().__init__(**kwargs)

    def size(self) -> int:
        """Number of images."""
        return len(self.image_ids)

    def image_path(self, image_index: int) -> str:
        """Path of the image file."""
        info = self.coco.imgs[self.image_ids[image_index]]
        return os.path.join(self.image_dir, info["file_name"])

    def image_size(self, image_index: int) -> tuple[int, int] | None:
        """``(width, height)``, from the json (the file's header where the json has none)."""
        info = self.coco.imgs[self.image_ids[image_index]]
        if info.get("width") and info.get("height"):
            return int(info["width"]), int(info["height"])
        return super().image_size(image_index)

    def coco_image_id(self, image_index: int) -> int:
        """COCO image id of an image, for result files."""
        return int(self.image_ids[image_index])

    def label_to_coco_label(self, label: int) -> int:
        """COCO category id of a label."""
        return self._coco_labels[int(label)]

    def coco_label_to_label(self, coco_label: int) -> int:
        """Label of a COCO category id."""
        return self._labels_of_coco[int(coco_label)]

    def load_annotations(self, image_index: int) -> dict[str, np.ndarray]:
        """Boxes (original pixels), labels and (all False) difficult flags; no crowd boxes."""
        return self._annotations(image_index, crowd=False)

    def crowd_annotations(self, image_index: int) -> dict[str, np.ndarray]:
        """The image's crowd boxes (``iscrowd=1``), flagged difficult: the evaluation's
        per-class table ignores the detections on them, as COCOeval does."""
        crowds = self._annotations(image_index, crowd=True)
        crowds["difficult"][:] = True
        return crowds

    def _annotations(self, image_index: int, crowd: bool) -> dict[str, np.ndarray]:
        annotation_ids = self.coco.getAnnIds(imgIds=[self.image_ids[image_index]])
        boxes, labels = [], []
        for annotation in self.coco.loadAnns(annotation_ids):
            if bool(annotation.get("iscrowd", 0)) != crowd:
                continue
            x, y, w, h = (float(v) for v in annotation["bbox"])
            boxes.append([x, y, x + w, y + h])
            category = int(annotation["category_id"])
            if category not in self._labels_of_coco:
                raise DataFileError(
                    f"{self.annotation_file}: annotation {annotation.get('id')} has "
                    f"category_id {category}, which is not among the file's categories"
                )
            labels.append(self._labels_of_coco[category])
        return {
            "bboxes": np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            "labels": np.asarray(labels, dtype=np.int64).reshape(-1),
            "difficult": np.zeros(len(labels), dtype=bool),
        }

    def dataset_info(self) -> dict[str, Any]:
        """``{"type": "coco", "data_dir", "set_name"}``."""
        return {
            "type": "coco",
            "data_dir": os.path.abspath(self.data_dir),
            "set_name": self.set_name,
        }


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def check_coco_detections(dataset: Any, path: str) -> None:
    """Check what the generator reads of a COCO detection file, so that a wrong field is one
    error naming the file, the list, the entry and the field (pycocotools checks nothing).

    Raises:
        DataFileError: the first field that is missing or of the wrong type.
    """

    def fail(where: str, problem: str) -> None:
        raise DataFileError(f"{path}: {where} {problem}; see cocodataset.org/#format-data")

    if not isinstance(dataset, dict):
        fail("the file", f"holds a {type(dataset).__name__}, not an object")
    entries = {}
    for key in ("images", "categories", "annotations"):
        value = dataset.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            fail(f'"{key}"', "must be a list of objects")
        entries[key] = value
    category_ids, image_ids = set(), set()
    for index, category in enumerate(entries["categories"]):
        where = f"categories[{index}]"
        if not isinstance(category.get("id"), int) or isinstance(category.get("id"), bool):
            fail(where, f'has "id" {category.get("id")!r}, not an integer')
        if not isinstance(category.get("name"), str) or not category["name"]:
            fail(where, f'has "name" {category.get("name")!r}, not a name')
        if category["id"] in category_ids:
            fail(where, f"repeats id {category['id']}")
        category_ids.add(category["id"])
    for index, image in enumerate(entries["images"]):
        where = f"images[{index}]"
        if not isinstance(image.get("id"), int) or isinstance(image.get("id"), bool):
            fail(where, f'has "id" {image.get("id")!r}, not an integer')
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            fail(where, f'has "file_name" {image.get("file_name")!r}, not a file name')
        for field in ("width", "height"):
            if field in image and not (_number(image[field]) and image[field] > 0):
                fail(where, f'has "{field}" {image[field]!r}, not a positive number')
        image_ids.add(image["id"])
    for index, annotation in enumerate(entries["annotations"]):
        where = f"annotations[{index}]"
        if annotation.get("image_id") not in image_ids:
            fail(where, f'has "image_id" {annotation.get("image_id")!r}, not an image of the file')
        if annotation.get("category_id") not in category_ids:
            fail(where, f'has "category_id" {annotation.get("category_id")!r}, not a category')
        box = annotation.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and all(_number(v) for v in box)):
            fail(where, f'has "bbox" {box!r}, not [x, y, width, height]')
        if annotation.get("iscrowd", 0) not in (0, 1):
            fail(where, f'has "iscrowd" {annotation.get("iscrowd")!r}, not 0 or 1')
