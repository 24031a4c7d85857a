"""``retinanet-demo``: the embedded default job, with no download.

Writes the synthetic shapes dataset, trains a RetinaNet on it, evaluates it (VOC mAP@0.5 on the
held-out split), and draws its detections, all under ``--output-dir``::

    retinanet-demo                     # 15 minutes of training, then evaluation
    retinanet-demo --minutes 3         # shorter
    retinanet-demo --backbone mobilenet_v3_large_lite   # more steps, higher mAP on a CPU
    python -m keras_retinanet.demo --weights imagenet   # faster learning when online
"""

from __future__ import annotations

import argparse
import json
import os
import warnings
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from keras_retinanet.datasets.shapes import write_shapes_dataset
from keras_retinanet.errors import DEBUG_HELP, run_command
from keras_retinanet.evaluation.runner import evaluate
from keras_retinanet.inference import detect
from keras_retinanet.model import retinanet as models
from keras_retinanet.model.backbones import BACKBONES
from keras_retinanet.preprocessing.voc import PascalVocGenerator
from keras_retinanet.training import TrainConfig, train
from keras_retinanet.visualization import draw_annotations, draw_detections

# Demo defaults, sized for a laptop CPU: small images (160 px: shapes of 28-72 px sit on the
# P3..P5 anchors, and a step costs 40% of one at 256 px), batch 4, and a larger learning rate
# than the 1e-5 used from ImageNet weights because the backbone starts from random weights.
# On 2 cores this reaches VOC mAP@0.5 ~0.5 in 20 minutes (benchmarks/bench_train_shapes.py).
# No per-variable clipnorm: retinanet-train's 0.001 (fizyr's, for fine-tuning) shrinks each
# gradient element to near Adam's epsilon (1e-7), which damps the updates of a network that
# has everything to learn.
DEMO_IMAGE_SIDE = 160
DEMO_LR = 1e-4
DEMO_CLIPNORM = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="retinanet-demo",
        description="Train and evaluate a RetinaNet on a synthetic shapes dataset (no download).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument("--output-dir", default="demo_output")
    parser.add_argument("--minutes", type=float, default=15.0, help="training time budget")
    parser.add_argument("--epochs", type=int, default=100, help="upper bound on epochs")
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=DEMO_LR)
    parser.add_argument(
        "--clipnorm", type=float, default=DEMO_CLIPNORM, help="per-variable gradient clipping"
    )
    parser.add_argument("--image-side", type=int, default=DEMO_IMAGE_SIDE)
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=40)
    parser.add_argument(
        "--backbone",
        default="resnet50",
        choices=sorted(BACKBONES),
        metavar="NAME",
        help="a backbone preset (see retinanet-train --help); the _lite ones train many more "
        "steps in the same minutes on a CPU (benchmarks/README.md, issue #27)",
    )
    parser.add_argument(
        "--weights",
        default="none",
        help="backbone weights: none (offline), imagenet (downloads ~95 MB), or a .h5 path",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser


def run_demo(args: argparse.Namespace) -> dict:
    """Write the data, train, evaluate, draw. Returns a summary dict (also written as JSON)."""

    output_dir = os.path.abspath(args.output_dir)
    # The dataset is written at the training size; shapes span 12%..45% of the image side but
    # never less than 28 px, so the smallest anchors (32 px) still match them.
    side = args.image_side
    data_dir = write_shapes_dataset(
        os.path.join(output_dir, "shapes"),
        num_train=args.num_train,
        num_test=args.num_test,
        image_size=(side, side),
        shape_size=(max(28, round(0.12 * side)), max(40, round(0.45 * side))),
        seed=args.seed,
    )
    classes_file = os.path.join(data_dir, "classes.txt")
    config = TrainConfig(
        dataset={
            "type": "voc",
            "data_dir": str(data_dir),
            "train_set": "trainval",
            "val_set": "test",
            "classes": classes_file,
        },
        backbone=args.backbone,
        weights=None if args.weights.lower() == "none" else args.weights,
        batch_size=args.batch_size,
        epochs=args.epochs,
        steps=args.steps,
        lr=args.lr,
        clipnorm=args.clipnorm,
        image_min_side=args.image_side,
        image_max_side=args.image_side,
        random_transform=True,
        snapshot_path=os.path.join(output_dir, "snapshots"),
        keep_snapshots=2,
        seed=args.seed,
        max_minutes=args.minutes,
        verbose=0 if args.quiet else 1,
    )
    result = train(config)

    snapshot = result["best_snapshot"] or result["last_snapshot"]
    prediction_model = models.load_model(snapshot, convert=True)
    test_generator = PascalVocGenerator(
        str(data_dir),
        "test",
        classes=classes_file,
        shuffle=False,
        image_min_side=args.image_side,
        image_max_side=args.image_side,
    )
    evaluation = evaluate(test_generator, prediction_model)

    images = [test_generator.load_image(i) for i in range(min(8, test_generator.size()))]
    found = detect(prediction_model, images, args.image_side, args.image_side)
    annotations = [test_generator.load_annotations(i) for i in range(len(images))]
    picture = detections_picture(
        images, annotations, found, test_generator.label_to_name, args.image_side
    )
    detections_png = os.path.join(output_dir, "detections.png")
    cv2.imwrite(detections_png, picture)
    # The evaluation kept every test image's detections above 0.05; the drawn ones have all.
    best_score = max(
        (float(d.scores.max()) for d in [*evaluation.detections, *found] if len(d)), default=0.0
    )

    summary = {
        "backbone": args.backbone,
        "mAP": evaluation.mean_average_precision,
        "average_precisions": {c.name: c.average_precision for c in evaluation.classes},
        "epochs": result["epochs_done"],
        "snapshot": snapshot,
        "detections_image": detections_png,
        "best_score": best_score,
        "training_log_plot": os.path.join(config.snapshot_path, "training_log.png"),
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


DRAW_SCORE = 0.5  # detections at least this sure are all drawn; below it, each image's best


def detections_picture(
    images: list,
    annotations: list[dict],
    detections: list,
    label_to_name: Any,
    side: int,
    columns: int = 4,
) -> np.ndarray:
    """One picture of test images: ground truth in green, and the model's detections.

    Each image shows every detection scoring at least :data:`DRAW_SCORE` and, whatever their
    scores, its best ones up to as many as it has ground-truth boxes, so an early model's
    low-scoring guesses are visible rather than an image of ground truth alone. A line above
    each tile gives its best score; a legend under the tiles says which boxes are which.

    Args:
        images: BGR uint8 images.
        annotations: their ground truth (``bboxes``, ``labels``) in original pixels.
        detections: their :class:`~keras_retinanet.inference.Detections`.
        label_to_name: class names.
        side: each tile is ``side x side``.
        columns: tiles per row.

    Returns:
        The BGR uint8 picture.
    """

    tiles = []
    for image, truth, found in zip(images, annotations, detections):
        image = image.copy()
        draw_annotations(image, truth, label_to_name=label_to_name, color=(0, 255, 0))
        shown = max(1, len(truth["bboxes"]), int((found.scores >= DRAW_SCORE).sum()))
        order = np.argsort(-found.scores, kind="stable")[:shown]
        draw_detections(
            image,
            found.boxes[order],
            found.scores[order],
            found.labels[order],
            label_to_name=label_to_name,
            score_threshold=0.0,
        )
        tile = cv2.resize(image, (side, side))
        best = f"best score {found.scores.max():.2f}" if len(found) else "no detection"
        header = np.full((16, side, 3), 255, np.uint8)
        cv2.putText(header, best, (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1)
        tiles.append(cv2.vconcat([header, tile]))
    while len(tiles) % columns:
        tiles.append(np.full((side + 16, side, 3), 255, np.uint8))
    rows = [cv2.hconcat(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    grid = cv2.vconcat(rows)
    legend = np.full((40, grid.shape[1], 3), 255, np.uint8)
    lines = (
        "green: ground truth (class name)",
        f"coloured 'class: score': detections >= {DRAW_SCORE}, and each image's best ones",
    )
    for row, text in enumerate(lines):
        cv2.putText(legend, text, (4, 15 + 18 * row), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1)
    return cv2.vconcat([grid, legend])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``retinanet-demo``: :func:`_main`, errors as one line
    (:func:`keras_retinanet.errors.run_command`; ``--debug`` shows the traceback)."""
    return run_command("retinanet-demo", _main, argv)


def _main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.weights == "imagenet":
        warnings.warn("downloading ImageNet weights (needs internet)", stacklevel=1)
    summary = run_demo(args)
    print(
        f"\nshapes demo ({summary['backbone']}): mAP@0.5 = {summary['mAP']:.3f} after "
        f"{summary['epochs']} epochs"
    )
    for name, ap in summary["average_precisions"].items():
        print(f"  {name:<10} AP {ap:.3f}")
    print(f"best detection score on the test images: {summary['best_score']:.3f}")
    print(f"detections drawn: {summary['detections_image']} (green: ground truth)")
    print(f"loss curve:       {summary['training_log_plot']}")


if __name__ == "__main__":
    main()
