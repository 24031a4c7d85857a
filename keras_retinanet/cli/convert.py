"""``retinanet-convert MODEL_IN MODEL_OUT``: training snapshot -> inference model; with
``--from fizyr|torchvision``: another project's pretrained RetinaNet -> a snapshot of this package.

The inference model adds anchors, box decoding, clipping and detection filtering (NMS) to the
training model, so that ``boxes, scores, labels = model.predict(images)``. The filter settings
are recorded in the output's metadata (see :func:`keras_retinanet.export.convert_model`).

Examples::

    retinanet-convert snapshots/resnet50_voc_20.keras inference.keras
    retinanet-convert snapshot.h5 inference.h5 --score-threshold 0.3 --max-detections 100
    retinanet-convert snapshot.keras agnostic.keras --no-class-specific-filter
    retinanet-convert --from fizyr resnet50_coco_best_v2.1.0.h5 coco_fizyr.keras
    retinanet-convert --from torchvision retinanet_resnet50_fpn_coco-eeacb38b.pth coco.keras
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from keras_retinanet.cli.foreign import snapshot_or_converted
from keras_retinanet.convert import convert_fizyr, convert_torchvision
from keras_retinanet.convert.pretrained import download_pretrained
from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.evaluation.thresholds import score_threshold_option, threshold_settings
from keras_retinanet.export import convert_model
from keras_retinanet.model.presets import presets_of
from keras_retinanet.model.retinanet import read_metadata
from keras_retinanet.model.settings import DetectionSettings

DEFAULT = DetectionSettings()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="retinanet-convert",
        description="Convert a RetinaNet training snapshot into an inference model "
        "(anchors, box decoding and NMS in the graph).",
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "model_in",
        metavar="MODEL_IN",
        nargs="?",
        help="training snapshot (.keras/.h5), or with --from the source file (.h5/.pth)",
    )
    parser.add_argument(
        "model_out",
        metavar="MODEL_OUT",
        nargs="?",
        help="inference model (.keras/.h5), or with --from the converted training snapshot",
    )
    parser.add_argument(
        "--pretrained",
        metavar="NAME",
        help="download a published COCO RetinaNet from its publisher and convert it (then "
        "MODEL_IN is the snapshot to write, default in the download cache): "
        + ", ".join(sorted(presets_of("detector"))),
        choices=sorted(presets_of("detector")),
    )
    parser.add_argument(
        "--url", help="with --pretrained: another location of the file (mirror or file://)"
    )
    parser.add_argument(
        "--from",
        dest="source",
        choices=("fizyr", "torchvision"),
        help="convert another project's RetinaNet: a fizyr keras-retinanet ResNet snapshot "
        "(.h5) or a torchvision retinanet_resnet50_fpn[_v2] state_dict (.pth)",
    )
    parser.add_argument(
        "--arch",
        choices=("v1", "v2"),
        default="v1",
        help="with --from torchvision: retinanet_resnet50_fpn (v1) or _v2 (default: %(default)s)",
    )
    parser.add_argument(
        "--classes",
        help="with --from: class names, one per line (or fizyr's name,id CSV); default: "
        "COCO's names for a COCO model, else class_0, class_1, ...",
    )
    parser.add_argument(
        "--keras-resnet",
        choices=("0.1", "0.2"),
        help="with --from fizyr: the keras-resnet version the snapshot was built with "
        "(default: read from the file; 0.1 for the published COCO file, 0.2 for models "
        "trained with fizyr 1.0.0)",
    )
    parser.add_argument(
        "--bn-eps",
        type=float,
        default=None,
        help="with --from torchvision: the BatchNorm epsilon the source ran with (default: 0 "
        "for v1, as torchvision runs its COCO weights; 1e-5 for v2 and self-trained v1)",
    )
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
        default=None,
        help="IoU above which NMS suppresses a box (default: the snapshot's, "
        f"{DEFAULT.nms_threshold} unless it records another)",
    )
    parser.add_argument(
        "--score-threshold",
        type=score_threshold_option,
        default=None,
        help="keep detections scoring above this, or best:REPORT.json: each class's best-F1 "
        "threshold from a retinanet-evaluate report, recorded in the model (the graph keeps "
        "the lowest; load_model, retinanet-predict and exports apply the rest) (default: the "
        f"snapshot's, {DEFAULT.score_threshold} unless it records another)",
    )
    parser.add_argument(
        "--max-detections",
        type=int,
        default=None,
        help="detections per image, padded with -1 (default: the snapshot's, "
        f"{DEFAULT.max_detections} unless it records another)",
    )
    args = parser.parse_args(argv)
    if args.pretrained:
        if args.model_out:
            parser.error("--pretrained takes at most one path: the snapshot to write")
    elif not (args.model_in and args.model_out):
        parser.error("MODEL_IN and MODEL_OUT are required (or --pretrained NAME)")
    if (args.pretrained or args.source) and _setting_options(args):
        parser.error(
            "detection settings (--score-threshold, --nms-threshold, ...) apply when converting "
            "a snapshot to an inference model: convert first, then run retinanet-convert on it"
        )
    try:
        numeric = {k: v for k, v in _setting_options(args).items() if not isinstance(v, str)}
        DEFAULT.with_options(**numeric)
    except ValueError as error:  # the message names the setting and its range
        parser.error(str(error))
    return args


def _setting_options(args: argparse.Namespace) -> dict:
    """The detection settings given on the command line (unset ones are left out)."""
    options = {
        "nms_threshold": args.nms_threshold,
        "score_threshold": args.score_threshold,
        "max_detections": args.max_detections,
        "nms": None if args.nms else False,
        "class_specific_filter": None if args.class_specific_filter else False,
    }
    return {k: v for k, v in options.items() if v is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-convert``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-convert", _main, argv)


def _main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``retinanet-convert``; returns the exit status."""
    args = parse_args(argv)
    if args.pretrained:
        return _pretrained(args)
    if args.source:
        return _import(args)

    try:
        model_in = snapshot_or_converted(args.model_in, "retinanet-convert")
        options = _setting_options(args)
        if isinstance(args.score_threshold, str):  # best:REPORT.json
            metadata = read_metadata(model_in)
            classes = metadata.get("classes")
            options.update(
                threshold_settings(args.score_threshold, classes, metadata.get("num_classes"))
            )
        path = convert_model(model_in, args.model_out, **options)
    except (FileNotFoundError, ValueError) as e:
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote inference model to {path}")
    return 0


def _pretrained(args: argparse.Namespace) -> int:

    try:
        path = download_pretrained(args.pretrained, output=args.model_in, url=args.url)
    except (OSError, ValueError) as e:  # a failed download, a bad hash, an unknown name
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-convert: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {path}. Try: retinanet-predict {path} IMAGE")
    return 0


def _import(args: argparse.Namespace) -> int:

    try:
        if args.source == "fizyr":
            metadata = convert_fizyr(
                args.model_in, args.model_out, classes=args.classes, keras_resnet=args.keras_resnet
            )
        else:
            metadata = convert_torchvision(
                args.model_in,
                args.model_out,
                arch=args.arch,
                classes=args.classes,
                bn_epsilon=args.bn_eps,
            )
    except (FileNotFoundError, ValueError) as e:  # ConversionError, PthError
        if debugging():  # --debug: the traceback, not the message
            raise
        print(f"retinanet-convert: error: {e}", file=sys.stderr)
        return 2
    print(
        f"wrote {args.model_out}: {metadata['variant']['name']} {metadata['backbone']}, "
        f"{metadata['num_classes']} classes, converted in {metadata['seconds']:.1f} s. "
        f"Try: retinanet-predict {args.model_out} IMAGE"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
