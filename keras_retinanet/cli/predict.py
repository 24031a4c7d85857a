"""``retinanet-predict MODEL INPUT... [--output DIR] [--score-threshold 0.5]``.

Runs a trained snapshot on images, folders or glob patterns, writes each image with its
detections drawn and one ``detections.json`` (see :mod:`keras_retinanet.predict`).

Examples::

    retinanet-predict snapshots/resnet50_voc_20.keras photos/ --output predictions
    retinanet-predict model.keras 'data/**/*.jpg' --score-threshold 0.3 --batch-size 4
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_retinanet.cli.foreign import snapshot_or_converted
from keras_retinanet.cli.tile_options import add_tile_arguments, check_tile_arguments
from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.evaluation.thresholds import score_threshold_option
from keras_retinanet.model.precision import PRECISIONS
from keras_retinanet.model.settings import DetectionSettings
from keras_retinanet.predict import predict

DEFAULT = DetectionSettings()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="retinanet-predict",
        description="Detect objects in images with a trained RetinaNet snapshot; write the "
        "images with detections drawn and detections.json.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "model",
        help="snapshot (.keras or .h5), training or inference model, or an exported artifact "
        "(SavedModel folder, .tflite, .onnx)",
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image file, folder (its images, not recursive) or quoted glob pattern "
        "('photos/*.jpg', 'data/**/*.png')",
    )
    parser.add_argument(
        "--output", "-o", default="predictions", help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--score-threshold",
        type=score_threshold_option,
        default=None,
        help="keep detections scoring above this, or best:REPORT.json for each class's best-F1 "
        "threshold from retinanet-evaluate --save-path's report.json (default: the snapshot's "
        f"per-class thresholds if any, else its display threshold, {DEFAULT.display_threshold} "
        "unless it records another)",
    )
    parser.add_argument(
        "--image-min-side",
        type=int,
        default=None,
        help="resize the shorter side to this (default: the snapshot's training value, else 800)",
    )
    parser.add_argument(
        "--image-max-side",
        type=int,
        default=None,
        help="bound on the longer side (default: the snapshot's training value, else 1333)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=1, help="images per forward pass (default: 1)"
    )
    parser.add_argument(
        "--classes",
        default=None,
        help="text file with one class name per line, for snapshots without class names",
    )
    parser.add_argument(
        "--nms-threshold",
        type=float,
        default=None,
        help="IoU above which NMS suppresses a box (default: the snapshot's, "
        f"{DEFAULT.nms_threshold} unless it records another)",
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        default=None,
        help="most detections per image (default: the snapshot's, "
        f"{DEFAULT.max_detections} unless it records another)",
    )
    parser.add_argument(
        "--no-draw", action="store_true", help="only write detections.json, no drawn images"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="bfloat16: the network in bfloat16, decoding and NMS in float32, on CPUs with "
        "AVX512-BF16 or AMX (elsewhere it says so and runs float32)",
    )
    add_tile_arguments(parser)
    args = parser.parse_args(argv)
    check_tile_arguments(parser, args)
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-predict``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-predict", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-predict``; returns the exit status (1 if no image was read)."""
    args = parse_args(argv)

    try:
        result = predict(
            snapshot_or_converted(args.model, "retinanet-predict"),
            args.inputs,
            output_dir=args.output,
            score_threshold=args.score_threshold,
            image_min_side=args.image_min_side,
            image_max_side=args.image_max_side,
            batch_size=args.batch_size,
            classes_file=args.classes,
            nms_threshold=args.nms_threshold,
            max_detections=args.max_detections,
            draw=not args.no_draw,
            progress=not args.no_progress,
            precision=args.precision,
            tile=args.tile,
            tile_overlap=args.tile_overlap,
            tile_whole=args.tile_whole,
        )
    except (FileNotFoundError, ValueError) as e:
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-predict: error: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0 if result.records else 1


if __name__ == "__main__":
    sys.exit(main())
