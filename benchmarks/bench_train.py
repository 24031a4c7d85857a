"""Training step time of our RetinaNet against KerasHub's ``RetinaNetObjectDetector``.

Both are ResNet50-FPN RetinaNets with random weights and 20 classes, trained with their own
``fit`` on the TensorFlow backend, on the same random images and boxes, with Adam
(lr 1e-5, clipnorm 0.001) and the same kind of losses where they match: focal loss
(alpha 0.25, gamma 2) on the classes, smooth L1 (sigma 3) / Huber (delta 1/9, the same curve
up to a factor 9) on the boxes::

    python benchmarks/bench_train.py                       # 512x512, batch 1 and 2
    python benchmarks/bench_train.py --runs 2 --warmup 1 --sizes 128 --batches 1

Each (model, size, batch) runs in a fresh subprocess. One batch is repeated through a
``tf.data`` pipeline, so the input costs nothing; a callback times every step. The first step
(tracing and graph building) is reported on its own; the median and interquartile range are
over ``--runs`` steps after ``--warmup`` further steps, and divided by the batch size.

Where the work differs: our anchor targets are assigned in the data loader
(``anchor_targets_bbox``, NumPy, outside the step; its time per image is reported in its own
column), KerasHub assigns them inside the training step (its ``RetinaNetLabelEncoder``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from bench_inference import (  # noqa: E402 - after the path set-up above
    build_kerashub_detector,
    current_rss_mb,
    fmt,
    in_rounds,
    library_versions,
    load_average,
    machine_description,
    merge_rounds,
    parse_case,
    peak_rss_mb,
    round_ratio_range,
    run_workers,
    summarise,
)
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

MODELS = ("ours", "kerashub")
LEARNING_RATE = 1e-5  # retinanet-train's default (fizyr's), with its clipnorm
CLIPNORM = 0.001


def random_annotations(rng: Any, batch: int, height: int, width: int, count: int, classes: int):
    """Per image ``count`` boxes of 32..256 pixels inside the image, random labels."""
    import numpy as np

    annotations = []
    for _ in range(batch):
        side = rng.uniform(32, min(256, height, width) - 1, size=(count, 2))
        x1 = rng.uniform(0, width - side[:, 0])
        y1 = rng.uniform(0, height - side[:, 1])
        boxes = np.stack([x1, y1, x1 + side[:, 0], y1 + side[:, 1]], axis=1).astype("float32")
        labels = rng.integers(0, classes, size=count)
        annotations.append({"bboxes": boxes, "labels": labels})
    return annotations


class StepTimer:
    """A Keras callback (built lazily) recording the wall time of every training step."""

    def __new__(cls) -> Any:
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []
                self._start = 0.0

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self._start = time.perf_counter()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - self._start)

        return _Timer()


def train_worker(spec: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_retinanet import models, training
    from keras_retinanet.model import anchors as anchors_lib
    from keras_retinanet.model import targets as targets_lib

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    batch, height, width = spec["batch"], spec["height"], spec["width"]
    classes = spec["num_classes"]
    images = rng.uniform(-120, 150, size=(batch, height, width, 3)).astype("float32")
    annotations = random_annotations(rng, batch, height, width, spec["boxes"], classes)
    steps = 1 + spec["warmup"] + spec["runs"]
    optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE, clipnorm=CLIPNORM)

    targets_seconds = None
    if spec["model"] == "ours":
        model = models.retinanet_model(classes, weights=None)
        training.compile_model(model, lr=LEARNING_RATE, clipnorm=CLIPNORM)
        anchors = anchors_lib.anchors_for_shape((height, width))
        start = time.perf_counter()
        regression, labels = targets_lib.anchor_targets_bbox(
            anchors, [images[i].shape for i in range(batch)], annotations, classes
        )
        targets_seconds = (time.perf_counter() - start) / batch
        targets = {"regression": regression, "classification": labels}
    else:
        model = build_kerashub_detector(classes, prior_probability=0.01)
        model.compile(
            optimizer=optimizer,
            box_loss=keras.losses.Huber(delta=1.0 / 9.0, reduction="sum"),
            classification_loss=keras.losses.BinaryFocalCrossentropy(
                apply_class_balancing=True,
                alpha=0.25,
                gamma=2.0,
                from_logits=True,
                reduction="sum",
            ),
        )
        targets = {
            "boxes": np.stack([a["bboxes"] for a in annotations]),
            "labels": np.stack([a["labels"] for a in annotations]).astype("int32"),
        }
    dataset = tf.data.Dataset.from_tensors((images, targets)).repeat(steps)
    rss_built = current_rss_mb()

    timer = StepTimer()
    history = model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer])
    times = timer.times
    timed_steps = times[1 + spec["warmup"] :]
    losses = history.history.get("loss", [float("nan")])
    return dict(
        spec,
        first=times[0],
        step=summarise(timed_steps),
        steps=times,
        timed_steps=timed_steps,
        targets_seconds=targets_seconds,
        rss_built=rss_built,
        rss_peak=peak_rss_mb(),
        loss=float(losses[-1]),
        params=int(model.count_params()),
    )


def print_table(results: list[dict]) -> None:
    print(
        "\n| batch | input | model | first step s | median step s | IQR s | s/image "
        "| targets s/image (loader) | peak RSS MB | +RSS MB | loss |"
    )
    print("|" + "---|" * 11)
    for r in results:
        head = f"| {r['batch']} | {r['height']}x{r['width']} | {r['label']}"
        if "error" in r:
            print(f"{head} | failed: {r['error']} |" + " |" * 8)
            continue
        step = r["step"]["median"]
        targets = r["targets_seconds"]
        print(
            f"{head} | {fmt(r['first'], 2)} | {fmt(step)} | {fmt(r['step']['iqr'])} "
            f"| {fmt(step / r['batch'])} | {fmt(targets) if targets is not None else 'in step'} "
            f"| {r['rss_peak']:.0f} | {r['rss_peak'] - r['rss_built']:.0f} | {r['loss']:.4g} |"
        )
    print("\nRatios of median step time per image (< 1: ours faster):\n")
    print("| batch | input | ours / KerasHub | per round | first step ours / KerasHub |")
    print("|---|---|---|---|---|")
    groups: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if "error" not in r:
            groups.setdefault((r["batch"], r["height"], r["width"]), {})[r["label"]] = r
    for (batch, height, width), group in groups.items():
        ours, theirs = group.get("ours"), group.get("KerasHub")
        if ours and theirs:
            ratio = ours["step"]["median"] / theirs["step"]["median"]
            first = ours["first"] / theirs["first"]
            print(
                f"| {batch} | {height}x{width} | {ratio:.2f} | {round_ratio_range(ours, theirs)} "
                f"| {first:.2f} |"
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["512x512"], help="HEIGHTxWIDTH or SIDE")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--runs", type=int, default=10, help="timed steps after warm-up")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps after the first")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="run every (model, case) process this many times, the models' order alternating; "
        "the timed steps of all rounds are pooled, the first steps' median is reported",
    )
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--boxes", type=int, default=3, help="ground-truth boxes per image")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    if args.worker:
        print("RESULT " + json.dumps(train_worker(json.loads(args.worker))), flush=True)
        return
    for size in args.sizes:
        _, height, width = parse_case(size)
        if height % 32 or width % 32:
            raise SystemExit(f"--sizes {size}: KerasHub's FPN needs multiples of 32")
    specs = []
    for size in args.sizes:
        _, height, width = parse_case(size)
        for batch in args.batches:
            for model in args.models:
                label = "ours" if model == "ours" else "KerasHub"
                specs.append(
                    dict(
                        title=f"{label}, batch {batch}, {height}x{width}",
                        model=model,
                        label=label,
                        batch=batch,
                        height=height,
                        width=width,
                        num_classes=args.num_classes,
                        boxes=args.boxes,
                        runs=args.runs,
                        warmup=args.warmup,
                    )
                )
    load_before = load_average()
    results = merge_rounds(
        run_workers(__file__, in_rounds(specs, args.rounds), "train"), {"timed_steps": "step"}
    )
    print(f"\nmachine: {machine_description()}")
    print(f"python {platform.python_version()}, {library_versions()}")
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {load_average()}")
    print(
        f"{args.num_classes} classes, {args.boxes} boxes per image, Adam lr {LEARNING_RATE:g} "
        f"clipnorm {CLIPNORM:g}; {args.rounds} round(s) of {args.runs} timed steps after the "
        f"first and {args.warmup} warm-up steps, pooled; wall seconds per fit() step"
    )
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
