"""``retinanet-train``: train a RetinaNet on a VOC-layout, CSV or COCO dataset.

Examples::

    retinanet-train voc /data/VOC2007
    retinanet-train --weights none --epochs 1 --steps 10 voc ./shapes --classes ./shapes/classes.txt
    retinanet-train csv train.csv classes.csv --val-annotations val.csv
    retinanet-train --snapshot snapshots/resnet50_voc_03.keras voc /data/VOC2007   # resume
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

import keras

from keras_retinanet.cli.foreign import snapshot_or_converted
from keras_retinanet.errors import DEBUG_HELP, debugging, run_command
from keras_retinanet.model.anchor_config import read_anchor_parameters
from keras_retinanet.model.backbones import BACKBONES
from keras_retinanet.preprocessing import voc, voc_layout
from keras_retinanet.training import TrainConfig, TrainingError, train
from keras_retinanet.training.config import DEFAULT_LR
from keras_retinanet.training.interrupt import TrainingInterrupted

# Every default below is TrainConfig's (the one place they are written).
DEFAULT = TrainConfig(dataset={})
# TrainConfig fields for Python callers only: no option sets them.
NOT_ON_THE_COMMAND_LINE = ("callbacks", "variant", "initial_weights")


def _checkpoint_every(text: str) -> tuple[float | None, int | None]:
    """``30`` or ``30m``: minutes; ``500steps``: steps; ``0`` or ``none``: off."""
    value = text.strip().lower()
    if value in ("0", "none", "off"):
        return None, None
    try:
        if value.endswith("steps"):
            steps = int(value[: -len("steps")])
            if steps < 1:
                raise ValueError
            return None, steps
        minutes = float(value[:-1] if value.endswith("m") else value)
    except ValueError:
        minutes = -1.0
    if minutes <= 0:
        raise argparse.ArgumentTypeError(
            f"give minutes (30, 30m), steps (500steps), or none; got {text!r}"
        )
    return minutes, None


def _int_at_least(minimum: int):
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _clipnorm(text: str) -> float | None:
    """A positive norm, or 'none' / 0 for no clipping."""
    if text.strip().lower() == "none":
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be > 0, or 0 / none for no clipping, got {text}")
    return value or None


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinanet-train",
        description="Train a RetinaNet object detector.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="dataset_type", required=True, metavar="DATASET")

    voc = subparsers.add_parser("voc", help="Pascal VOC layout (also custom VOC-layout data)")
    voc.add_argument(
        "data_dir",
        help="folder with Annotations/, JPEGImages/ (and ImageSets/Main/), or images with one "
        "XML beside each (LabelImg)",
    )
    voc.add_argument("--train-set", default="trainval")
    voc.add_argument("--val-set", default="test", help="'none' for no validation")
    voc.add_argument(
        "--classes",
        help="classes.txt (one name per line); default: DATA_DIR/classes.txt, else the names "
        "in the annotations (sorted), or the 20 VOC classes when those are the names",
    )
    voc.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="without ImageSets/Main/: share of the images held out for validation (seeded)",
    )

    csv_parser = subparsers.add_parser("csv", help="CSV annotations (path,x1,y1,x2,y2,class)")
    csv_parser.add_argument("annotations")
    csv_parser.add_argument("classes", help="CSV of class_name,id")
    csv_parser.add_argument("--val-annotations")

    coco = subparsers.add_parser("coco", help="COCO layout (annotations/instances_SET.json)")
    coco.add_argument("data_dir")
    coco.add_argument("--train-set", default="train2017")
    coco.add_argument("--val-set", default="val2017", help="'none' for no validation")

    parser.add_argument("--backbone", default=DEFAULT.backbone, choices=sorted(BACKBONES))
    parser.add_argument(
        "--weights",
        default=DEFAULT.weights,
        help="imagenet, none, a backbone .h5 weights file, or a snapshot of this package "
        "(trained here or made by retinanet-convert --from fizyr|torchvision; a fizyr .h5 is "
        "converted on the way) to fine-tune: "
        "its variant, backbone, FPN and box head are kept, the class head starts afresh for "
        "new classes",
    )
    parser.add_argument("--snapshot", help="resume from this training snapshot")
    parser.add_argument("--freeze-backbone", action="store_true")
    parser.add_argument("--batch-size", type=_positive_int, default=DEFAULT.batch_size)
    parser.add_argument("--epochs", type=_positive_int, default=DEFAULT.epochs)
    parser.add_argument("--steps", type=_positive_int, help="steps per epoch (default: all)")
    parser.add_argument(
        "--lr",
        type=float,
        default=None,
        help=f"Adam learning rate (default {DEFAULT_LR:g}; with --snapshot, the snapshot's, "
        "which the schedule may have lowered: --lr replaces it)",
    )
    parser.add_argument(
        "--clipnorm",
        type=_clipnorm,
        default=DEFAULT.clipnorm,
        help="clip each gradient to this norm; 'none' or 0 turns clipping off",
    )
    parser.add_argument("--image-min-side", type=_positive_int, default=DEFAULT.image_min_side)
    parser.add_argument("--image-max-side", type=_positive_int, default=DEFAULT.image_max_side)
    parser.add_argument("--random-transform", action="store_true", help="flip/scale/colour")
    parser.add_argument("--snapshot-path", default=DEFAULT.snapshot_path)
    parser.add_argument(
        "--snapshot-format", choices=("keras", "h5"), default=DEFAULT.snapshot_format
    )
    parser.add_argument("--no-snapshots", action="store_true")
    parser.add_argument(
        "--keep-snapshots",
        type=_non_negative_int,
        default=DEFAULT.keep_snapshots,
        help="keep the newest N epoch snapshots (the newest with the optimizer state, the "
        "others and _best with the weights only); 0 keeps every epoch's",
    )
    parser.add_argument("--tensorboard-dir")
    parser.add_argument("--no-evaluation", action="store_true", help="no per-epoch mAP")
    parser.add_argument(
        "--metric",
        choices=("voc07", "voc12", "coco"),
        help="the per-epoch evaluation's metric (default: coco for COCO data, voc12 for "
        "VOC2010+ folders, voc07 otherwise)",
    )
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        default=DEFAULT.workers,
        help="parallel batch loaders; 0 loads one batch at a time with nothing prefetched",
    )
    parser.add_argument(
        "--max-minutes",
        type=_positive_float,
        help="stop after this much wall-clock time (the epoch ends early, its snapshot and "
        "evaluation still happen)",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=_checkpoint_every,
        default=(DEFAULT.checkpoint_minutes, DEFAULT.checkpoint_steps),
        metavar="MINUTES|Nsteps",
        help="write a resumable snapshot mid-epoch this often (30, 30m, or 500steps; none: "
        "off), keeping only the newest; SIGTERM or Ctrl-C always writes one and stops",
    )
    parser.add_argument(
        "--batch-norm-batches",
        type=_non_negative_int,
        default=DEFAULT.batch_norm_batches,
        help="from random weights, re-estimate the backbone's BatchNormalization statistics "
        "over this many training batches at the end of each epoch (0: keep the moving "
        "averages); frozen BatchNormalization (pretrained weights) is never changed",
    )
    parser.add_argument("--multiprocessing", action="store_true")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--config", help="anchor parameters (.json or .ini; retinanet-anchors)")
    parser.add_argument(
        "--anchors",
        choices=("auto", "default"),
        default=DEFAULT.anchors,
        help="auto: fit the anchors to the training boxes when the defaults leave more than "
        "10%% of a class without a positive anchor (says so, stored in the snapshot); "
        "default: the standard anchors (default: %(default)s; --config overrides both)",
    )
    parser.add_argument("--skip-bad-images", action="store_true")
    parser.add_argument(
        "--multi-gpu",
        type=_positive_int,
        help="train on N devices of this machine (MirroredStrategy on TF, DataParallel on JAX)",
    )
    parser.add_argument(
        "--distribute",
        choices=("mirrored", "multi_worker", "data_parallel"),
        help="distribution strategy: mirrored (TF, this machine's devices), multi_worker "
        "(TF, several machines: --cluster and --task-index, or TF_CONFIG), data_parallel (JAX)",
    )
    parser.add_argument(
        "--cluster",
        type=_host_list,
        help="multi_worker: every machine's HOST:PORT, comma-separated, the chief first and "
        "the same list on every machine (implies --distribute multi_worker)",
    )
    parser.add_argument(
        "--task-index",
        type=int,
        help="multi_worker: this machine's position in --cluster (0 is the chief, which "
        "evaluates and writes the snapshots)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _host_list(value: str) -> list[str]:
    hosts = [host.strip() for host in value.split(",") if host.strip()]
    if not hosts:
        raise argparse.ArgumentTypeError("give at least one HOST:PORT")
    return hosts


def _none_if_none(value: str | None) -> str | None:
    return None if value is None or value.lower() == "none" else value


def voc_record(args: argparse.Namespace) -> dict:
    """The record of a VOC-style folder; says what was found where the user gave no split
    files or class list (classes read from the annotations are stored in the record)."""

    layout = voc_layout.find_layout(args.data_dir)
    classes = os.path.abspath(args.classes) if args.classes else None
    if classes is None:
        found, source = voc.default_classes(layout)
        if source == "annotations":
            classes = list(found)
            print(
                f"classes read from the annotations of {args.data_dir} ({len(classes)}): "
                f"{', '.join(classes)}; pass --classes FILE to choose their order"
            )
    if not layout.has_sets:
        ids = list(layout.annotations)
        parts = [
            len(voc_layout.split_ids(ids, name, args.val_fraction)) for name in ("train", "val")
        ]
        print(
            f"{args.data_dir} has no ImageSets/Main/: {parts[0]} images for training, "
            f"{parts[1]} for validation (seeded split, --val-fraction {args.val_fraction:g})"
        )
    return {
        "type": "voc",
        "data_dir": os.path.abspath(args.data_dir),
        "train_set": args.train_set,
        "val_set": _none_if_none(args.val_set),
        "classes": classes,
        "val_fraction": args.val_fraction,
        "split_seed": voc_layout.DEFAULT_SPLIT_SEED,
    }


def dataset_record(args: argparse.Namespace) -> dict:
    """The dataset record stored in snapshots, with absolute paths."""
    if args.dataset_type == "voc":
        return voc_record(args)
    if args.dataset_type == "csv":
        return {
            "type": "csv",
            "annotations": os.path.abspath(args.annotations),
            "classes": os.path.abspath(args.classes),
            "val_annotations": os.path.abspath(args.val_annotations)
            if args.val_annotations
            else None,
        }
    return {
        "type": "coco",
        "data_dir": os.path.abspath(args.data_dir),
        "train_set": args.train_set,
        "val_set": _none_if_none(args.val_set),
    }


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` the parsed arguments describe: each field from the option of
    its name, or from the options that derive it (``--no-snapshots``, ``--quiet``...)."""

    distribute = args.distribute
    if args.cluster and distribute is None:
        distribute = "multi_worker"
    if args.cluster and distribute != "multi_worker":
        raise ValueError(f"--cluster is for --distribute multi_worker, not {distribute}")
    if distribute == "multi_worker" and args.multi_gpu:
        raise ValueError(
            "--multi-gpu is for one machine; with multi_worker each machine trains on all its "
            "GPUs (choose them with CUDA_VISIBLE_DEVICES)"
        )
    if args.multi_gpu and args.multi_gpu > 1 and distribute is None:
        distribute = "data_parallel" if keras.backend.backend() == "jax" else "mirrored"
    derived = {
        "dataset": dataset_record(args),
        "weights": snapshot_or_converted(_none_if_none(args.weights), "retinanet-train"),
        "snapshot_path": None if args.no_snapshots else args.snapshot_path,
        "keep_snapshots": args.keep_snapshots or None,
        "evaluation": not args.no_evaluation,
        "anchor_parameters": read_anchor_parameters(args.config) if args.config else None,
        "distribute": distribute,
        "num_devices": args.multi_gpu,
        "verbose": 0 if args.quiet else 1,
        "checkpoint_minutes": args.checkpoint_every[0],
        "checkpoint_steps": args.checkpoint_every[1],
    }
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in derived:
            values[field.name] = derived[field.name]
        elif field.name not in NOT_ON_THE_COMMAND_LINE:
            # An option of the same name: a new TrainConfig field without one fails here,
            # and in tests/test_train_cli.py, instead of being silently left at its default.
            values[field.name] = getattr(args, field.name)
    return TrainConfig(**values)


def resume_command(argv: Sequence[str] | None, snapshot: str) -> str:
    """The command line that resumes this one from ``snapshot``: the same arguments, with
    ``--snapshot`` (given first, before the dataset's arguments) naming it."""
    words = list(sys.argv[1:] if argv is None else argv)
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "--snapshot":
            skip = True
        elif not word.startswith("--snapshot="):
            kept.append(word)
    return shlex.join(["retinanet-train", "--snapshot", snapshot, *kept])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``retinanet-train``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-train", _main, argv)


def _main(argv: list[str] | None = None) -> None:
    """Run ``retinanet-train``; exits with status 1 and a one-line message on a user-facing
    error (missing files, NaN loss, mismatched snapshot). The work is done by
    :func:`keras_retinanet.training.train`, which returns the history and snapshot paths."""
    args = build_parser().parse_args(argv)

    try:
        config = config_from_args(args)
        result = train(config)
    except TrainingInterrupted as e:
        print(f"retinanet-train: {e}", file=sys.stderr)
        if e.checkpoint:
            print(f"resume with: {resume_command(argv, e.checkpoint)}", file=sys.stderr)
        raise SystemExit(e.exit_status) from e
    except (TrainingError, FileNotFoundError, ValueError) as e:
        if debugging():
            raise
        print(f"retinanet-train: error: {e}", file=sys.stderr)
        raise SystemExit(1) from e
    if result["last_snapshot"]:
        print(f"last snapshot: {result['last_snapshot']}")
        print(f"best snapshot: {result['best_snapshot']}")


if __name__ == "__main__":
    main()
