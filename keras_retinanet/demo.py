"""``retinanet-demo``: the embedded default job, with no download.

Writes the synthetic shapes dataset, trains a RetinaNet on it, evaluates it (VOC mAP@0.5 on the
held-out split), and draws its detections, all under ``--output-dir``::

    retinanet-demo                     # 15 minutes of training, then evaluation
    retinanet-demo --minutes 3         # shorter
    python -m keras_retinanet.demo --weights imagenet   # faster learning when online
"""

from __future__ import annotations

import argparse
import json
import os
import warnings

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
        "--weights",
        default="none",
        help="backbone weights: none (offline), imagenet (downloads ~95 MB), or a .h5 path",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    return parser


def run_demo(args: argparse.Namespace) -> dict:
    """Write the data, train, evaluate, draw. Returns a summary dict (also written as JSON)."""
    import cv2

    from keras_retinanet import models
    from keras_retinanet.datasets.shapes import write_shapes_dataset
    from keras_retinanet.evaluation.runner import evaluate
    from keras_retinanet.inference import detect
    from keras_retinanet.preprocessing.voc import PascalVocGenerator
    from keras_retinanet.training import TrainConfig, train
    from keras_retinanet.visualization import draw_annotations, draw_detections

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
    tiles = []
    for index, (image, detections) in enumerate(zip(images, found)):
        image = image.copy()
        draw_annotations(
            image,
            test_generator.load_annotations(index),
            label_to_name=test_generator.label_to_name,
            color=(0, 255, 0),
        )
        draw_detections(
            image,
            detections.boxes,
            detections.scores,
            detections.labels,
            label_to_name=test_generator.label_to_name,
            score_threshold=0.5,
        )
        tiles.append(cv2.resize(image, (args.image_side, args.image_side)))
    rows = [cv2.hconcat(tiles[i : i + 4]) for i in range(0, len(tiles) - len(tiles) % 4, 4)]
    detections_png = os.path.join(output_dir, "detections.png")
    cv2.imwrite(detections_png, cv2.vconcat(rows) if rows else tiles[0])

    summary = {
        "mAP": evaluation.mean_average_precision,
        "average_precisions": {c.name: c.average_precision for c in evaluation.classes},
        "epochs": result["epochs_done"],
        "snapshot": snapshot,
        "detections_image": detections_png,
        "training_log_plot": os.path.join(config.snapshot_path, "training_log.png"),
    }
    with open(os.path.join(output_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.weights == "imagenet":
        warnings.warn("downloading ImageNet weights (needs internet)", stacklevel=1)
    summary = run_demo(args)
    print(f"\nshapes demo: mAP@0.5 = {summary['mAP']:.3f} after {summary['epochs']} epochs")
    for name, ap in summary["average_precisions"].items():
        print(f"  {name:<10} AP {ap:.3f}")
    print(f"detections drawn: {summary['detections_image']}")
    print(f"loss curve:       {summary['training_log_plot']}")


if __name__ == "__main__":
    main()
