"""What a detection dataset provides: its images, their ground truth and the class names.

:class:`DetectionDataset` is the part of
:class:`~keras_retinanet.preprocessing.generator.Generator` that knows the dataset; the
generator adds batching, augmentation and anchor targets. The VOC, CSV and COCO generators set
``classes`` and implement :meth:`~DetectionDataset.size`, :meth:`~DetectionDataset.image_path`,
:meth:`~DetectionDataset.load_annotations` and :meth:`~DetectionDataset.dataset_info`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from keras_retinanet.preprocessing.image import read_image_bgr

# EXIF orientations 5-8 are rotations by 90 degrees: read_image_bgr swaps width and height.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)


class DetectionDataset:
    """The dataset index: image files, ground-truth boxes and class names by label."""

    def _index_dataset(self) -> None:
        """Build the class-name lookup and the aspect-ratio cache (called once by ``__init__``).

        Raises:
            ValueError: two classes share a name.
        """
        self._image_sizes: dict[int, tuple[int, int] | None] = {}
        self._label_of = {name: label for label, name in enumerate(self.classes)}
        if len(self._label_of) != len(self.classes):
            raise ValueError(f"class names must be unique, got {list(self.classes)}")

    # ---- the dataset: implemented by subclasses ----------------------------------------------

    classes: Sequence[str] = ()
    """Class names by label."""

    def size(self) -> int:
        """Number of images in the dataset."""
        raise NotImplementedError

    def image_path(self, image_index: int) -> str:
        """Path of an image file."""
        raise NotImplementedError

    def load_annotations(self, image_index: int) -> dict[str, np.ndarray]:
        """Ground truth of an image in its original pixels.

        Returns:
            ``{"bboxes": (M, 4) float32 (x1, y1, x2, y2), 0-based, "labels": (M,) int64,
            "difficult": (M,) bool}``, a fresh copy the caller may modify.
        """
        raise NotImplementedError

    def dataset_info(self) -> dict[str, Any]:
        """What a snapshot stores to rebuild the dataset: ``{"type": ..., **constructor args}``."""
        raise NotImplementedError

    # ---- classes -----------------------------------------------------------------------------

    def num_classes(self) -> int:
        """Number of classes K."""
        return len(self.classes)

    def has_label(self, label: int) -> bool:
        """Whether ``label`` is a class label of this dataset."""
        return 0 <= int(label) < len(self.classes)

    def name_to_label(self, name: str) -> int:
        """Label of a class name. Raises KeyError naming the known classes."""
        try:
            return self._label_of[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; classes are {list(self.classes)}") from None

    def label_to_name(self, label: int) -> str:
        """Class name of a label."""
        if not self.has_label(label):
            raise KeyError(f"label {label} out of range [0, {len(self.classes)})")
        return self.classes[int(label)]

    # ---- images ------------------------------------------------------------------------------

    def load_image(self, image_index: int) -> np.ndarray:
        """An image as ``(H, W, 3)`` uint8 BGR at its original size (EXIF orientation applied).

        Raises:
            ImageReadError: the file is missing or cannot be decoded; the message names it.
        """
        return read_image_bgr(self.image_path(image_index))

    def image_aspect_ratio(self, image_index: int) -> float:
        """Width / height of an image as :meth:`load_image` returns it (read from the header);
        1.0 for an unreadable file (its error, or its skip, comes when it is loaded)."""
        size = self.image_size(image_index)
        return 1.0 if size is None else size[0] / max(size[1], 1)

    def image_size(self, image_index: int) -> tuple[int, int] | None:
        """``(width, height)`` of an image as :meth:`load_image` returns it, read from the file's
        header without decoding it (EXIF rotations applied); None when it cannot be read."""
        if image_index not in self._image_sizes:
            self._image_sizes[image_index] = self._read_image_size(image_index)
        return self._image_sizes[image_index]

    def _read_image_size(self, image_index: int) -> tuple[int, int] | None:
        try:
            with Image.open(self.image_path(image_index)) as image:
                width, height = image.size
                if image.getexif().get(_EXIF_ORIENTATION) in _TRANSPOSED_ORIENTATIONS:
                    width, height = height, width
        except (OSError, UnidentifiedImageError, SyntaxError, ValueError):
            return None
        return int(width), int(height)
