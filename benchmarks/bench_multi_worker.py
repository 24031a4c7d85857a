"""Training step time of ``retinanet-train``'s multi-worker loop against ``model.fit``.

Three set-ups train the same RetinaNet (ResNet50-FPN, random weights, 20 classes, Adam 1e-5
with clipnorm 0.001) on the same random images and boxes, with the same global batch::

    python benchmarks/bench_multi_worker.py                      # 512x512, global batch 2
    python benchmarks/bench_multi_worker.py --size 256 --runs 4 --warmup 1 --workers 2

* ``fit``: one process, Keras' ``model.fit``, no strategy.
* ``loop``: one process, :func:`keras_retinanet.training.multi_worker.fit` under the default
  strategy: the loop's own cost against ``fit``.
* ``N workers``: N processes on this machine under ``MultiWorkerMirroredStrategy``
  (``localhost`` ports), each with ``batch / N`` images, gradients all-reduced over gRPC.

One batch is repeated through ``tf.data``, so the input costs nothing. The first step
(tracing) is reported on its own; the median and interquartile range are over ``--runs``
steps after ``--warmup`` more. On one machine the workers share its cores, so the worker rows
show the cost of the all-reduce and of the collective set-up, not a speed-up: that needs one
worker per machine (or per GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from bench_inference import (  # noqa: E402 - after the path set-up above
    fmt,
    library_versions,
    load_average,
    machine_description,
    summarise,
)
from bench_train import CLIPNORM, LEARNING_RATE, StepTimer, random_annotations  # noqa: E402
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

NUM_CLASSES = 20


def worker(spec: dict) -> dict:
    """One process of one set-up; under ``multi_worker`` the strategy comes first."""
    strategy = None
    if spec["mode"] == "multi_worker":
        from keras_retinanet.training import multi_worker

        strategy = multi_worker.create_strategy(spec["cluster"], spec["index"])
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_retinanet import models, training
    from keras_retinanet.model import anchors as anchors_lib
    from keras_retinanet.model import targets as targets_lib
    from keras_retinanet.training import multi_worker

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(spec.get("index", 0))  # each worker its own images
    side, batch = spec["size"], spec["local_batch"]
    images = rng.uniform(-120, 150, size=(batch, side, side, 3)).astype("float32")
    annotations = random_annotations(rng, batch, side, side, 5, NUM_CLASSES)
    anchors = anchors_lib.anchors_for_shape((side, side))
    regression, labels = targets_lib.anchor_targets_bbox(
        anchors, [image.shape for image in images], annotations, NUM_CLASSES
    )
    steps = 1 + spec["warmup"] + spec["runs"]
    dataset = tf.data.Dataset.from_tensors((images, (regression, labels))).repeat()
    timer = StepTimer()
    scope = strategy.scope() if strategy is not None else tf.distribute.get_strategy().scope()
    with scope:
        model = models.retinanet_model(NUM_CLASSES, weights=None)
        training.compile_model(model, lr=LEARNING_RATE, clipnorm=CLIPNORM)
        if spec["mode"] == "fit":
            history = model.fit(
                dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer]
            ).history
        else:
            history = multi_worker.fit(
                model, dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[timer]
            ).history
    times = timer.times
    return dict(
        spec,
        first=times[0],
        step=summarise(times[1 + spec["warmup"] :]),
        loss=float(history["loss"][-1]),
        iterations=int(model.optimizer.iterations.numpy()),
    )


def launch(specs: list[dict]) -> list[dict]:
    """Start every spec as a process at once (the workers of one cluster), collect results."""
    processes = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", json.dumps(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for spec in specs
    ]
    results = []
    for spec, process in zip(specs, processes):
        out, err = process.communicate()
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            tail = err.strip().splitlines()[-1:] or ["no output"]
            results.append(dict(spec, error=f"exit {process.returncode}: {tail[0]}"))
        else:
            results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results


def run(args: argparse.Namespace) -> list[dict]:
    base = {"size": args.size, "runs": args.runs, "warmup": args.warmup}
    rows = []
    for mode in ("fit", "loop"):
        print(f"{mode} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        (result,) = launch([dict(base, mode=mode, local_batch=args.batch, title=mode)])
        rows.append(dict(result, workers=1, wall=time.monotonic() - start))
    if args.batch % args.workers:
        raise SystemExit(f"--batch {args.batch} does not split over {args.workers} workers")
    from keras_retinanet.training.multi_worker import local_cluster

    cluster = local_cluster(args.workers)
    print(f"{args.workers} workers ...", file=sys.stderr, flush=True)
    start = time.monotonic()
    results = launch(
        [
            dict(
                base,
                mode="multi_worker",
                cluster=cluster,
                index=index,
                local_batch=args.batch // args.workers,
                title=f"{args.workers} workers",
            )
            for index in range(args.workers)
        ]  # fmt: skip
    )
    wall = time.monotonic() - start
    chief = dict(results[0], workers=args.workers, wall=wall)
    losses = {r.get("loss") for r in results}
    chief["agree"] = "error" not in chief and len(losses) == 1
    rows.append(chief)
    return rows


def print_table(rows: list[dict], args: argparse.Namespace) -> None:
    print(f"\n{machine_description()}; {library_versions()}; load {load_average()}")
    print(f"{args.size}x{args.size}, global batch {args.batch}, {args.runs} timed steps\n")
    print(
        "| set-up | processes | images/process | first step s | median step s | IQR s "
        "| s/image | wall s | final loss | workers agree |"
    )
    print("|" + "---|" * 10)
    for r in rows:
        head = f"| {r['title']} | {r['workers']} | {r['local_batch']}"
        if "error" in r:
            print(f"{head} | failed: {r['error']} |" + " |" * 6)
            continue
        step = r["step"]["median"]
        print(
            f"{head} | {fmt(r['first'], 2)} | {fmt(step)} | {fmt(r['step']['iqr'])} "
            f"| {fmt(step / args.batch)} | {r['wall']:.0f} | {r['loss']:.4g} "
            f"| {r.get('agree', '-')} |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="square image side")
    parser.add_argument("--batch", type=int, default=2, help="global batch")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    print_table(run(args), args)


if __name__ == "__main__":
    main()
