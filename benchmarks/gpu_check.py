"""One framework's half of ``gpu_check.sh``: training and inference img/s and peak memory.

    python benchmarks/gpu_check.py ours [--mixed-precision] [--size 800x1333] [--batches 8 16]
    python benchmarks/gpu_check.py torchvision [...]

``ours`` runs on the Keras backend in ``KERAS_BACKEND`` (JAX on the GPU machine, which has
no TensorFlow); ``torchvision`` needs torch and torchvision. Both train the same model
(ResNet50-FPN RetinaNet, random weights, 9 anchors, focal + smooth L1 / L1 losses) on a fixed
synthetic batch of 4 boxes per image, and infer with their own NMS. Prints one JSON line per
measurement, ``RESULT {...}``; ``gpu_check.sh`` collects them into a table.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

NUM_CLASSES = 20


def synthetic_boxes(rng: Any, batch: int, height: int, width: int) -> list[Any]:
    """4 boxes per image, 10%..40% of the image side, inside it: ``(4, 4)`` x1, y1, x2, y2."""
    import numpy as np

    boxes = []
    for _ in range(batch):
        size = rng.uniform(0.1, 0.4, (4, 2)) * [width, height]
        corner = rng.uniform(0, 1, (4, 2)) * ([width, height] - size)
        boxes.append(np.concatenate([corner, corner + size], axis=1).astype("float32"))
    return boxes


def timed_steps(step: Any, sync: Any, warmup: int, steps: int) -> float:
    """Seconds per call of ``step`` after ``warmup`` calls; ``sync`` waits for the device."""
    for _ in range(warmup):
        step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return (time.perf_counter() - start) / steps


def run_ours(args: argparse.Namespace) -> list[dict]:
    import keras
    import numpy as np

    from keras_retinanet import models
    from keras_retinanet.model.anchors import anchors_for_shape
    from keras_retinanet.model.targets import anchor_targets_bbox
    from keras_retinanet.training.build import compile_model

    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    backend = keras.backend.backend()
    height, width = args.height, args.width
    rng = np.random.default_rng(0)
    results = []
    keras.utils.set_random_seed(0)
    model = models.retinanet_model(NUM_CLASSES, backbone=args.backbone, weights=None)
    model = compile_model(model, lr=1e-5)
    label = "ours" if args.backbone == "resnet50" else f"ours/{args.backbone}"
    anchors = anchors_for_shape((height, width, 3))
    for batch in args.batches:
        images = rng.uniform(-120, 150, (batch, height, width, 3)).astype("float32")
        annotations = [
            {"bboxes": b, "labels": rng.integers(0, NUM_CLASSES, len(b))}
            for b in synthetic_boxes(rng, batch, height, width)
        ]
        regression, classification = anchor_targets_bbox(
            anchors, [images[0].shape] * batch, annotations, NUM_CLASSES
        )
        targets = {"regression": regression, "classification": classification}
        seconds = timed_steps(
            lambda: model.train_on_batch(images, targets),  # noqa: B023
            lambda: None,  # train_on_batch returns host values: the step has finished
            args.warmup,
            args.steps,
        )
        results.append(_result(label, backend, args, "train", batch, seconds))
    inference = models.retinanet_box(model)
    for batch in args.inference_batches:
        images = rng.uniform(-120, 150, (batch, height, width, 3)).astype("float32")
        seconds = timed_steps(
            lambda: inference.predict_on_batch(images),  # noqa: B023
            lambda: None,
            args.warmup,
            args.steps,
        )
        results.append(_result(label, backend, args, "infer", batch, seconds))
    memory = _jax_peak_memory_gb() if backend == "jax" else None
    for result in results:
        result["peak_memory_gb"] = memory
    return results


def _jax_peak_memory_gb() -> float | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def run_torchvision(args: argparse.Namespace) -> list[dict]:
    import numpy as np
    import torch
    from torchvision.models.detection import retinanet_resnet50_fpn

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    # min_size/max_size equal to the batch's size: torchvision's transform does not resize.
    model = retinanet_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES,
        min_size=min(args.height, args.width),
        max_size=max(args.height, args.width),
    ).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(enabled=args.mixed_precision and device.type == "cuda")
    rng = np.random.default_rng(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    results = []
    for batch in args.batches:
        images = torch.rand(batch, 3, args.height, args.width, device=device)
        targets = [
            {
                "boxes": torch.as_tensor(b, device=device),
                "labels": torch.as_tensor(rng.integers(0, NUM_CLASSES, len(b)), device=device),
            }
            for b in synthetic_boxes(rng, batch, args.height, args.width)
        ]
        model.train()

        def step() -> None:
            with torch.autocast(device.type, enabled=args.mixed_precision):
                losses = model(list(images), targets)  # noqa: B023
                loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        seconds = timed_steps(step, sync, args.warmup, args.steps)
        results.append(_result("torchvision", "torch", args, "train", batch, seconds))
    model.eval()
    for batch in args.inference_batches:
        images = torch.rand(batch, 3, args.height, args.width, device=device)

        def infer() -> None:
            with torch.no_grad(), torch.autocast(device.type, enabled=args.mixed_precision):
                model(list(images))  # noqa: B023

        seconds = timed_steps(infer, sync, args.warmup, args.steps)
        results.append(_result("torchvision", "torch", args, "infer", batch, seconds))
    memory = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    for result in results:
        result["peak_memory_gb"] = memory
    return results


def _result(model: str, backend: str, args: Any, task: str, batch: int, seconds: float) -> dict:
    return {
        "model": model,
        "backend": backend,
        "mixed_precision": bool(args.mixed_precision),
        "task": task,
        "size": f"{args.height}x{args.width}",
        "batch": batch,
        "seconds": seconds,
        "images_per_second": batch / seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", choices=("ours", "torchvision"))
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument(
        "--size", default="800x1344", help="HEIGHTxWIDTH (800x1333 padded to 128s, as both pad)"
    )
    parser.add_argument("--batches", type=int, nargs="+", default=[8, 16], help="training")
    parser.add_argument("--inference-batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--backbone", default="resnet50", help="ours: a backbone preset")
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    args.height, args.width = (int(v) for v in args.size.lower().split("x"))
    run = run_ours if args.framework == "ours" else run_torchvision
    for result in run(args):
        print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
