"""A small synthetic detection dataset in Pascal VOC layout, for demos and tests.

Coloured rectangles, ellipses and triangles on textured backgrounds. Every box is the tight
bounding box of the pixels the shape covers, and shapes never overlap, so the labels are exact.
The files are real VOC (``Annotations/*.xml`` with 1-based inclusive coordinates,
``JPEGImages/*.jpg``, ``ImageSets/Main/{trainval,test}.txt``) plus ``classes.txt``, so::

    path = write_shapes_dataset("/tmp/shapes")
    generator = PascalVocGenerator(path, "trainval", classes=path / "classes.txt")

Command line: ``python -m keras_retinanet.datasets.shapes OUTPUT_DIR [--train N --test N]``.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from lxml import etree

SHAPE_CLASSES = ("rectangle", "ellipse", "triangle")
"""Class names; a class's label is its index."""


def write_shapes_dataset(
    output_dir: str | os.PathLike,
    num_train: int = 200,  # enough for a CPU demo to learn three classes in a few epochs
    num_test: int = 50,
    image_size: tuple[int, int] = (256, 256),  # (height, width): small, so a CPU trains fast
    seed: int = 0,
    shapes_per_image: tuple[int, int] = (1, 4),
    shape_size: tuple[int, int] = (30, 120),  # pixels; 32 is the smallest default anchor
) -> Path:
    """Write the dataset; the same arguments always give the same files.

    Args:
        output_dir: created if needed; existing files of the same names are overwritten.
        num_train: images listed in ``ImageSets/Main/trainval.txt``.
        num_test: images listed in ``ImageSets/Main/test.txt``.
        image_size: ``(height, width)`` of every image.
        seed: seed of all random choices.
        shapes_per_image: inclusive range of the number of shapes in an image. Fewer are
            drawn when no free spot is found for one.
        shape_size: inclusive range of a shape's bounding-box width and height, in pixels;
            the upper end is capped at the image's shorter side.

    Returns:
        ``Path(output_dir)``.
    """
    height, width = (int(v) for v in image_size)
    min_size, max_size = (int(v) for v in shape_size)
    max_size = min(max_size, height, width)  # small images: shapes up to the whole image
    if not 1 <= min_size <= max_size:
        raise ValueError(
            f"shape_size {shape_size} must be a range (low, high) with 1 <= low <= high and low "
            f"at most the image's shorter side {min(height, width)}"
        )
    if not 0 <= shapes_per_image[0] <= shapes_per_image[1]:
        raise ValueError(f"shapes_per_image must be a range (low, high), got {shapes_per_image}")

    root = Path(output_dir)
    for folder in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(SHAPE_CLASSES) + "\n")

    rng = np.random.default_rng(seed)
    names = [f"{i:06d}" for i in range(num_train + num_test)]
    for name in names:
        image, objects = _draw_image(rng, height, width, shapes_per_image, min_size, max_size)
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        _write_voc_xml(root / "Annotations" / f"{name}.xml", name, image.shape, objects)
    splits = {"trainval": names[:num_train], "test": names[num_train:]}
    for split, split_names in splits.items():
        text = "".join(f"{n}\n" for n in split_names)
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text(text)
    return root


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured BGR background: a smooth colour field, stripes and fine noise."""
    low = rng.uniform(40, 200, size=(4, 4, 3)).astype(np.float32)
    field = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(8, 32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
    stripes = rng.uniform(5, 20) * np.sin(phase)[..., None]
    noise = rng.normal(0, 8, size=(height, width, 3)).astype(np.float32)
    return np.clip(field + stripes + noise, 0, 255)


def _shape_mask(
    rng: np.random.Generator, kind: str, height: int, width: int, box: Sequence[int]
) -> np.ndarray:
    """A uint8 mask of one shape drawn inside ``box`` = (x, y, w, h)."""
    x, y, w, h = box
    mask = np.zeros((height, width), dtype=np.uint8)
    if kind == "rectangle":
        cv2.rectangle(mask, (x, y), (x + w - 1, y + h - 1), 255, thickness=-1)
    elif kind == "ellipse":
        centre = (x + w // 2, y + h // 2)
        cv2.ellipse(mask, centre, ((w - 1) // 2, (h - 1) // 2), 0, 0, 360, 255, thickness=-1)
    else:  # triangle: one corner on each of three sides of the box
        top = (x + int(rng.integers(0, w)), y)
        bottom_left = (x, y + h - 1)
        bottom_right = (x + w - 1, y + h - 1 - int(rng.integers(0, h // 2)))
        points = np.array([top, bottom_left, bottom_right], dtype=np.int32)
        cv2.fillPoly(mask, [points], 255)
    return mask


def _draw_image(
    rng: np.random.Generator,
    height: int,
    width: int,
    shapes_per_image: tuple[int, int],
    min_size: int,
    max_size: int,
) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    """One image and its objects ``(class name, (px_x1, px_y1, px_x2, px_y2))``, the pixel
    bounds being inclusive 0-based indices of the first and last covered pixel."""
    image = _background(rng, height, width)
    occupied = np.zeros((height, width), dtype=bool)
    objects = []
    wanted = int(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1))
    for _ in range(wanted):
        for _attempt in range(30):
            w, h = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
            x = int(rng.integers(0, width - w + 1))
            y = int(rng.integers(0, height - h + 1))
            # A margin of 2 px keeps shapes apart, so no box hides part of another.
            if not occupied[max(0, y - 2) : y + h + 2, max(0, x - 2) : x + w + 2].any():
                break
        else:
            break  # the image is full
        kind = SHAPE_CLASSES[int(rng.integers(len(SHAPE_CLASSES)))]
        mask = _shape_mask(rng, kind, height, width, (x, y, w, h)) > 0
        ys, xs = np.nonzero(mask)
        if len(xs) == 0:
            continue
        # A colour far from the background under the shape, so every shape is visible.
        local = image[mask].mean(axis=0)
        for _colour_attempt in range(20):
            colour = rng.uniform(0, 255, size=3)
            if np.abs(colour - local).sum() > 150:
                break
        shade = rng.uniform(0.85, 1.0, size=(h, w, 1))  # a little texture on the shape too
        patch = image[y : y + h, x : x + w]
        patch_mask = mask[y : y + h, x : x + w]
        patch[patch_mask] = (colour * shade)[patch_mask]
        occupied[y : y + h, x : x + w] = True
        objects.append((kind, (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))))
    return image.astype(np.uint8), objects


def _write_voc_xml(
    path: Path,
    name: str,
    shape: tuple[int, ...],
    objects: list[tuple[str, tuple[int, int, int, int]]],
) -> None:
    root = etree.Element("annotation")
    etree.SubElement(root, "folder").text = "shapes"
    etree.SubElement(root, "filename").text = f"{name}.jpg"
    source = etree.SubElement(root, "source")
    etree.SubElement(source, "database").text = "keras_retinanet synthetic shapes"
    size = etree.SubElement(root, "size")
    etree.SubElement(size, "width").text = str(shape[1])
    etree.SubElement(size, "height").text = str(shape[0])
    etree.SubElement(size, "depth").text = str(shape[2])
    etree.SubElement(root, "segmented").text = "0"
    for kind, (px_x1, px_y1, px_x2, px_y2) in objects:
        obj = etree.SubElement(root, "object")
        etree.SubElement(obj, "name").text = kind
        etree.SubElement(obj, "pose").text = "Unspecified"
        etree.SubElement(obj, "truncated").text = "0"
        etree.SubElement(obj, "difficult").text = "0"
        bndbox = etree.SubElement(obj, "bndbox")
        # VOC is 1-based and inclusive: the first and last covered pixel, counted from 1.
        for tag, value in (
            ("xmin", px_x1 + 1),
            ("ymin", px_y1 + 1),
            ("xmax", px_x2 + 1),
            ("ymax", px_y2 + 1),
        ):
            etree.SubElement(bndbox, tag).text = str(value)
    path.write_bytes(etree.tostring(root, pretty_print=True))


def main(argv: Sequence[str] | None = None) -> Path:
    """Command line: write the dataset to a folder and print its path."""
    parser = argparse.ArgumentParser(description="Write the synthetic shapes dataset (VOC layout).")
    parser.add_argument("output_dir")
    parser.add_argument("--train", type=int, default=200, help="trainval images")
    parser.add_argument("--test", type=int, default=50, help="test images")
    parser.add_argument("--size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = write_shapes_dataset(
        args.output_dir,
        num_train=args.train,
        num_test=args.test,
        image_size=tuple(args.size),
        seed=args.seed,
    )
    print(path)
    return path


if __name__ == "__main__":
    main()
