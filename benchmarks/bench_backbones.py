"""Every backbone preset's size and CPU latency, in one process, interleaved (issue #27).

For each preset (``resnet50``, ``mobilenet_v3_large_lite``, ...): parameters, forward GFLOP
(TensorFlow's profiler) and the median latency of the inference model (BN folded, NMS inside,
float32, batch 1) at each size, with its ratio to ResNet50-FPN (the ``resnet50`` preset). Each
round calls every model once on the same image, in a rotating order, so a change of load on the
machine hits all of them alike. Random weights (a latency does not depend on them; a random
classifier is set to 0.5 foreground so NMS has its full work).

    python benchmarks/bench_backbones.py                                  # every preset
    python benchmarks/bench_backbones.py --presets resnet50 mobilenet_v3_large_lite --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_inference import forward_flops  # noqa: E402
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

REFERENCE = "resnet50"


def build(name: str, num_classes: int) -> tuple[Any, Any]:
    """``(inference model, forward keras.Model)`` of a preset with random weights."""
    import keras

    from keras_retinanet import models

    keras.utils.set_random_seed(0)
    training = models.retinanet_model(num_classes, backbone=name, weights=None,
                                      prior_probability=0.5)  # fmt: skip
    inference = models.retinanet_box(training)
    outputs = [inference.get_layer(n).output for n in ("regression", "classification")]
    return inference, keras.Model(inference.inputs, outputs)


def timed(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    from keras_retinanet.model.backbones import BACKBONES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=None, help="default: every preset")
    parser.add_argument("--sizes", nargs="+", type=int, default=[320, 512])
    parser.add_argument("--runs", type=int, default=5, help="timed rounds per size")
    parser.add_argument("--num-classes", type=int, default=20)
    args = parser.parse_args(argv)
    names = args.presets or sorted(BACKBONES)
    if REFERENCE not in names:
        names = [REFERENCE, *names]
    print(describe_cpu(), flush=True)

    import numpy as np

    models_by_name = {}
    params = {}
    for name in names:
        start = time.perf_counter()
        models_by_name[name] = build(name, args.num_classes)
        params[name] = models_by_name[name][1].count_params()
        print(f"built {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    flops = {}
    times: dict[tuple[str, int], list[float]] = {}
    for size in args.sizes:
        image = np.random.default_rng(0).uniform(-120, 150, (1, size, size, 3)).astype("f4")
        for name in names:
            flops[name, size] = forward_flops(models_by_name[name][1], (1, size, size, 3))
            predict = models_by_name[name][0].predict_on_batch
            predict(image)  # trace for this size
            predict(image)
            times[name, size] = []
        for run in range(args.runs):
            order = names[run % len(names) :] + names[: run % len(names)]
            for name in order:
                predict = models_by_name[name][0].predict_on_batch
                times[name, size].append(timed(lambda p=predict, x=image: p(x)))
        print(f"timed {size}x{size}", file=sys.stderr, flush=True)

    header = "| preset | params (M) |"
    rule = "|---|---:|"
    for size in args.sizes:
        header += f" GFLOP {size} | ms {size} | x {REFERENCE} {size} |"
        rule += "---:|---:|---:|"
    print(f"\nfloat32, batch 1, median of {args.runs} interleaved runs, {args.num_classes} classes")
    print(header)
    print(rule)
    for name in names:
        row = f"| {name} | {params[name] / 1e6:.1f} |"
        for size in args.sizes:
            median = statistics.median(times[name, size])
            reference = statistics.median(times[REFERENCE, size])
            gflop = flops[name, size]
            gflop_text = f"{gflop / 1e9:.1f}" if gflop else "n/a"
            row += f" {gflop_text} | {median * 1e3:.0f} | {median / reference:.3f} |"
        print(row, flush=True)


if __name__ == "__main__":
    main()
