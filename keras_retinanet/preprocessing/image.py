"""Reading, resizing and normalising images for the network.

Images move through the package as NumPy ``(H, W, 3)`` arrays in **BGR** order (OpenCV's), because
the ImageNet ResNet weights of ``keras.applications`` were trained in Caffe's BGR, mean-subtracted
convention ("caffe" mode).
"""

from __future__ import annotations

import glob
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from keras_retinanet.model.normalisation import (  # noqa: F401  (re-exported)
    CAFFE_MEAN_BGR,
    TORCH_MEAN_RGB,
    TORCH_STD_RGB,
    padding_value,
)
from keras_retinanet.model.settings import DEFAULT_PAD_MULTIPLE  # noqa: F401  (re-exported)


class ImageReadError(OSError):
    """An image file is missing, truncated or not an image. The message names the file."""


def read_image_bgr(path: str) -> np.ndarray:
    """Read an image file as a 3-channel uint8 BGR array.

    JPEG, PNG (also a PNG named ``.jpg``: the format is detected from the content), BMP, TIFF and
    WebP are read with Pillow. Grayscale, RGBA (alpha dropped), palette and CMYK images become
    3-channel (16-bit grayscale scaled to 8 bits); the EXIF orientation tag is applied, so the
    array is upright as a viewer shows it.

    Args:
        path: image file path.

    Returns:
        ``(H, W, 3)`` uint8 array in BGR order.

    Raises:
        ImageReadError: the file does not exist, is truncated or cannot be decoded.
    """
    if not os.path.isfile(path):
        raise ImageReadError(f"image not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now, so that a truncated file fails here and names itself
            image = ImageOps.exif_transpose(image)
            if image.mode.startswith("I"):
                # 16-bit grayscale (mode I;16* or I): convert("RGB") clips values at 255 rather
                # than scaling them, which turns the image white; scale 65535 -> 255 first.
                gray = np.asarray(image, dtype=np.float64) / 257.0
                image = Image.fromarray(np.clip(np.round(gray), 0, 255).astype(np.uint8))
            image = image.convert("RGB")
            array = np.asarray(image)
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as e:
        # DecompressionBombError: a header declaring more pixels than Pillow's safety limit.
        raise ImageReadError(
            f"cannot read image {path}: {e}. Re-export or remove the file "
            "(training CLIs can skip such files with --skip-bad-images)."
        ) from e
    return np.ascontiguousarray(array[:, :, ::-1])


def preprocess_image(x: np.ndarray) -> np.ndarray:
    """Caffe-mode normalisation: BGR input minus the ImageNet mean, as float32.

    Args:
        x: ``(..., H, W, 3)`` BGR image(s), any numeric dtype.

    Returns:
        float32 array of the same shape; the input is not modified.
    """
    return np.asarray(x, dtype=np.float32) - np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)


def compute_resize_scale(image_shape: Any, min_side: float = 800, max_side: float = 1333) -> float:
    """Scale that brings the shorter side to ``min_side`` unless the longer side would exceed
    ``max_side``, in which case the longer side is brought to ``max_side``.

    800/1333 is the detectron2 / torchvision default, 1333 ~= 800 * 5 / 3.
    """
    rows, cols = int(image_shape[0]), int(image_shape[1])
    smallest, largest = min(rows, cols), max(rows, cols)
    scale = min_side / smallest
    if largest * scale > max_side:
        scale = max_side / largest
    return scale


def resized_shape(
    image_shape: Any, min_side: float = 800, max_side: float = 1333, rule: str = "area"
) -> tuple[tuple[int, int], Any]:
    """``((rows, cols), scale)`` that :func:`resize_image` gives an image of ``image_shape``,
    without resizing anything (for box statistics over a dataset read from file headers).

    ``scale`` is what :func:`resize_image` returns: a float, or under ``"torchvision"`` the
    per-axis ``(s_x, s_y, s_x, s_y)`` float32 array.
    """
    scale = compute_resize_scale(image_shape, min_side=min_side, max_side=max_side)
    rows, cols = int(image_shape[0]), int(image_shape[1])
    if rule == "torchvision":
        height, width = max(1, math.floor(rows * scale)), max(1, math.floor(cols * scale))
        s_x, s_y = width / cols, height / rows
        return (height, width), np.array([s_x, s_y, s_x, s_y], dtype=np.float32)
    # cv2.resize rounds fx * cols to the nearest integer, as the "area" rule does.
    return (max(1, round(rows * scale)), max(1, round(cols * scale))), scale


def resize_image(
    img: np.ndarray, min_side: float = 800, max_side: float = 1333, rule: str = "area"
) -> tuple[np.ndarray, Any]:
    """Resize keeping the aspect ratio (see :func:`compute_resize_scale`).

    Args:
        img: ``(H, W, C)`` image.
        min_side: target length of the shorter side.
        max_side: upper bound on the longer side.
        rule: a model variant's resize rule: ``"area"`` (this package's: rounded size, area
            averaging when shrinking, bilinear when enlarging, in the image's dtype),
            ``"linear"`` (fizyr's: ``cv2.resize(float image, fx=scale, fy=scale)``) or
            ``"torchvision"`` (size ``floor(side * scale)``, bilinear without antialias on
            the float image, as ``torch.nn.functional.interpolate``).

    Returns:
        ``(resized_image, scale)``; multiply boxes in original pixels by ``scale`` to get boxes in
        the resized image, divide detections by it to go back. Under ``"torchvision"`` the two
        axes scale differently (by ``new / old`` each, as torchvision maps boxes back), and
        ``scale`` is the float32 array ``(s_x, s_y, s_x, s_y)``, which broadcasts over boxes.
    """
    scale = compute_resize_scale(img.shape, min_side=min_side, max_side=max_side)
    rows, cols = img.shape[:2]
    if rule == "linear":
        resized = cv2.resize(np.asarray(img, np.float32), None, fx=scale, fy=scale)
        return resized, scale
    (height, width), box_scale = resized_shape(img.shape, min_side, max_side, rule)
    if rule == "torchvision":
        resized = np.asarray(img, np.float32)
        if (height, width) != (rows, cols):
            resized = cv2.resize(resized, (width, height), interpolation=cv2.INTER_LINEAR)
        return resized, box_scale
    size = (width, height)
    if size == (cols, rows):
        return img, scale
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=interpolation), scale


def try_read_image_bgr(path: str) -> np.ndarray | None:
    """:func:`read_image_bgr`, but warn and return None on an unreadable file."""
    try:
        return read_image_bgr(path)
    except ImageReadError as e:
        warnings.warn(str(e), stacklevel=2)
        return None


def pad_to_multiple(size: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is ``>= size``."""
    return -(-int(size) // multiple) * multiple


def pad_batch(
    images: Any, pad_multiple: int = DEFAULT_PAD_MULTIPLE, pad_value: Any = 0.0
) -> np.ndarray:
    """Subtract the ImageNet mean from resized BGR images and zero-pad them into one batch.

    Args:
        images: ``(H_i, W_i, 3)`` BGR images, already resized (uint8 or float).
        pad_multiple: pad height and width up to a multiple of this (1: to the largest image).
        pad_value: the padding's value after mean subtraction (a model variant's
            :meth:`~keras_retinanet.model.variants.ModelVariant.pad_value`; 0 is the mean colour).

    Returns:
        ``(B, H, W, 3)`` float32: each image minus :data:`CAFFE_MEAN_BGR` in the top-left
        corner, zeros (the mean colour) at the bottom and right, so box coordinates are
        unchanged by the padding.
    """
    height = pad_to_multiple(max(int(image.shape[0]) for image in images), pad_multiple)
    width = pad_to_multiple(max(int(image.shape[1]) for image in images), pad_multiple)
    batch = np.zeros((len(images), height, width, 3), dtype=np.float32)
    if np.any(pad_value):
        batch[...] = np.asarray(pad_value, dtype=np.float32)
    mean = np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
    for k, image in enumerate(images):
        h, w = image.shape[:2]
        # One pass: image - mean written straight into the batch.
        np.subtract(image[..., :3], mean, out=batch[k, :h, :w], casting="unsafe")
    return batch


# Folder inputs of retinanet-predict: files with these extensions (any single file is read
# whatever its extension).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_GLOB_CHARACTERS = frozenset("*?[")


def collect_images(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """Expand image files, folders and glob patterns into a list of image paths.

    Args:
        inputs: each an image file (taken whatever its extension), a folder (its files with an
            extension in :data:`IMAGE_EXTENSIONS`, sorted by name, not recursive) or a glob
            pattern (``photos/*.jpg``, ``data/**/*.png``; matching files, sorted).

    Returns:
        The paths in input order, each once.

    Raises:
        FileNotFoundError: an input is neither a file nor a folder nor a pattern matching a
            file (the message names it), or no image is found at all.
    """
    paths: list[str] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isfile(item):
            found = [item]
        elif os.path.isdir(item):
            found = sorted(
                os.path.join(item, name)
                for name in os.listdir(item)
                if name.lower().endswith(IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(item, name))
            )
            if not found:
                warnings.warn(
                    f"folder {item} has no image files (extensions {', '.join(IMAGE_EXTENSIONS)})",
                    stacklevel=2,
                )
        elif _GLOB_CHARACTERS & set(item):
            found = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not found:
                warnings.warn(f"pattern {item!r} matches no file", stacklevel=2)
        else:
            raise FileNotFoundError(
                f"input not found: {item} (give an image file, a folder or a glob pattern "
                "such as 'photos/*.jpg' in quotes)"
            )
        paths.extend(found)
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise FileNotFoundError(f"no images found in {[os.fspath(i) for i in inputs]}")
    return unique
