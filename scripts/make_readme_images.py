"""Make the README pictures with the package itself.

* ``docs/images/anchors.png``: what ``retinanet-debug`` draws for a VOC2007 image of the shared
  data: positive anchors (thin, class colours) and ground truth (green), default anchors.
* ``docs/images/anchors_uncovered.png``: the same image with anchors four times too large, so
  the small cars get no anchor and are marked in red, as ``retinanet-debug`` shows a bad
  ``--config``.
* ``docs/images/detections.png`` (with ``--snapshot``): detections of a trained snapshot drawn
  by ``retinanet-predict``'s drawing code, on up to three images side by side.

Usage::

    python scripts/make_readme_images.py                       # anchor pictures only
    python scripts/make_readme_images.py --snapshot snapshots/resnet50_voc_20.keras \\
        --images ../shared/data/voc2007_sample/JPEGImages/000004.jpg
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "voc2007_sample"
DEFAULT_IMAGE_ID = "000004"  # a street with seven cars of many sizes
PICTURE_WIDTH = 800  # README pictures are shown about this wide


def _fit_width(image: np.ndarray, width: int) -> np.ndarray:
    if image.shape[1] <= width:
        return image
    height = round(image.shape[0] * width / image.shape[1])
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _write(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise OSError(f"could not write {path}")
    print(f"wrote {path} ({image.shape[1]}x{image.shape[0]})")


def anchor_pictures(data_dir: Path, image_id: str, output_dir: Path, width: int) -> None:
    """Draw the anchor coverage of one image with the default and with too-large anchors."""
    from keras_retinanet.debug import draw_coverage, image_coverage
    from keras_retinanet.model.anchors import AnchorParameters
    from keras_retinanet.preprocessing.voc import VOC_CLASSES, PascalVocGenerator

    default = AnchorParameters()
    too_large = AnchorParameters(sizes=tuple(4 * s for s in default.sizes))
    for params, name in ((default, "anchors.png"), (too_large, "anchors_uncovered.png")):
        generator = PascalVocGenerator(
            data_dir, "trainval", classes=VOC_CLASSES, shuffle=False, anchor_parameters=params
        )
        index = generator.image_names.index(image_id)
        images, annotations, _ = generator.preprocess_group([index])
        coverage = image_coverage(
            images[0],
            annotations[0],
            generator.num_classes(),
            params,
            padded_shape=generator.padded_shape(images),
        )
        picture = draw_coverage(coverage, generator.classes)
        print(
            f"{name}: {int(coverage.counted.sum())} boxes, {int(coverage.uncovered.sum())} "
            f"without an anchor, {len(coverage.positive_anchors)} positive anchors"
        )
        _write(output_dir / name, _fit_width(picture, width))


def detection_picture(
    snapshot: str, images: Sequence[str], output_dir: Path, width: int, score_threshold: float
) -> None:
    """Detections of a trained snapshot on up to three images, side by side."""
    from keras_retinanet import models
    from keras_retinanet.inference import detect
    from keras_retinanet.predict import class_name, load_class_names
    from keras_retinanet.preprocessing.image import read_image_bgr
    from keras_retinanet.visualization import draw_detections

    metadata = models.read_metadata(snapshot)
    names = load_class_names(snapshot)
    model = models.load_model(snapshot, convert=True, score_threshold=score_threshold)
    pictures = [read_image_bgr(path) for path in images[:3]]
    results = detect(
        model,
        pictures,
        min_side=metadata.get("image_min_side", 800),
        max_side=metadata.get("image_max_side", 1333),
        score_threshold=score_threshold,
    )
    height = min(p.shape[0] for p in pictures)
    row = []
    for picture, result in zip(pictures, results):
        draw_detections(
            picture,
            result.boxes,
            result.scores,
            result.labels,
            label_to_name=lambda label: class_name(label, names),
            score_threshold=score_threshold,
        )
        print(f"{len(result)} detections above {score_threshold}")
        scale = height / picture.shape[0]
        row.append(cv2.resize(picture, (round(picture.shape[1] * scale), height)))
        row.append(np.full((height, 8, 3), 255, dtype=np.uint8))  # white gap
    _write(output_dir / "detections.png", _fit_width(np.hstack(row[:-1]), width))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="VOC-layout data")
    parser.add_argument("--image-id", default=DEFAULT_IMAGE_ID, help="image for the anchors")
    parser.add_argument("--output-dir", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--width", type=int, default=PICTURE_WIDTH, help="widest picture")
    parser.add_argument("--snapshot", help="trained snapshot for docs/images/detections.png")
    parser.add_argument(
        "--images",
        nargs="+",
        help="images for the detections picture (default: --image-id of --data-dir)",
    )
    parser.add_argument("--score-threshold", type=float, default=0.5)
    args = parser.parse_args(argv)

    if not args.data_dir.is_dir():
        print(f"data folder not found: {args.data_dir} (pass --data-dir)", file=sys.stderr)
        return 2
    anchor_pictures(args.data_dir, args.image_id, args.output_dir, args.width)
    if args.snapshot:
        images = args.images or [os.path.join(args.data_dir, "JPEGImages", f"{args.image_id}.jpg")]
        detection_picture(args.snapshot, images, args.output_dir, args.width, args.score_threshold)
    else:
        print("no --snapshot: docs/images/detections.png not made (it needs a trained model)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
