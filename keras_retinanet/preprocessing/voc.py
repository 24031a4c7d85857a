"""Pascal VOC style datasets: the VOC releases, and folders as labelling tools write them.

Reads ``Annotations/`` + ``JPEGImages/`` + ``ImageSets/Main/<set>.txt`` (VOC2007 / VOC2012),
the same without ``ImageSets/`` and a folder of images with one XML beside each (LabelImg); see
:mod:`keras_retinanet.preprocessing.voc_layout` for how the images are found and split. The
class list is given, or read from ``classes.txt`` in the folder, or from the annotations.

Coordinates: VOC boxes are 1-based and inclusive (``xmin = 1`` is the first pixel column,
``xmax`` is the last column the object covers). They become the package's 0-based half-open
boxes with ``x1 = xmin - 1, y1 = ymin - 1, x2 = xmax, y2 = ymax``, so that ``x2 - x1`` equals
VOC's ``xmax - xmin + 1``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from lxml import etree

from keras_retinanet.model.files import DataFileError
from keras_retinanet.preprocessing import voc_layout
from keras_retinanet.preprocessing.generator import Generator

VOC_CLASSES = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 20 Pascal VOC classes; a class's label is its index here."""


def read_class_names(classes: Sequence[str] | str | os.PathLike) -> list[str]:
    """Class names from a list, or from a text file with one name per line.

    Args:
        classes: a sequence of names, or the path of a ``classes.txt`` file (blank lines and
            surrounding spaces are ignored).

    Returns:
        The names; a name's label is its index.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: no names, or a name given twice (the message names the file and line).
    """
    if isinstance(classes, (str, os.PathLike)):
        path = os.fspath(classes)
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"classes file not found: {path} (expected one class name per line)"
            )
        names: list[str] = []
        seen: dict[str, int] = {}
        with open(path, encoding="utf-8-sig") as f:
            for line_number, line in enumerate(f, start=1):
                name = line.strip()
                if not name:
                    continue
                if name in seen:
                    raise DataFileError(
                        f"{path}, line {line_number}: duplicate class name {name!r} "
                        f"(first on line {seen[name]})"
                    )
                seen[name] = line_number
                names.append(name)
        source = path
    else:
        names = [str(name) for name in classes]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise DataFileError(f"duplicate class names {duplicates} in {names}")
        source = "the class list"
    if not names:
        raise DataFileError(f"no class names in {source}")
    return names


class PascalVocGenerator(Generator):
    """Batches from a dataset in Pascal VOC layout.

    All XML files of the set are parsed once, when the generator is built, so that a bad file
    or an unknown class is reported before training starts.

    Args:
        data_dir: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/Main/``
            (``VOCdevkit/VOC2007`` for the VOC release), or any of the layouts of
            :mod:`~keras_retinanet.preprocessing.voc_layout`.
        set_name: the split, read from ``ImageSets/Main/<set_name>.txt`` (``trainval``,
            ``test``...); without split files ``train``/``trainval``, ``val``/``test`` or
            ``all`` (see :func:`~keras_retinanet.preprocessing.voc_layout.split_ids`).
        classes: class names (a name's label is its index), or the path of a ``classes.txt``
            file with one name per line. None: ``<data_dir>/classes.txt`` if there is one,
            else the names in the annotations (all of them, sorted: every split gets the same
            labels), or the 20 VOC classes in VOC order when the names are VOC's.
        val_fraction: without split files, the share of images in the validation part.
        split_seed: without split files, the seed of the split.
        skip_difficult: drop objects marked ``difficult`` altogether. By default they are kept
            and flagged: evaluation ignores them, and in training their anchors are ignored
            rather than taught as background.
        image_extension: extension of the files in ``JPEGImages/``. When ``<id><extension>``
            does not exist, the XML's ``<filename>`` is tried.
        **kwargs: options of :class:`~keras_retinanet.preprocessing.generator.Generator`.

    Raises:
        FileNotFoundError: a missing folder, set file or XML file (the message names it).
        ValueError: a malformed XML file or an object of an unknown class (the message names
            the file and the object).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike,
        set_name: str,
        classes: Sequence[str] | str | os.PathLike | None = None,
        skip_difficult: bool = False,
        image_extension: str = ".jpg",
        val_fraction: float = voc_layout.DEFAULT_VAL_FRACTION,
        split_seed: int = voc_layout.DEFAULT_SPLIT_SEED,
        **kwargs: Any,
    ) -> None:
        self.data_dir = os.fspath(data_dir)
        self.set_name = set_name
        self.layout = voc_layout.find_layout(self.data_dir)
        self.classes_source = "given"
        if classes is None:
            classes, self.classes_source = default_classes(self.layout)
        self.classes = read_class_names(classes)
        self.skip_difficult = bool(skip_difficult)
        self.image_extension = image_extension
        self.val_fraction = float(val_fraction)
        self.split_seed = int(split_seed)
        if self.layout.has_sets:
            self.image_names = self._read_set_file()
        else:
            self.image_names = voc_layout.split_ids(
                list(self.layout.annotations), set_name, self.val_fraction, self.split_seed
            )
        name_to_label = {name: label for label, name in enumerate(self.classes)}
        self._annotations = []
        self._image_paths = []
        for image_name in self.image_names:
            annotations, filename = self._parse_annotation_file(image_name, name_to_label)
            self._annotations.append(annotations)
            self._image_paths.append(self._find_image(image_name, filename))
        super().__init__(**kwargs)

    # ---- reading the index -------------------------------------------------------------------

    def _read_set_file(self) -> list[str]:
        path = os.path.join(self.data_dir, "ImageSets", "Main", f"{self.set_name}.txt")
        if not os.path.isfile(path):
            folder = os.path.dirname(path)
            available = (
                sorted(f[:-4] for f in os.listdir(folder) if f.endswith(".txt") and "_" not in f)
                if os.path.isdir(folder)
                else []
            )
            raise FileNotFoundError(
                f"VOC set file not found: {path}. Choose a set_name from {available} or write "
                "the file with one image id per line."
            )
        with open(path, encoding="utf-8-sig") as f:
            # The first token: per-class lists ("000005 -1") carry a second column.
            return [line.split()[0] for line in f if line.strip()]

    def _find_image(self, image_name: str, filename: str | None) -> str:
        return voc_layout.find_image(self.layout, image_name, filename, self.image_extension)

    def _parse_annotation_file(
        self, image_name: str, name_to_label: dict[str, int]
    ) -> tuple[dict[str, np.ndarray], str | None]:
        path = self.layout.annotations.get(image_name)
        path = path or os.path.join(self.data_dir, "Annotations", image_name + ".xml")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"annotation file not found: {path} (listed in ImageSets/Main/"
                f"{self.set_name}.txt). Remove the id from the set file or add the XML."
            )
        return read_voc_annotation(path, name_to_label, self.skip_difficult)

    # ---- Generator interface -----------------------------------------------------------------

    def size(self) -> int:
        """Number of images in the set."""
        return len(self.image_names)

    def image_path(self, image_index: int) -> str:
        """Path of the image file."""
        return self._image_paths[image_index]

    def load_annotations(self, image_index: int) -> dict[str, np.ndarray]:
        """Boxes (0-based, original pixels), labels and difficult flags of an image."""
        return {key: value.copy() for key, value in self._annotations[image_index].items()}

    def dataset_info(self) -> dict[str, Any]:
        """``{"type": "voc", "data_dir", "set_name", "classes", "skip_difficult",
        "val_fraction", "split_seed"}``."""
        return {
            "type": "voc",
            "data_dir": os.path.abspath(self.data_dir),
            "set_name": self.set_name,
            "classes": list(self.classes),
            "skip_difficult": self.skip_difficult,
            "val_fraction": self.val_fraction,
            "split_seed": self.split_seed,
        }


def default_classes(layout: voc_layout.VocLayout) -> tuple[Sequence[str] | str, str]:
    """The class list of a folder given none: its ``classes.txt``, else the 20 VOC classes when
    every name in the annotations is one of them, else the names in the annotations, sorted.

    Returns:
        ``(classes, source)``: the names or the file, and ``"classes.txt"``, ``"voc"`` or
        ``"annotations"``.
    """
    classes_file = os.path.join(layout.data_dir, "classes.txt")
    if os.path.isfile(classes_file):
        return classes_file, "classes.txt"
    names = voc_layout.class_names_in(list(layout.annotations.values()))
    if names and set(names) <= set(VOC_CLASSES):
        return VOC_CLASSES, "voc"
    if not names:
        raise DataFileError(f"no object in any annotation of {layout.data_dir}: nothing to learn")
    return names, "annotations"


def _coordinate(bndbox: Any, field: str, path: str, object_index: int) -> float:
    text = bndbox.findtext(field)
    if text is None:
        raise DataFileError(f"{path}: object {object_index} has no <bndbox>/<{field}>")
    try:
        value = float(text.strip())
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # "nan" and "inf" parse, but are no coordinate
        raise DataFileError(
            f"{path}: object {object_index} <bndbox>/<{field}> is not a number: {text!r}"
        )
    return value


def read_voc_annotation(
    path: str, name_to_label: dict[str, int], skip_difficult: bool = False
) -> tuple[dict[str, np.ndarray], str | None]:
    """The objects of one VOC XML file (:func:`parse_voc_objects`) and its ``<filename>``.

    Raises:
        DataFileError: the file is not XML, or an object lacks a field or has a bad value
            (the message names the file, the object and the field).
    """
    # No entity expansion and no network: an annotation file is data, and a crafted one
    # must not be able to read local files or fetch URLs.
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    try:
        root = etree.parse(path, parser).getroot()
    except etree.XMLSyntaxError as e:
        raise DataFileError(f"malformed XML in {path}: {e}") from e
    return parse_voc_objects(root, path, name_to_label, skip_difficult), root.findtext("filename")


def parse_voc_objects(
    root: Any, path: str, name_to_label: dict[str, int], skip_difficult: bool = False
) -> dict[str, np.ndarray]:
    """The objects of a parsed VOC annotation.

    Only each ``<object>``'s own ``<bndbox>`` counts: VOC2012 person objects also hold
    ``<part>`` elements (head, hand, foot) with boxes of their own, which are not objects.
    VOC boxes are inclusive, so ``xmin == xmax`` is a valid box one pixel wide: it is kept (the
    devkit counts it in the recall denominator), with a warning naming the file when it is a
    single pixel (a click without a drag in the labelling tool; BCCD has two). A box with
    ``xmax < xmin`` or ``ymax < ymin`` is dropped with a warning naming the file.

    Args:
        root: the ``<annotation>`` element.
        path: the XML file, for messages.
        name_to_label: class name -> label.
        skip_difficult: leave out objects with ``<difficult>1</difficult>``.

    Returns:
        ``{"bboxes": (M, 4) float32 0-based (x1, y1, x2, y2), "labels": (M,) int64,
        "difficult": (M,) bool}``.

    Raises:
        ValueError: a missing or malformed field, or a class not in ``name_to_label``.
    """
    bboxes, labels, difficult = [], [], []
    degenerate, single_pixel = [], []
    for object_index, obj in enumerate(root.findall("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise DataFileError(f"{path}: object {object_index} has no <name>")
        if name not in name_to_label:
            raise DataFileError(
                f"{path}: object {object_index} has class {name!r}, which is not in the class "
                f"list {sorted(name_to_label)}. Pass the dataset's classes (--classes "
                "<data_dir>/classes.txt, or classes=[...])."
            )
        difficult_text = (obj.findtext("difficult") or "0").strip()
        is_difficult = difficult_text not in ("", "0", "false", "False")
        bndbox = obj.find("bndbox")  # direct child only, never a <part>'s box
        if bndbox is None:
            raise DataFileError(f"{path}: object {object_index} ({name}) has no <bndbox>")
        xmin, ymin, xmax, ymax = (
            _coordinate(bndbox, field, path, object_index)
            for field in ("xmin", "ymin", "xmax", "ymax")
        )
        if xmax < xmin or ymax < ymin:
            degenerate.append((object_index, name, [xmin, ymin, xmax, ymax]))
            continue
        if xmax == xmin and ymax == ymin:
            single_pixel.append((object_index, name, [xmin, ymin, xmax, ymax]))
        if skip_difficult and is_difficult:
            continue
        bboxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(name_to_label[name])
        difficult.append(is_difficult)
    image = root.findtext("filename") or os.path.basename(path)
    if degenerate:
        warnings.warn(
            f"{path}: dropped {len(degenerate)} inverted box(es) (xmax < xmin or ymax < ymin) "
            f"of image {image} (object, class, [xmin, ymin, xmax, ymax]): {degenerate}",
            stacklevel=3,
        )
    if single_pixel:
        warnings.warn(
            f"{path}: kept {len(single_pixel)} single-pixel box(es) of image {image} as 1x1 "
            "boxes (VOC boxes are inclusive; fix the XML if they are stray clicks) "
            f"(object, class, [xmin, ymin, xmax, ymax]): {single_pixel}",
            stacklevel=3,
        )
    return {
        "bboxes": np.asarray(bboxes, dtype=np.float32).reshape(-1, 4),
        "labels": np.asarray(labels, dtype=np.int64).reshape(-1),
        "difficult": np.asarray(difficult, dtype=bool).reshape(-1),
    }
