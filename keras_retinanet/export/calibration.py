"""Calibration images for int8 artifacts: real images of the user's dataset, at the input size.

Static int8 quantisation fixes each activation's range from what the network computes on
representative inputs, so the images must look like those the artifact will see: the
training images of the user's dataset, not noise.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_CALIBRATION_IMAGES = 100  # TFLite's guide suggests ~100-500; ranges settle by ~100


def calibration_paths(source: str, count: int = DEFAULT_CALIBRATION_IMAGES) -> list[str]:
    """Up to ``count`` image files of ``source``, spread evenly over it.

    Args:
        source: a Pascal VOC root (its ``trainval``, else ``train``, split of
            ``ImageSets/Main`` in ``JPEGImages``), or any folder of images (searched
            recursively).
        count: how many images.

    Raises:
        FileNotFoundError: ``source`` does not exist, or holds no image.
    """
    if not os.path.isdir(source):
        raise FileNotFoundError(
            f"calibration data not found: {source}; pass a Pascal VOC folder or a folder of "
            "training images (--calibration DATASET)"
        )
    paths = _voc_split(source) or sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(source)
        for name in names
        if name.lower().endswith(IMAGE_EXTENSIONS)
    )
    if not paths:
        raise FileNotFoundError(
            f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {source}; int8 calibration needs "
            "real images of the dataset the model was trained on"
        )
    if len(paths) > count:  # evenly spread: the order of a split often follows the scene
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]
    return paths


def _voc_split(root: str) -> list[str]:
    for split in ("trainval", "train"):
        listing = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(listing):
            continue
        with open(listing) as f:
            names = [line.split()[0] for line in f if line.strip()]
        found = []
        for name in names:
            for extension in (".jpg", ".jpeg", ".png"):
                path = os.path.join(root, "JPEGImages", name + extension)
                if os.path.isfile(path):
                    found.append(path)
                    break
        return found
    return []


def calibration_images(
    source: str | Sequence[np.ndarray],
    image_size: Sequence[int] | None,
    count: int = DEFAULT_CALIBRATION_IMAGES,
) -> list[np.ndarray]:
    """uint8 RGB ``(1, H, W, 3)`` batches for calibration, as the artifact's input takes them.

    Args:
        source: a folder (:func:`calibration_paths`) or uint8 BGR images already loaded.
        image_size: the artifact's fixed ``(H, W)``: images are resized to it (as a user of
            a fixed-size artifact does); None keeps each image's own size.
        count: images to use from a folder.

    Raises:
        FileNotFoundError: see :func:`calibration_paths`.
        ValueError: an image file cannot be read.
    """

    if isinstance(source, (str, os.PathLike)):
        images = []
        for path in calibration_paths(os.fspath(source), count):
            image = cv2.imread(path, cv2.IMREAD_COLOR)  # grayscale files come back as BGR
            if image is None:
                raise ValueError(f"cannot read calibration image {path}; remove or replace it")
            images.append(image)
    else:
        images = list(source)
    batches = []
    for image in images:
        if image_size is not None and image.shape[:2] != tuple(image_size):
            height, width = int(image_size[0]), int(image_size[1])
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        batches.append(np.ascontiguousarray(image[None, :, :, ::-1], dtype=np.uint8))
    return batches
