"""Learning benchmark: ours vs KerasHub's and torchvision's RetinaNet, trained from scratch on
the same batches, scored by one evaluator.

Three ResNet50-FPN RetinaNets start from random weights (nothing is downloaded) and train on
identical batches: our generator (seeded) loads, augments (flip, zoom, shift, colour) and
resizes each training image once, and every model sees those pixels in that order, each in its
own input convention (ours: BGR minus the ImageNet mean; KerasHub and torchvision: RGB / 255
normalised by the ImageNet mean and std). Each then detects on the same resized test images,
and our devkit-exact VOC evaluator scores the detections in the original pixels.

- ours: ``keras_retinanet.training.train`` (what ``retinanet-train`` runs), TensorFlow;
- KerasHub: ``RetinaNetObjectDetector`` built from its classes, its ``compile()`` defaults
  (Adam 5e-5, Huber box loss, focal loss) and ``fit``; its anchor generator needs the input
  size in the graph, so its batches are padded to one shape that holds every image;
- torchvision: ``retinanet_resnet50_fpn(weights=None, weights_backbone=None)`` in its own
  environment (``TORCH_PYTHON``, default ``.venv-torch/bin/python``), trained as its detection
  reference recipe does: SGD momentum 0.9, weight decay 1e-4, lr 0.01 per 16 images scaled to
  the batch, linear warm-up from 0.001x.

    python benchmarks/bench_learning.py                          # bccd and raccoon, 2 seeds
    python benchmarks/bench_learning.py --quick                  # a 2-step smoke run, < 3 min
    python benchmarks/bench_learning.py --datasets ../shared/data/raccoon --steps 300 --seeds 0

Every model runs in a process of its own (peak memory is that process's); the table gives
mAP@0.5 (VOC07 11-point and all-point), per-class AP, steps, training time, img/s after the
first step, and then the ratio ours/peer of mAP@0.5 averaged over the seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
MODELS = ("ours", "ours_auto", "kerashub", "torchvision")  # ours: default anchors
MEAN_RGB, STD_RGB = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# --------------------------------------------------------------------------- shared data


def _config(spec: dict):
    from keras_retinanet.training import TrainConfig

    data = spec["dataset"]
    # "ours" keeps the standard anchors (the figures before issue #26); "ours_auto" trains with
    # retinanet-train --anchors auto. The batches (images, boxes) are the same for both.
    anchors = "auto" if spec.get("model") == "ours_auto" else "default"
    return TrainConfig(
        anchors=anchors,
        dataset={"type": "voc", "data_dir": data, "train_set": spec["train_set"],
                 "val_set": None, "classes": os.path.join(data, "classes.txt")},
        weights=None, batch_size=spec["batch_size"], epochs=1, steps=spec["steps"],
        lr=spec["ours_lr"], clipnorm=spec["ours_clipnorm"],
        image_min_side=spec["min_side"], image_max_side=spec["max_side"],
        random_transform=True, snapshot_path=None, evaluation=False, seed=spec["seed"],
        verbose=0,
    )  # fmt: skip


def write_batches(spec: dict, path: str) -> dict:
    """The training batches ours will see (``fit_input``'s order: step k is batch k % n of
    pass k // n) and the resized test images, as uint8 BGR arrays in one ``.npz``; returns the
    test set's original-pixel annotations and resize scales, for scoring."""
    import numpy as np

    from keras_retinanet.model.anchors import AnchorParameters
    from keras_retinanet.preprocessing.voc import PascalVocGenerator
    from keras_retinanet.training import create_generators

    train_generator, _ = create_generators(_config(spec), AnchorParameters())
    arrays = {}
    for step in range(spec["steps"]):
        epoch, index = divmod(step, len(train_generator))
        group = train_generator.epoch_groups(epoch)[index]
        images, annotations, _ = train_generator.preprocess_group(group, epoch)
        for j, (image, boxes) in enumerate(zip(images, annotations, strict=True)):
            arrays[f"train_{step}_{j}"] = image
            arrays[f"boxes_{step}_{j}"] = boxes["bboxes"].astype("float32")
            arrays[f"labels_{step}_{j}"] = boxes["labels"].astype("int64")
    test = PascalVocGenerator(
        spec["dataset"], spec["test_set"], classes=os.path.join(spec["dataset"], "classes.txt"),
        shuffle=False, group_method="none",
        image_min_side=spec["min_side"], image_max_side=spec["max_side"],
    )  # fmt: skip
    count = min(test.size(), spec["test_images"] or test.size())
    scales, annotations = [], []
    for i in range(count):
        image, scale = test.resize_image(test.load_image(i))
        arrays[f"test_{i}"] = image
        scales.append(scale)
        annotations.append(test.load_annotations(i))
    np.savez(path, **arrays)
    classes = [test.label_to_name(c) for c in range(test.num_classes())]
    return {"scales": scales, "annotations": annotations, "classes": classes}


def batch_of(arrays, step: int) -> tuple[list, list, list]:
    images, boxes, labels, j = [], [], [], 0
    while f"train_{step}_{j}" in arrays:
        images.append(arrays[f"train_{step}_{j}"])
        boxes.append(arrays[f"boxes_{step}_{j}"])
        labels.append(arrays[f"labels_{step}_{j}"])
        j += 1
    return images, boxes, labels


def test_images(arrays) -> list:
    return [arrays[f"test_{i}"] for i in range(sum(k.startswith("test_") for k in arrays))]


def normalised_rgb(images: list, shape: tuple[int, int]):
    """KerasHub's input: RGB / 255 by ImageNet mean and std, zero-padded (the mean colour) to
    ``shape``. Its anchor generator needs the image size in the graph, so every batch gets one
    fixed shape, as its preprocessor gives (see :func:`fixed_shape`)."""
    import numpy as np

    batch = np.zeros((len(images), *shape, 3), "float32")
    for k, image in enumerate(images):
        rgb = image[..., ::-1].astype("float32") / 255.0
        batch[k, : image.shape[0], : image.shape[1]] = (rgb - MEAN_RGB) / STD_RGB
    return batch


def fixed_shape(arrays, multiple: int = 32) -> tuple[int, int]:
    """The smallest shape, in multiples of 32, that holds every training and test image."""
    shapes = [a.shape for k, a in arrays.items() if k.startswith(("train_", "test_"))]
    return tuple(-(-max(s[axis] for s in shapes) // multiple) * multiple for axis in (0, 1))


# --------------------------------------------------------------------------- workers


class _Clock:
    """Step end times; img/s leaves out the first step (tracing, warm-up)."""

    def __init__(self) -> None:
        self.times = [time.perf_counter()]
        self.end: float | None = None  # after the epoch-end work (ours: precise BN)

    def tick(self) -> None:
        self.times.append(time.perf_counter())

    def summary(self, batch_size: int) -> dict:
        steps = len(self.times) - 1
        steady = self.times[-1] - self.times[min(1, steps)]
        rate = (steps - 1) * batch_size / steady if steps > 1 and steady > 0 else None
        end = self.end or self.times[-1]
        return {"steps": steps, "train_seconds": end - self.times[0], "img_s": rate}


def _keras_clock():
    import keras

    clock = _Clock()

    class Tick(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):  # after building: the first step's tracing counts
            clock.times[:] = [time.perf_counter()]

        def on_train_batch_end(self, batch, logs=None):
            clock.tick()

        def on_train_end(self, logs=None):
            clock.end = time.perf_counter()

    return clock, Tick()


def run_ours(spec: dict, arrays) -> tuple[dict, list]:
    from keras_retinanet import models
    from keras_retinanet.model.variants import get_variant
    from keras_retinanet.preprocessing.image import pad_batch
    from keras_retinanet.training import train

    clock, tick = _keras_clock()
    config = _config(spec)
    config.callbacks = [tick]
    result = train(config)
    inference = models.retinanet_box(result["model"], anchor_parameters=result["anchor_parameters"])
    pad_value = get_variant(None).pad_value()
    detections = []
    for image in test_images(arrays):
        boxes, scores, labels = inference.predict_on_batch(pad_batch([image], 32, pad_value))
        detections.append((boxes[0], scores[0], labels[0]))
    from keras_retinanet.preprocessing.anchor_fit import describe

    recipe = (f"Adam lr {spec['ours_lr']:g}, clipnorm {spec['ours_clipnorm']}, anchors "
              f"{config.anchors}: {describe(result['anchor_parameters'])}")  # fmt: skip
    return dict(clock.summary(spec["batch_size"]), recipe=recipe), detections


def run_kerashub(spec: dict, arrays) -> tuple[dict, list]:
    import keras
    import numpy as np
    import tensorflow as tf

    sys.path.insert(0, HERE)
    from bench_inference import batch_caller, build_kerashub_detector

    keras.utils.set_random_seed(spec["seed"])
    detector = build_kerashub_detector(spec["num_classes"], seed=spec["seed"])
    detector.compile()  # KerasHub's defaults: Adam(5e-5), Huber(sum), focal
    shape = fixed_shape(arrays)

    def batches():
        for step in range(spec["steps"]):
            images, boxes, labels = batch_of(arrays, step)
            most = max(1, max(len(b) for b in boxes))
            padded_boxes = np.full((len(images), most, 4), -1, "float32")
            padded_labels = np.full((len(images), most), -1, "float32")
            for k, (b, c) in enumerate(zip(boxes, labels, strict=True)):
                padded_boxes[k, : len(b)], padded_labels[k, : len(c)] = b, c
            yield normalised_rgb(images, shape), {"boxes": padded_boxes, "labels": padded_labels}

    signature = (
        tf.TensorSpec((None, *shape, 3), tf.float32),
        {"boxes": tf.TensorSpec((None, None, 4), tf.float32),
         "labels": tf.TensorSpec((None, None), tf.float32)},
    )  # fmt: skip
    data = tf.data.Dataset.from_generator(batches, output_signature=signature)
    clock, tick = _keras_clock()
    detector.fit(data, epochs=1, steps_per_epoch=spec["steps"], callbacks=[tick], verbose=0)
    predict = batch_caller(detector, "batch", kerashub_detector=True)
    detections = []
    for image in test_images(arrays):
        out = predict(normalised_rgb([image], shape))
        count = int(out["num_detections"][0])
        detections.append(
            (out["boxes"][0][:count], out["confidence"][0][:count], out["labels"][0][:count])
        )
    return dict(clock.summary(spec["batch_size"]), recipe="Adam lr 5e-05 (compile default)"), (
        detections
    )


def run_torchvision(spec: dict, arrays) -> tuple[dict, list]:
    import torch
    from torchvision.models.detection import retinanet_resnet50_fpn

    torch.manual_seed(spec["seed"])
    torch.set_num_threads(os.cpu_count() or 1)
    model = retinanet_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=spec["num_classes"],
        min_size=spec["min_side"], max_size=spec["max_side"],  # the images come resized
        score_thresh=0.05, nms_thresh=0.5, detections_per_img=300,
    )  # fmt: skip
    lr = 0.01 * spec["batch_size"] / 16
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    warmup = max(1, min(1000, spec["steps"] // 3))
    schedule = torch.optim.lr_scheduler.LinearLR(optimizer, 0.001, total_iters=warmup)

    def tensor(image):
        return torch.from_numpy(image[..., ::-1].copy()).permute(2, 0, 1).float() / 255.0

    model.train()
    clock = _Clock()
    for step in range(spec["steps"]):
        images, boxes, labels = batch_of(arrays, step)
        targets = [{"boxes": torch.from_numpy(b), "labels": torch.from_numpy(c)}
                   for b, c in zip(boxes, labels, strict=True)]  # fmt: skip
        losses = model([tensor(i) for i in images], targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
        schedule.step()
        clock.tick()
    model.eval()
    detections = []
    with torch.no_grad():
        for image in test_images(arrays):
            (out,) = model([tensor(image)])
            detections.append(tuple(out[k].numpy() for k in ("boxes", "scores", "labels")))
    recipe = f"SGD lr {lr:g} m 0.9 wd 1e-4, warm-up {warmup}"
    return dict(clock.summary(spec["batch_size"]), recipe=recipe), detections


def worker(spec: dict) -> None:
    import numpy as np

    arrays = dict(np.load(spec["batches"]))
    run = {"ours": run_ours, "ours_auto": run_ours, "kerashub": run_kerashub,
           "torchvision": run_torchvision}  # fmt: skip
    result, detections = run[spec["model"]](spec, arrays)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    flat = {}
    for i, (boxes, scores, labels) in enumerate(detections):
        flat[f"boxes_{i}"] = np.asarray(boxes, "float64").reshape(-1, 4)
        flat[f"scores_{i}"] = np.asarray(scores, "float64").reshape(-1)
        flat[f"labels_{i}"] = np.asarray(labels, "int64").reshape(-1)
    np.savez(spec["detections"], **flat)
    print("RESULT " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------- driver


def score(detection_file: str, truth: dict) -> dict:
    """Devkit VOC mAP@0.5 (11-point and all-point) and per-class AP of a worker's detections,
    its boxes taken back to the original pixels."""
    import numpy as np

    from keras_retinanet.evaluation.voc import evaluate_detections, mean_average_precision

    found = np.load(detection_file)
    num_classes = len(truth["classes"])
    detections, annotations = [], []
    for i, (scale, boxes) in enumerate(zip(truth["scales"], truth["annotations"], strict=True)):
        rows = np.concatenate([found[f"boxes_{i}"] / scale, found[f"scores_{i}"][:, None]], 1)
        labels = found[f"labels_{i}"]
        detections.append([rows[labels == c] for c in range(num_classes)])
        annotations.append([{"bboxes": boxes["bboxes"][boxes["labels"] == c]}
                            for c in range(num_classes)])  # fmt: skip
    voc07 = evaluate_detections(detections, annotations, num_classes, use_07_metric=True)
    every = evaluate_detections(detections, annotations, num_classes, use_07_metric=False)
    return {
        "detections": sum(len(found[f"scores_{i}"]) for i in range(len(truth["scales"]))),
        "mAP_voc07": mean_average_precision(voc07),
        "mAP_all_point": mean_average_precision(every),
        "per_class": {name: voc07[c][0] for c, name in enumerate(truth["classes"])},
    }


def run_model(spec: dict, python: str) -> dict:
    command = [python, os.path.abspath(__file__), "--worker", json.dumps(spec)]
    process = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode != 0 or not lines:
        tail = "\n".join(process.stderr.strip().splitlines()[-20:])
        raise RuntimeError(f"{spec['model']} failed (exit {process.returncode}):\n{tail}")
    return json.loads(lines[-1][len("RESULT ") :])


def run(args: argparse.Namespace) -> list[dict]:
    """Every model on every dataset and seed; with ``--json`` the rows so far are written
    after each model, so a run stopped midway keeps what it measured."""
    rows = []
    pythons = {"ours": sys.executable, "ours_auto": sys.executable, "kerashub": sys.executable,
               "torchvision": args.torch_python}  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        for dataset in args.datasets:
            name = os.path.basename(os.path.normpath(dataset))
            for seed in args.seeds:
                spec = {
                    "dataset": os.path.abspath(dataset), "seed": seed, "steps": args.steps,
                    "batch_size": args.batch_size, "min_side": args.image_min_side,
                    "max_side": args.image_max_side, "train_set": args.train_set,
                    "test_set": args.test_set, "test_images": args.test_images,
                    "ours_lr": args.ours_lr, "ours_clipnorm": args.ours_clipnorm,
                    "batches": os.path.join(scratch, f"{name}_{seed}.npz"),
                }  # fmt: skip
                print(f"{name} seed {seed}: writing the batches", file=sys.stderr, flush=True)
                truth = write_batches(spec, spec["batches"])
                spec["num_classes"] = len(truth["classes"])
                for model in args.models:
                    print(f"{name} seed {seed}: {model}", file=sys.stderr, flush=True)
                    spec.update(model=model, detections=os.path.join(scratch, f"{model}.npz"))
                    result = run_model(spec, pythons[model])
                    result.update(score(spec["detections"], truth))
                    rows.append(dict(result, dataset=name, seed=seed, model=model))
                    if args.json:
                        with open(args.json, "w") as f:
                            json.dump(rows, f, indent=1)
                    print(f"    mAP07 {result['mAP_voc07']:.3f}", file=sys.stderr, flush=True)
    return rows


def ratios(rows: list[dict]) -> dict:
    """``{(dataset, peer): mean ours mAP / mean peer mAP}`` over the seeds (VOC07); None
    where the peer's mean is 0."""
    means = {}
    for row in rows:
        means.setdefault((row["dataset"], row["model"]), []).append(row["mAP_voc07"])
    out = {}
    for (dataset, model), values in means.items():
        if model == "ours":
            continue
        ours = means.get((dataset, "ours"))
        peer = sum(values) / len(values)
        if ours and peer > 0:
            out[(dataset, model)] = (sum(ours) / len(ours)) / peer
        elif ours:  # undefined: the peer found nothing
            out[(dataset, model)] = None
    return out


def print_table(rows: list[dict]) -> None:
    print("| dataset | model | seed | steps | train s | img/s | peak MB | detections | "
          "mAP@0.5 VOC07 | all-point | per-class AP (VOC07) | recipe |")  # fmt: skip
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    for r in rows:
        per_class = ", ".join(f"{k} {v:.3f}" for k, v in r["per_class"].items())
        rate = f"{r['img_s']:.2f}" if r["img_s"] else "-"
        print(f"| {r['dataset']} | {r['model']} | {r['seed']} | {r['steps']} | "
              f"{r['train_seconds']:.0f} | {rate} | {r['peak_rss_mb']:.0f} | "
              f"{r.get('detections', '-')} | "
              f"{r['mAP_voc07']:.3f} | {r['mAP_all_point']:.3f} | {per_class} | "
              f"{r['recipe']} |")  # fmt: skip
    print()
    print("| dataset | ours/peer mAP@0.5 (VOC07, mean over seeds) |")
    print("|---|---|")
    by_dataset = {}
    for (dataset, peer), value in ratios(rows).items():
        text = "n/a (peer mAP 0)" if value is None else f"{value:.2f}"
        by_dataset.setdefault(dataset, []).append(f"{peer} {text}")
    for dataset, text in by_dataset.items():
        print(f"| {dataset} | {', '.join(text)} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    datasets = [os.path.join(DATA, "bccd"), os.path.join(DATA, "raccoon")]
    parser.add_argument("--datasets", nargs="+", default=datasets)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=400, help="training steps, every model")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--image-min-side", type=int, default=256)
    parser.add_argument("--image-max-side", type=int, default=352)
    parser.add_argument("--train-set", default="trainval")
    parser.add_argument("--test-set", default="test")
    parser.add_argument("--test-images", type=int, default=0, help="first N test images; 0: all")
    parser.add_argument("--ours-lr", type=float, default=1e-4)
    parser.add_argument("--ours-clipnorm", type=float, default=None)
    parser.add_argument("--torch-python", default=os.environ.get(
        "TORCH_PYTHON", os.path.join(ROOT, ".venv-torch", "bin", "python")))  # fmt: skip
    quick = "raccoon, one seed, 2 steps of 1 image at 96-128 px, 3 test images"
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", help="also write the rows here (after each model)")
    parser.add_argument("--table", metavar="JSON", help="print the table of a --json file")
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    if args.worker:
        return worker(json.loads(args.worker))
    if args.table:
        with open(args.table) as f:
            return print_table(json.load(f))
    if args.quick:
        args.datasets, args.seeds, args.steps, args.batch_size = (
            [os.path.join(DATA, "raccoon")],
            [0],
            2,
            1,
        )
        args.image_min_side, args.image_max_side, args.test_images = 96, 128, 3
    for dataset in args.datasets:
        if not os.path.isfile(os.path.join(dataset, "classes.txt")):
            parser.error(f"{dataset} is not a VOC-layout folder with classes.txt")
    if "torchvision" in args.models and not os.path.isfile(args.torch_python):
        parser.error(
            f"no Python for torchvision at {args.torch_python}: pass --torch-python (a venv "
            "with pip install torch==2.14.1 torchvision==0.29.1 numpy)"
        )
    print_table(run(args))


if __name__ == "__main__":
    sys.exit(main())
