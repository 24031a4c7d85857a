"""Accuracy benchmark: one fixed training run on a VOC-layout dataset, then VOC mAP@0.5.

Trains a ResNet50 RetinaNet from random weights (nothing is downloaded) for a fixed number of
steps with a fixed seed, then scores the test split with the devkit-exact VOC evaluator
(11-point and all-point AP) and counts the detections above 0.05 that lie in the padding of
the network input (centre below or right of the resized image). Running it on two versions
of the package (``PYTHONPATH=/path/to/other/checkout``) with the same arguments gives a
before/after comparison of the same run; the first line says which package was imported.

    python benchmarks/bench_accuracy.py ../shared/data/raccoon --steps 300 --json out.json
    python benchmarks/bench_accuracy.py --table raccoon_before.json raccoon_after.json

The numbers are those of a short CPU run from random weights: they compare code versions on
the same budget, they are not what a trained detector reaches.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)


def padding_detections(model, generator, min_side, max_side, score_threshold=0.05) -> dict:
    """Detections above ``score_threshold`` whose centre lies in the padding, and zero-area
    boxes after clipping to the image, over the generator's images."""
    import numpy as np

    from keras_retinanet import inference

    in_padding = total = zero_area = 0
    for index in range(generator.size()):
        image = generator.load_image(index)
        batch, scales = inference.prepare_batch([image], min_side, max_side)
        boxes, scores, labels = (np.asarray(x)[0] for x in model.predict_on_batch(batch))
        keep = (labels >= 0) & (scores > score_threshold)
        boxes = boxes[keep]
        height, width = (round(s * scales[0]) for s in image.shape[:2])
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        in_padding += int(((centre_x >= width) | (centre_y >= height)).sum())
        total += len(boxes)
        clipped = boxes / scales[0]
        clipped[:, [0, 2]] = np.clip(clipped[:, [0, 2]], 0, image.shape[1])
        clipped[:, [1, 3]] = np.clip(clipped[:, [1, 3]], 0, image.shape[0])
        zero_area += int(
            ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])).sum()
        )
    return {"detections": total, "in_padding": in_padding, "zero_area_after_clip": zero_area}


def run(args: argparse.Namespace) -> dict:
    import keras

    import keras_retinanet
    from keras_retinanet import models
    from keras_retinanet.evaluation import runner
    from keras_retinanet.evaluation.voc import average_precision, mean_average_precision
    from keras_retinanet.preprocessing.voc import PascalVocGenerator
    from keras_retinanet.training import TrainConfig, train

    print(f"package: {os.path.dirname(keras_retinanet.__file__)}", flush=True)
    classes = args.classes or os.path.join(args.data, "classes.txt")
    dataset = {
        "type": "voc",
        "data_dir": os.path.abspath(args.data),
        "train_set": args.train_set,
        "val_set": args.test_set,
        "classes": classes,
    }
    with tempfile.TemporaryDirectory() as scratch:
        config = TrainConfig(
            dataset=dataset,
            weights=None,
            batch_size=args.batch_size,
            epochs=args.epochs,
            steps=args.steps,
            lr=args.lr,
            clipnorm=args.clipnorm,
            image_min_side=args.image_min_side,
            image_max_side=args.image_max_side,
            random_transform=args.random_transform,
            snapshot_path=scratch,
            evaluation=False,
            seed=args.seed,
            verbose=2,
        )
        start = time.perf_counter()
        result = train(config)
        train_seconds = time.perf_counter() - start
    model = result["model"]
    if args.save_model:  # to score the same weights again (another evaluator, other settings)
        anchors = result["anchor_parameters"].to_dict()
        models.save_model(model, args.save_model, {"anchor_parameters": anchors})
    generator = PascalVocGenerator(
        args.data,
        args.test_set,
        classes=classes,
        shuffle=False,
        image_min_side=args.image_min_side,
        image_max_side=args.image_max_side,
    )
    inference_model = models.retinanet_box(model, anchor_parameters=result["anchor_parameters"])
    evaluation = runner.evaluate(generator, inference_model, metric="voc07", verbose=0)
    per_class = {}
    for c in evaluation.classes:
        all_point = average_precision(c.recall, c.precision, use_07_metric=False)
        per_class[c.name] = {
            "voc07": c.average_precision,
            "all_point": float(all_point) if c.num_annotations else 0.0,
            "boxes": c.num_annotations,
        }
    all_point_map = mean_average_precision(
        {i: (v["all_point"], v["boxes"]) for i, v in enumerate(per_class.values())}
    )
    padding = padding_detections(
        inference_model, generator, args.image_min_side, args.image_max_side
    )
    return {
        "dataset": os.path.basename(os.path.normpath(args.data)),
        "package": os.path.dirname(keras_retinanet.__file__),
        "label": args.label,
        "keras": keras.__version__,
        "steps": args.steps * args.epochs,
        "batch_size": args.batch_size,
        "image_side": [args.image_min_side, args.image_max_side],
        "seed": args.seed,
        "lr": args.lr,
        "train_seconds": round(train_seconds, 1),
        "final_loss": result["history"]["loss"][-1],
        "mAP_voc07": evaluation.mean_average_precision,
        "mAP_all_point": all_point_map,
        "per_class": per_class,
        **padding,
    }


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'dataset':<10} {'run':<10} {'steps':>5} {'train s':>8} {'loss':>7} "
        f"{'mAP07':>6} {'mAPall':>6} {'dets':>6} {'in pad':>6} {'0-area':>6}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['dataset']:<10} {r.get('label') or '':<10} {r['steps']:>5} "
            f"{r['train_seconds']:>8.0f} {r['final_loss']:>7.3f} {r['mAP_voc07']:>6.3f} "
            f"{r['mAP_all_point']:>6.3f} {r['detections']:>6} {r['in_padding']:>6} "
            f"{r['zero_area_after_clip']:>6}"
        )
    for r in rows:
        aps = ", ".join(f"{k} {v['voc07']:.3f}" for k, v in r["per_class"].items())
        print(f"{r['dataset']} {r.get('label') or ''}: per-class AP (11-pt): {aps}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", nargs="?", help="a VOC-layout folder (classes.txt inside)")
    parser.add_argument("--classes", help="class names file (default DATA/classes.txt)")
    parser.add_argument("--train-set", default="trainval")
    parser.add_argument("--test-set", default="test")
    parser.add_argument("--steps", type=int, default=300, help="steps per epoch")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--clipnorm", type=float, default=None)
    parser.add_argument("--image-min-side", type=int, default=256)
    parser.add_argument("--image-max-side", type=int, default=352)
    parser.add_argument("--random-transform", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--label", default="", help="name of this run in the table")
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--save-model", help="also save the trained model (.keras) here")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the table of results")
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    if args.table:
        print_table([json.load(open(path)) for path in args.table])
        return
    if not args.data:
        parser.error("give a dataset folder, or --table with result files")
    row = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(row, f, indent=1)
    print_table([row])


if __name__ == "__main__":
    sys.exit(main())
