"""``retinanet-export MODEL OUT --format saved_model|tflite|onnx``: deployable detectors.

The artifacts take uint8 RGB images ``(B, H, W, 3)``, resize and normalise them inside, and
return ``boxes`` (input-image pixels), ``scores``, ``labels`` and ``num_detections``; they run
with plain TensorFlow, ``tf.lite.Interpreter`` or ``onnxruntime`` (see
:mod:`keras_retinanet.export`).

Examples::

    retinanet-export inference.keras detector --format saved_model
    retinanet-export inference.keras detector.tflite --format tflite --image-size 480 640
    retinanet-export inference.keras half.tflite --format tflite --image-size 480 640 --fp16
    retinanet-export inference.keras detector.onnx --format onnx
    retinanet-export inference.keras int8.tflite --format tflite --image-size 480 640 \
        --int8 --calibration ./my_voc_dataset
    retinanet-export inference.keras int8.onnx --format onnx --int8 --calibration ./images
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.export import export_model
from keras_retinanet.model.precision import PRECISIONS

FORMATS = ("saved_model", "tflite", "onnx")  # keras_retinanet.export.FORMATS, without TF


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="retinanet-export",
        description="Export a RetinaNet snapshot as a SavedModel, TFLite or ONNX detector that "
        "takes uint8 RGB images and returns boxes in their pixels.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="inference model from retinanet-convert, or a training snapshot (converted with "
        "the default filter settings)",
    )
    parser.add_argument(
        "output", metavar="OUT", help="SavedModel folder, .tflite file or .onnx file"
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="artifact format")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=None,
        help="fix the input image size (required for tflite; default: any size)",
    )
    parser.add_argument("--fp16", action="store_true", help="tflite only: store weights as float16")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="tflite, onnx: int8 weights and activations for the network (a quarter of the "
        "size, faster on CPUs); box decoding and NMS stay float. Needs --calibration",
    )
    parser.add_argument(
        "--calibration",
        metavar="DATASET",
        help="with --int8: a Pascal VOC folder (its trainval images) or a folder of images "
        "like those the detector will see, to fix the int8 ranges",
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=100,
        metavar="N",
        help="with --int8: how many calibration images to use (spread over the dataset)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="float32",
        help="saved_model only: bfloat16 runs the network in bfloat16 (decoding and NMS in "
        "float32), about half the time on CPUs with AVX512-BF16 or AMX",
    )
    parser.add_argument(
        "--min-side",
        type=float,
        default=None,
        help="resize the shorter side to this (default: the snapshot's training value, else 800)",
    )
    parser.add_argument(
        "--max-side",
        type=float,
        default=None,
        help="bound on the longer side (default: the snapshot's training value, else 1333)",
    )
    args = parser.parse_args(argv)
    if args.image_size is not None and min(args.image_size) < 1:
        parser.error(f"--image-size must be positive, got {args.image_size}")
    if args.format == "tflite" and args.image_size is None:
        parser.error("--format tflite needs --image-size H W (TFLite runs fixed shapes)")
    if args.fp16 and args.format != "tflite":
        parser.error("--fp16 applies to --format tflite only")
    if args.int8 and args.format == "saved_model":
        parser.error("--int8 applies to --format tflite and onnx")
    if args.int8 and args.fp16:
        parser.error("choose one of --int8 and --fp16")
    if args.int8 != (args.calibration is not None):
        parser.error(
            "--int8 and --calibration DATASET go together (calibration images fix the int8 ranges)"
        )
    if args.calibration_images < 1:
        parser.error(f"--calibration-images must be positive, got {args.calibration_images}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-export``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-export", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-export``; returns the exit status."""
    args = parse_args(argv)

    try:
        result = export_model(
            args.model,
            args.output,
            args.format,
            image_size=args.image_size,
            fp16=args.fp16,
            min_side=args.min_side,
            max_side=args.max_side,
            int8=args.int8,
            calibration=args.calibration,
            calibration_images=args.calibration_images,
            precision=args.precision,
        )
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-export: error: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
