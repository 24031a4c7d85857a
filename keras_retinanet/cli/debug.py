"""``retinanet-debug``: check that the anchors cover the ground truth, as training sees it.

Prints the share of boxes that no anchor covers (IoU >= 0.5), per class, and with
``--output-dir`` writes one PNG per image: positive anchors (thin, class colours), ground
truth (green) and uncovered boxes (red). See :mod:`keras_retinanet.debug`.

Examples::

    retinanet-debug voc data/VOC2007 --output-dir debug --limit 20
    retinanet-debug voc data/cells --image-min-side 600 --config small_anchors.json
    retinanet-debug csv annotations.csv classes.csv --random-transform --output-dir debug
    retinanet-debug voc data/cells --set test --snapshot snapshots/resnet50_voc_10.keras --scores

``--scores`` (with a training ``--snapshot``) also reports, per class, whether the model has
learned it (:mod:`keras_retinanet.learned`): the answer for a class at AP 0 whose boxes the
anchors cover.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_retinanet.debug import analyze_coverage
from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.evaluation.inputs import warn_if_other_classes
from keras_retinanet.learned import analyze_scores
from keras_retinanet.model.anchor_config import read_anchor_parameters
from keras_retinanet.model.anchors import AnchorParameters
from keras_retinanet.model.retinanet import load_model, read_metadata
from keras_retinanet.preprocessing.csv import CSVGenerator
from keras_retinanet.preprocessing.transform import random_transform
from keras_retinanet.preprocessing.voc import PascalVocGenerator


def build_parser() -> argparse.ArgumentParser:
    """The argument parser."""
    parser = argparse.ArgumentParser(
        prog="retinanet-debug",
        description="Show which ground-truth boxes the anchors cover after the training "
        "transforms; print the share of boxes without a positive anchor.",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    # The options go after the dataset arguments (retinanet-debug voc DATA_DIR --anchors),
    # so every dataset sub-command takes them.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--anchors", action="store_true", help="draw the positive anchors (default: both)"
    )
    common.add_argument(
        "--annotations", action="store_true", help="draw the ground truth (default: both)"
    )
    common.add_argument(
        "--random-transform",
        action="store_true",
        help="apply the training augmentation (flip, scale, colour)",
    )
    common.add_argument("--seed", type=int, default=0, help="seed of --random-transform")
    common.add_argument(
        "--output-dir", help="write one PNG per image and coverage.json here (default: none)"
    )
    common.add_argument("--image-min-side", type=int, default=None, help="default: 800")
    common.add_argument("--image-max-side", type=int, default=None, help="default: 1333")
    common.add_argument("--config", help="anchor parameters (.json or .ini)")
    common.add_argument(
        "--snapshot",
        help="take the anchor parameters and image sizes from this snapshot's metadata "
        "(--config and --image-*-side override them)",
    )
    common.add_argument(
        "--scores",
        action="store_true",
        help="also run the --snapshot's model over the images and report, per class, how well "
        "its scores separate the class's anchors from the rest and how many boxes its best "
        "anchor finds: tells a class that is not learned yet from one that is (AP 0 on a class). "
        "The anchors are the snapshot's and positives follow training's IoU thresholds "
        "(--positive-overlap and --negative-overlap apply to the coverage only)",
    )
    common.add_argument("--limit", type=int, help="analyse only the first N images")
    common.add_argument(
        "--positive-overlap",
        type=float,
        default=0.5,
        help="IoU that makes an anchor positive (default: %(default)s)",
    )
    common.add_argument(
        "--negative-overlap",
        type=float,
        default=0.4,
        help="IoU below which an anchor is background (default: %(default)s)",
    )
    common.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    add_dataset_commands(parser, common)
    return parser


def add_dataset_commands(parser: argparse.ArgumentParser, common: argparse.ArgumentParser) -> None:
    """The ``voc DATA_DIR`` and ``csv ANNOTATIONS CLASSES`` sub-commands, each taking the
    options of ``common`` (``retinanet-debug`` and ``retinanet-anchors`` share them)."""
    subparsers = parser.add_subparsers(dest="dataset_type", required=True, metavar="DATASET")
    voc = subparsers.add_parser(
        "voc", parents=[common], help="Pascal VOC layout (also custom VOC-layout data)"
    )
    voc.add_argument(
        "data_dir", help="folder in VOC layout, or images with one XML beside each (LabelImg)"
    )
    voc.add_argument("--set", default="trainval", help="split to read (default: %(default)s)")
    voc.add_argument(
        "--classes",
        help="classes.txt (one name per line); default: DATA_DIR/classes.txt if it exists, "
        "else the names in the annotations (the 20 VOC classes when those are the names)",
    )
    csv_parser = subparsers.add_parser(
        "csv", parents=[common], help="CSV annotations (path,x1,y1,x2,y2,class)"
    )
    csv_parser.add_argument("annotations", help="annotations CSV")
    csv_parser.add_argument("classes", help="classes CSV (class_name,id)")


def _settings(args: argparse.Namespace) -> tuple:
    """Anchor parameters, image sizes and the model variant from --config/--snapshot/
    --image-*-side."""

    params, min_side, max_side, variant = None, 800, 1333, None
    if args.snapshot:
        metadata = read_metadata(args.snapshot)
        variant = metadata.get("variant")  # a converted model's anchor rule
        recorded = metadata.get("anchor_parameters")
        params = AnchorParameters.from_dict(recorded) if recorded else None
        min_side = metadata.get("image_min_side", min_side)
        max_side = metadata.get("image_max_side", max_side)
    if args.config:
        params = read_anchor_parameters(args.config)
    if args.image_min_side is not None:
        min_side = args.image_min_side
    if args.image_max_side is not None:
        max_side = args.image_max_side
    return params or AnchorParameters(), min_side, max(max_side, min_side), variant


def create_generator(args: argparse.Namespace):
    """The generator of the chosen dataset, in file order, with the training transforms."""
    params, min_side, max_side, variant = _settings(args)
    transform = None
    if args.random_transform:
        transform = random_transform(seed=args.seed)
    kwargs = dict(
        batch_size=1,
        shuffle=False,
        group_method="none",
        image_min_side=min_side,
        image_max_side=max_side,
        transform=transform,
        anchor_parameters=params,
        seed=args.seed,
        skip_bad_images=True,
        variant=variant,
    )
    recorded = read_metadata(args.snapshot).get("classes") if args.snapshot else None
    if args.dataset_type == "voc":
        # The snapshot's classes, in its order; else DATA_DIR/classes.txt, else the
        # annotations' names (or VOC's).
        classes = args.classes or recorded
        generator = PascalVocGenerator(args.data_dir, args.set, classes=classes, **kwargs)
    else:
        generator = CSVGenerator(args.annotations, args.classes, **kwargs)
    warn_if_other_classes(args.snapshot, recorded, generator)
    return generator


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-debug``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-debug", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-debug``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.limit is not None and args.limit < 1:
        parser.error(f"--limit must be at least 1, got {args.limit}")
    if args.scores and not args.snapshot:
        parser.error("--scores needs --snapshot (the training snapshot whose scores to read)")
    if args.scores and args.config:
        parser.error("--scores reads the model at the snapshot's own anchors; leave out --config")
    if not 0 < args.negative_overlap <= args.positive_overlap <= 1:
        parser.error("need 0 < --negative-overlap <= --positive-overlap <= 1")
    # Neither flag: draw both, the useful default.
    draw_anchors = args.anchors or not args.annotations
    draw_ground_truth = args.annotations or not args.anchors

    try:
        if args.scores and read_metadata(args.snapshot).get("model") == "inference":
            raise ValueError(
                f"{args.snapshot} is an inference model; --scores needs the training snapshot "
                "it was converted from (retinanet-train writes those)"
            )
        generator = create_generator(args)
        report = analyze_coverage(
            generator,
            output_dir=args.output_dir,
            draw_anchors=draw_anchors,
            draw_ground_truth=draw_ground_truth,
            limit=args.limit,
            progress=not args.no_progress,
            negative_overlap=args.negative_overlap,
            positive_overlap=args.positive_overlap,
        )
        print(report.format())
        if args.scores:
            scores = analyze_scores(
                load_model(args.snapshot),
                generator,
                limit=args.limit,
                progress=not args.no_progress,
                output_dir=args.output_dir,
            )
            print(scores.format())
    except (FileNotFoundError, ValueError, KeyError) as e:
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-debug: error: {e}", file=sys.stderr)
        return 2
    if args.output_dir:
        written = "coverage.json and scores.json" if args.scores else "coverage.json"
        print(f"pictures and {written} in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
