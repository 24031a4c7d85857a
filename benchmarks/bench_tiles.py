"""Tiled vs whole-photo detection of small objects in a large photo (issue #26).

Trains our RetinaNet (random weights, ``--anchors auto``) on 256 x 256 shapes images whose
shapes are 16-28 px, then detects on one synthetic 3000 x 2000 photo drawn the same way with
hundreds of 18-24 px shapes:

* **whole, training size**: the photo resized to the training side (256 px): what
  ``retinanet-predict`` does with a model trained small;
* **whole, full size**: the photo at its own pixels (``--image-min-side 2000``), where the
  shapes have their training size but the network runs on 6 million pixels at once;
* **tiles**: ``--tile 256 256 --tile-overlap 0.2``, each tile at its own pixels.

Prints recall and precision at IoU 0.5 (class-aware; score > 0.3, the detections a user
would keep), detections, duplicates (pairs of same-class detections with IoU > 0.5) and
seconds, with the CPU.

    python benchmarks/bench_tiles.py --steps 600 --output-dir /tmp/bench_tiles
    python benchmarks/bench_tiles.py --snapshot /tmp/bench_tiles/snapshots/....keras
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

SIDE = 256
SCORE = 0.3
LOW_SCORE = 0.05  # the evaluation's threshold: what the model finds at all


def train(args: argparse.Namespace) -> str:
    from keras_retinanet.datasets.shapes import write_shapes_dataset
    from keras_retinanet.training import TrainConfig, train

    data = write_shapes_dataset(
        os.path.join(args.output_dir, "shapes_small"), num_train=300, num_test=20,
        image_size=(SIDE, SIDE), shapes_per_image=(4, 12), shape_size=(16, 28), seed=0,
    )  # fmt: skip
    config = TrainConfig(
        dataset={"type": "voc", "data_dir": str(data), "train_set": "trainval",
                 "val_set": "test", "classes": str(data / "classes.txt")},
        weights=None, batch_size=2, epochs=max(1, args.steps // 100), steps=min(100, args.steps),
        lr=1e-4,
        clipnorm=None, image_min_side=SIDE, image_max_side=SIDE, random_transform=True,
        snapshot_path=os.path.join(args.output_dir, "snapshots"), seed=0, anchors="auto",
        verbose=1,
    )  # fmt: skip
    result = train(config)
    return result["best_snapshot"] or result["last_snapshot"]


def photo(seed: int = 1):
    from keras_retinanet.datasets.shapes import SHAPE_CLASSES, _draw_image

    rng = np.random.default_rng(seed)
    image, objects = _draw_image(rng, 2000, 3000, (400, 400), 18, 24)
    boxes = np.array([[x1, y1, x2 + 1, y2 + 1] for _, (x1, y1, x2, y2) in objects], "f4")
    labels = np.array([SHAPE_CLASSES.index(kind) for kind, _ in objects])
    return image, boxes, labels


def scores(found, boxes, labels, score: float = SCORE) -> dict:
    from keras_retinanet.model.boxes import compute_overlap

    keep = found.scores > score
    found_boxes, found_labels = found.boxes[keep], found.labels[keep]
    if not len(found_boxes):
        return {"recall": 0.0, "precision": 1.0, "detections": 0, "duplicates": 0}
    iou = compute_overlap(boxes, found_boxes)
    iou[labels[:, None] != found_labels[None, :]] = 0
    matched = iou.max(axis=0) >= 0.5
    self_iou = compute_overlap(found_boxes, found_boxes)
    same = found_labels[:, None] == found_labels[None, :]
    duplicates = int(np.triu((self_iou > 0.5) & same, k=1).sum())
    return {
        "recall": float((iou.max(axis=1) >= 0.5).mean()),
        "precision": float(matched.mean()),
        "detections": int(keep.sum()),
        "duplicates": duplicates,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--snapshot", help="a trained snapshot (skips the training)")
    parser.add_argument("--steps", type=int, default=600, help="training steps (batch 2)")
    parser.add_argument("--output-dir", default="/tmp/bench_tiles")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each mode")
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)
    snapshot = args.snapshot or train(args)

    from keras_retinanet import models
    from keras_retinanet.inference import detect

    model = models.load_model(snapshot, convert=True, score_threshold=0.05, max_detections=1000)
    image, boxes, labels = photo()
    modes = {
        f"whole, resized to {SIDE} px": dict(min_side=SIDE, max_side=3000),
        "whole, full size (2000 px)": dict(min_side=2000, max_side=3000),
        f"tiles {SIDE}x{SIDE}, overlap 0.2": dict(min_side=SIDE, max_side=SIDE,
                                                 tile=(SIDE, SIDE), tile_overlap=0.2),
    }  # fmt: skip
    rows = []
    detect(model, [image[:SIDE, :SIDE]], SIDE, SIDE)  # build the graph once
    for name, options in modes.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            found = detect(model, [image], **options)[0]
            times.append(time.perf_counter() - start)
        low = scores(found, boxes, labels, LOW_SCORE)["recall"]
        rows.append((name, scores(found, boxes, labels), low, min(times)))
    print(f"\nsnapshot {snapshot}; photo 3000 x 2000, {len(boxes)} shapes of 18-24 px; "
          f"detections scoring > {SCORE}, IoU 0.5")  # fmt: skip
    print(
        f"| mode | recall | precision | detections | duplicates | recall > {LOW_SCORE} | "
        f"seconds (best of {args.repeats}) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, s, low, seconds in rows:
        print(
            f"| {name} | {s['recall']:.3f} | {s['precision']:.3f} | {s['detections']} | "
            f"{s['duplicates']} | {low:.3f} | {seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
