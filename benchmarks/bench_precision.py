"""float32 against bfloat16 inference of the Keras model on this CPU, in one process.

    python benchmarks/bench_precision.py                 # ResNet50 RetinaNet, 512x512, batch 1
    python benchmarks/bench_precision.py --size 320 --runs 10

Both models are the same inference model (random weights: speed does not depend on them), the
bfloat16 one from :func:`keras_retinanet.model.precision.with_precision` (network in bfloat16,
decoding and NMS in float32). Calls alternate between the two, and the table gives each one's
median seconds and the ratio to float32. The CPU line says whether the CPU has bfloat16
instructions (AVX512-BF16, AMX); TensorFlow uses them through oneDNN, which it turns on by
default on CPUs with AVX-512 (``TF_ENABLE_ONEDNN_OPTS``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

from keras_retinanet import models  # noqa: E402
from keras_retinanet.model.precision import with_precision  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512, help="square input side")
    parser.add_argument("--runs", type=int, default=15, help="timed calls of each model")
    parser.add_argument("--classes", type=int, default=20)
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    print(f"oneDNN: TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', 'default')}")
    training = models.retinanet_model(args.classes, weights=None)
    float32 = models.retinanet_box(training)
    variants = {"float32": float32, "bfloat16": with_precision(float32, "bfloat16")}
    batch = np.random.default_rng(0).normal(0, 50, (1, args.size, args.size, 3))
    batch = batch.astype(np.float32)
    for model in variants.values():  # compile and warm up
        for _ in range(2):
            model.predict_on_batch(batch)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.runs):
        for name, model in variants.items():
            start = time.perf_counter()
            outputs = model.predict_on_batch(batch)
            np.asarray(outputs[0])
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times["float32"]))
    print(f"\n{args.size}x{args.size}, batch 1, {args.runs} interleaved calls each\n")
    print("| precision | median s | / float32 |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = float(np.median(values))
        print(f"| {name} | {median:.3f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
