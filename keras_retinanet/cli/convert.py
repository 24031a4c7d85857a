"""``retinanet-convert MODEL_IN MODEL_OUT``: training snapshot -> inference model.

The inference model adds anchors, box decoding, clipping and detection filtering (NMS) to the
training model, so that ``boxes, scores, labels = model.predict(images)``. The filter settings
are recorded in the output's metadata (see :func:`keras_retinanet.export.convert_model`).

Examples::

    retinanet-convert snapshots/resnet50_voc_20.keras inference.keras
    retinanet-convert snapshot.h5 inference.h5 --score-threshold 0.3 --max-detections 100
    retinanet-convert snapshot.keras agnostic.keras --no-class-specific-filter
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="retinanet-convert",
        description="Convert a RetinaNet training snapshot into an inference model "
        "(anchors, box decoding and NMS in the graph).",
    )
    parser.add_argument("model_in", metavar="MODEL_IN", help="training snapshot (.keras/.h5)")
    parser.add_argument("model_out", metavar="MODEL_OUT", help="inference model (.keras/.h5)")
    parser.add_argument(
        "--no-nms", dest="nms", action="store_false", help="skip non-maximum suppression"
    )
    parser.add_argument(
        "--no-class-specific-filter",
        dest="class_specific_filter",
        action="store_false",
        help="keep only each anchor's best class and suppress across classes",
    )
    parser.add_argument(
        "--nms-threshold",
        type=float,
        default=0.5,
        help="IoU above which NMS suppresses a box (default: %(default)s)",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.05,
        help="keep detections scoring above this (default: %(default)s)",
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        default=300,
        help="detections per image, padded with -1 (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if not 0.0 <= args.nms_threshold <= 1.0:
        parser.error(f"--nms-threshold must be in [0, 1], got {args.nms_threshold}")
    if not 0.0 <= args.score_threshold <= 1.0:
        parser.error(f"--score-threshold must be in [0, 1], got {args.score_threshold}")
    if args.max_detections < 1:
        parser.error(f"--max-detections must be at least 1, got {args.max_detections}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-convert``; returns the exit status."""
    args = parse_args(argv)
    from keras_retinanet.export import convert_model

    try:
        path = convert_model(
            args.model_in,
            args.model_out,
            nms=args.nms,
            class_specific_filter=args.class_specific_filter,
            nms_threshold=args.nms_threshold,
            score_threshold=args.score_threshold,
            max_detections=args.max_detections,
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"retinanet-convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote inference model to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
