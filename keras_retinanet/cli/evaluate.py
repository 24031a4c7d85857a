"""``retinanet-evaluate``: the mAP of a snapshot on a data set.

Usage::

    retinanet-evaluate [options] MODEL                      # the snapshot's validation set
    retinanet-evaluate [options] voc DATA_DIR MODEL [--set test] [--classes FILE]
    retinanet-evaluate [options] csv ANNOTATIONS CLASSES MODEL
    retinanet-evaluate [options] coco DATA_DIR MODEL [--set val2017]

MODEL is a ``.keras`` or ``.h5`` file holding the training or the inference model; a training
model is converted with the anchor parameters recorded in the file. The work is done by
:mod:`keras_retinanet.evaluation.runner`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from keras_retinanet.cli.foreign import snapshot_or_converted
from keras_retinanet.cli.tile_options import add_tile_arguments, check_tile_arguments
from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.evaluation import inputs, reports, runner
from keras_retinanet.evaluation.thresholds import format_thresholds, threshold_report
from keras_retinanet.export.runtime import artifact_format, load_artifact
from keras_retinanet.model.precision import PRECISIONS
from keras_retinanet.model.retinanet import load_model, read_metadata
from keras_retinanet.model.settings import DetectionSettings
from keras_retinanet.preprocessing.coco import CocoGenerator
from keras_retinanet.preprocessing.csv import CSVGenerator
from keras_retinanet.preprocessing.voc import PascalVocGenerator

DATASET_TYPES = ("voc", "csv", "coco")
# detectron2 / torchvision defaults, used when the snapshot records no image sizes.
DEFAULT_MIN_SIDE = 800
DEFAULT_MAX_SIDE = 1333

_USAGE = (
    "retinanet-evaluate [options] MODEL\n"
    "       retinanet-evaluate [options] {voc,csv,coco} ... MODEL"
)
_DESCRIPTION = (
    "Evaluate a RetinaNet snapshot (.keras or .h5, training or inference model). With MODEL "
    "alone, on the validation set the snapshot was trained with; otherwise on the named "
    "dataset. Prints AP per class, mAP and the mean inference time per image."
)

_EPILOG = (
    "MODEL alone: a snapshot written by retinanet-train, evaluated on the validation set it "
    "records. Help on a dataset's arguments: retinanet-evaluate voc -h"
)


def _add_common_options(parser: argparse.ArgumentParser, suppress: bool = False) -> None:
    """Options valid before and after the dataset subcommand.

    In a subcommand's parser they default to ``argparse.SUPPRESS``, so that an option given
    before the subcommand is not overwritten by the subcommand's default.
    """

    def default(value):
        return argparse.SUPPRESS if suppress else value

    add_tile_arguments(parser, default)

    parser.add_argument(
        "--score-threshold",
        type=float,
        default=default(None),
        help="keep detections scoring above this (default: the model's detection settings, "
        f"{DetectionSettings().score_threshold} unless converted otherwise); precision, recall "
        "and F1 are reported at it",
    )
    parser.add_argument(
        "--iou-threshold",
        type=float,
        default=default(0.5),
        help="IoU for a detection to match a box (default 0.5)",
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        default=default(100),
        help="detections kept per image (default 100)",
    )
    parser.add_argument(
        "--metric",
        choices=("voc07", "voc12", "coco"),
        default=default(None),
        help="voc07: 11-point AP; voc12: all-point AP; coco: COCOeval AP@[.5:.95] "
        "(default: coco for COCO data, voc12 for VOC2010+ folders, voc07 otherwise)",
    )
    parser.add_argument(
        "--image-min-side",
        type=int,
        default=default(None),
        help=f"shorter image side (default: the snapshot's, else {DEFAULT_MIN_SIDE})",
    )
    parser.add_argument(
        "--image-max-side",
        type=int,
        default=default(None),
        help=f"bound on the longer side (default: the snapshot's, else {DEFAULT_MAX_SIDE})",
    )
    parser.add_argument(
        "--batch-size", type=int, default=default(1), help="images per model call (default 1)"
    )
    parser.add_argument(
        "--save-path",
        default=default(None),
        help="folder for images with detections and ground truth drawn, report.json and "
        "precision-recall plots",
    )
    parser.add_argument(
        "--draw-score-threshold",
        type=float,
        default=default(DetectionSettings().display_threshold),
        help="with --save-path, draw detections scoring above this (default "
        f"{DetectionSettings().display_threshold})",
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        default=default(False),
        help="leave out unreadable images with a warning instead of stopping",
    )
    parser.add_argument(
        "--quiet", action="store_true", default=default(False), help="no progress bar"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=default("float32"),
        help="bfloat16: the network in bfloat16, decoding and NMS in float32, on CPUs with "
        "AVX512-BF16 or AMX (elsewhere it says so and runs float32)",
    )


def _dataset_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinanet-evaluate", usage=_USAGE, description=_DESCRIPTION, epilog=_EPILOG
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    _add_common_options(parser)
    subparsers = parser.add_subparsers(dest="dataset_type", metavar="{voc,csv,coco}")

    voc = subparsers.add_parser(
        "voc", prog="retinanet-evaluate [options] voc", help="a dataset in Pascal VOC layout"
    )
    voc.add_argument(
        "data_dir", help="folder in VOC layout, or images with one XML beside each (LabelImg)"
    )
    voc.add_argument(
        "model", help="the .keras or .h5 snapshot, or an exported SavedModel/.tflite/.onnx"
    )
    voc.add_argument(
        "--set",
        default="test",
        help="ImageSets/Main/<set>.txt (default test); without split files test/val is the "
        "held-out part, train/trainval the rest, all every image",
    )
    voc.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="without ImageSets/Main/: the held-out share used in training (default 0.1)",
    )
    voc.add_argument(
        "--classes",
        default=None,
        help="classes.txt in the model's label order (default: the snapshot's class names, "
        "else DATA_DIR/classes.txt, else the 20 VOC classes)",
    )
    _add_common_options(voc, suppress=True)

    csv = subparsers.add_parser(
        "csv", prog="retinanet-evaluate [options] csv", help="annotations in CSV files"
    )
    csv.add_argument("annotations", help="CSV of path,x1,y1,x2,y2,class_name rows")
    csv.add_argument("classes", help="CSV of class_name,id rows")
    csv.add_argument(
        "model", help="the .keras or .h5 snapshot, or an exported SavedModel/.tflite/.onnx"
    )
    _add_common_options(csv, suppress=True)

    coco = subparsers.add_parser(
        "coco", prog="retinanet-evaluate [options] coco", help="a dataset in COCO layout"
    )
    coco.add_argument("data_dir", help="folder with annotations/instances_<set>.json, <set>/")
    coco.add_argument(
        "model", help="the .keras or .h5 snapshot, or an exported SavedModel/.tflite/.onnx"
    )
    coco.add_argument("--set", default="val2017", help="the set to evaluate (default val2017)")
    _add_common_options(coco, suppress=True)
    return parser


def _snapshot_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinanet-evaluate", usage=_USAGE, description=_DESCRIPTION
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "model",
        help="a snapshot written by retinanet-train; evaluated on its validation set. "
        "Or give a dataset first: {voc,csv,coco} ... MODEL (see retinanet-evaluate voc -h)",
    )
    _add_common_options(parser)
    return parser


def _first_positional(argv: Sequence[str], parser: argparse.ArgumentParser) -> str | None:
    """The first argument that is not an option or an option's value."""
    takes_value = {
        option
        for action in parser._actions
        if action.nargs != 0
        for option in action.option_strings
    }
    skip = False
    for token in argv:
        if skip:
            skip = False
            continue
        if token == "--":
            return None
        if token.startswith("-") and len(token) > 1:
            skip = "=" not in token and token in takes_value
            continue
        return token
    return None


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line: a dataset subcommand, or a snapshot alone."""
    argv = list(sys.argv[1:] if argv is None else argv)
    dataset_parser = _dataset_parser()
    first = _first_positional(argv, dataset_parser)
    if first is None or first in DATASET_TYPES:
        args = dataset_parser.parse_args(argv)
        if args.dataset_type is None:
            dataset_parser.error("give a MODEL, or a dataset and a MODEL: {voc,csv,coco} ... MODEL")
    else:
        args = _snapshot_parser().parse_args(argv)
        args.dataset_type = None
    check_tile_arguments(dataset_parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-evaluate``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-evaluate", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-evaluate``; returns 0 on success.

    Raises:
        SystemExit: bad arguments, or a missing file or a model/dataset mismatch (with a
            message saying what to fix).
    """
    args = parse_args(argv)
    try:
        run(args)
    except (OSError, ValueError) as error:  # OSError: missing files, unreadable images
        if debugging():  # --debug: the traceback, not the message
            raise
        sys.exit(f"retinanet-evaluate: error: {error}")
    return 0


def run(args: argparse.Namespace) -> None:
    """Evaluate as the parsed arguments say: build the data, load the model, report."""

    model_path = snapshot_or_converted(args.model, "retinanet-evaluate")
    artifact = load_artifact(model_path) if artifact_format(model_path) else None
    metadata = artifact.metadata if artifact else read_metadata(model_path)
    min_side = args.image_min_side or metadata.get("image_min_side") or DEFAULT_MIN_SIDE
    max_side = args.image_max_side or metadata.get("image_max_side") or DEFAULT_MAX_SIDE
    if max_side < min_side:
        raise ValueError(
            f"--image-max-side {max_side} is smaller than --image-min-side {min_side}; pass "
            "both or neither"
        )
    generator_kwargs = {
        "image_min_side": min_side,
        "image_max_side": max_side,
        "shuffle": False,
        "group_method": "none",
        "batch_size": 1,
        "skip_bad_images": args.skip_bad_images,
    }
    recorded_classes = metadata.get("classes")

    if args.dataset_type is None:
        generator = inputs.generator_from_snapshot(model_path, metadata, **generator_kwargs)
    elif args.dataset_type == "voc":
        classes = args.classes or recorded_classes  # None: classes.txt, the XMLs' or VOC's
        generator = PascalVocGenerator(
            args.data_dir,
            args.set,
            classes=classes,
            val_fraction=args.val_fraction,
            **generator_kwargs,
        )
    elif args.dataset_type == "csv":
        generator = CSVGenerator(args.annotations, args.classes, **generator_kwargs)
    else:
        generator = CocoGenerator(args.data_dir, args.set, **generator_kwargs)

    # The recorded class count is checked before the (slow) model load.
    recorded_count = metadata.get("num_classes") or (
        len(recorded_classes) if recorded_classes else None
    )
    inputs.check_num_classes(recorded_count, generator, model_path)
    inputs.warn_if_other_classes(model_path, recorded_classes, generator)

    asked = {} if args.score_threshold is None else {"score_threshold": args.score_threshold}
    if artifact and (args.precision != "float32" or args.image_min_side or args.image_max_side):
        raise ValueError(
            f"{model_path} is an exported artifact: its graph fixes its precision and resize "
            "sizes; leave out --precision and --image-*-side, or export its snapshot again"
        )
    model = artifact or load_model(model_path, convert=True, precision=args.precision, **asked)
    inputs.check_num_classes(inputs.model_num_classes(model), generator, model_path)

    metric = args.metric or inputs.default_metric(generator.dataset_info())
    result = runner.evaluate(
        generator,
        model,
        score_threshold=args.score_threshold,
        max_detections=args.max_detections,
        iou_threshold=args.iou_threshold,
        metric=metric,
        batch_size=args.batch_size,
        image_min_side=min_side,
        image_max_side=max_side,
        verbose=0 if args.quiet else 1,
        tile=args.tile,
        tile_overlap=args.tile_overlap,
        tile_whole=args.tile_whole,
    )
    print(reports.format_table(result))
    print()
    print(
        f"precision, recall and F1 at --score-threshold {result.score_threshold:g}, and at "
        "each class's best-F1 threshold (retinanet-predict --score-threshold "
        "best:SAVE_PATH/report.json uses those):"
    )
    print(format_thresholds(threshold_report(result)))
    # A fizyr or torchvision file was converted to a temporary file: name the one given.
    own = model_path == args.model and metadata.get("model") == "training"
    if hint := reports.low_ap_hint(result, args.model, own):
        print(hint)

    if args.save_path:
        save_path = args.save_path
        report = reports.write_json_report(
            result,
            os.path.join(save_path, "report.json"),
            extra={
                "model": os.path.abspath(model_path),
                "dataset": generator.dataset_info(),
                "epoch": metadata.get("epoch"),
            },
        )
        plots = reports.save_precision_recall_plots(
            result, os.path.join(save_path, "precision_recall")
        )
        images = reports.save_detection_images(
            generator,
            result,
            os.path.join(save_path, "images"),
            score_threshold=args.draw_score_threshold,
        )
        written = f"{report}, "
        if hasattr(generator, "coco_image_id"):  # COCO data: the results file COCOeval reads
            written += (
                reports.write_coco_results(
                    generator, result, os.path.join(save_path, "detections.json")
                )
                + ", "
            )
        print(
            f"wrote {written}{len(plots)} precision-recall plots and {len(images)} images "
            f"under {save_path}"
        )


if __name__ == "__main__":
    sys.exit(main())
