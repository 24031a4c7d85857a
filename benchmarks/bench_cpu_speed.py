"""CPU inference speed, in one process, interleaved: ours (BN folded), ours unfolded, KerasHub.

Every model is built once; each round then calls every model once on the same batch, in a
rotating order, so that a change of load on the machine hits all of them alike. Also
measures this CPU's float32 matmul peak in the same process (TensorFlow's, and NumPy's BLAS,
which is what a tuned GEMM reaches) and reports each model's achieved GFLOP/s against both,
and lists the ops TensorFlow's graph optimiser leaves in the forward graph (which
convolutions it fused with their bias and ReLU, and what it did not).

    .venv/bin/python benchmarks/bench_cpu_speed.py                 # 512x512 and 800x1344
    .venv/bin/python benchmarks/bench_cpu_speed.py --cases 1:256x256 --runs 3 --no-kerashub

KerasHub is installed as ``benchmarks/README.md`` says; ``--no-kerashub`` runs without it.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_inference import (  # noqa: E402
    build_kerashub_detector,
    forward_flops,
    machine_description,
    parse_case,
)
from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Best-of float32 GFLOP/s of a ``size``-square matmul: the peak this process reaches."""
    import tensorflow as tf

    a = tf.random.uniform((size, size))
    b = tf.random.uniform((size, size))
    matmul = tf.function(lambda x, y: tf.linalg.matmul(x, y))
    matmul(a, b).numpy()
    best = min(timed(lambda: matmul(a, b).numpy()) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def blas_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The same with NumPy's BLAS: the float32 peak a tuned GEMM reaches on this CPU."""
    import numpy as np

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    a @ a
    best = min(timed(lambda: a @ a) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def timed(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def optimised_op_counts(model: Any, shape: tuple[int, ...]) -> collections.Counter:
    """Op types of ``model``'s forward graph after Grappler (TensorFlow's graph optimiser),
    with fused convolutions named by what they fused, e.g. ``_FusedConv2D[BiasAdd,Relu]``."""
    import tensorflow as tf
    from tensorflow.core.protobuf import config_pb2
    from tensorflow.python.grappler import tf_optimizer
    from tensorflow.python.training import saver

    function = tf.function(lambda x: model(x, training=False))
    with tf.device("/device:CPU:0"):  # Grappler's remapper fuses placed nodes only
        concrete = function.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    graph = concrete.graph
    meta_graph = saver.export_meta_graph(graph_def=graph.as_graph_def(), graph=graph)
    fetches = meta_graph.collection_def["train_op"]
    for output in concrete.outputs:
        fetches.node_list.value.append(output.name)
    config = config_pb2.ConfigProto()
    optimised = tf_optimizer.OptimizeGraph(config, meta_graph)
    counts: collections.Counter = collections.Counter()
    for node in optimised.node:
        name = node.op
        if "fused_ops" in node.attr:
            fused = [op.decode() for op in node.attr["fused_ops"].list.s]
            name = f"{node.op}[{','.join(fused)}]"
        counts[name] += 1
    return counts


def build_models(args: argparse.Namespace) -> dict[str, tuple[Any, Any, Any]]:
    """``{row: (predict(images) -> outputs, forward keras.Model, keras model)}``."""
    import keras
    import numpy as np
    import tensorflow as tf

    from keras_retinanet import models

    keras.utils.set_random_seed(0)
    training = models.retinanet_model(args.num_classes, weights=None, prior_probability=0.5)
    rows = {}
    for label, fold in (("ours", True), ("ours, BN not folded", False)):
        inference = models.retinanet_box(training, fold_batch_norm=fold)
        outputs = [inference.get_layer(n).output for n in ("regression", "classification")]
        rows[label] = (
            inference.predict_on_batch,
            keras.Model(inference.inputs, outputs),
            inference,
        )
    if not args.no_kerashub:
        detector = build_kerashub_detector(args.num_classes, prior_probability=0.5)
        outputs = [detector.get_layer(n).output for n in ("bbox_regression", "cls_logits")]
        rows["KerasHub"] = (
            # Its predict_step, as its predict() runs it (predict_on_batch fails on it).
            lambda images: tf.nest.map_structure(np.asarray, detector.predict_function([images])),
            keras.Model(detector.inputs, outputs),
            detector,
        )
    return rows


def run_case(rows: dict, case: tuple[int, int, int], args: argparse.Namespace) -> dict:
    import numpy as np

    batch, height, width = case
    images = np.random.default_rng(0).uniform(-120, 150, (batch, height, width, 3))
    images = images.astype("float32")
    labels = list(rows)
    for label in labels:
        # A predict function traced for this shape: a second shape would make Keras relax
        # it to (None, None), which KerasHub's anchor generator cannot take.
        rows[label][2].make_predict_function(force=True)
        for _ in range(1 + args.warmup):
            rows[label][0](images)
    times: dict[str, list[float]] = {label: [] for label in labels}
    for run in range(args.runs):
        order = labels[run % len(labels) :] + labels[: run % len(labels)]
        for label in order:
            times[label].append(timed(lambda label=label: rows[label][0](images)))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        default=[parse_case("1:512x512"), parse_case("1:800x1344")],
    )
    parser.add_argument("--runs", type=int, default=10, help="timed rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--no-kerashub", action="store_true")
    parser.add_argument("--no-fusion-report", action="store_true")
    args = parser.parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's

    import tensorflow as tf

    print(
        f"machine: {machine_description()}; TensorFlow {tf.__version__}, "
        f"threads {tf.config.threading.get_inter_op_parallelism_threads()}/"
        f"{tf.config.threading.get_intra_op_parallelism_threads()} (0 = all cores)"
    )
    rows = build_models(args)
    peak = matmul_peak_gflops()
    blas = blas_peak_gflops()
    print(
        f"float32 matmul peak (2048^3, best of 5): TensorFlow {peak:.1f} GFLOP/s, "
        f"NumPy's BLAS {blas:.1f} GFLOP/s\n"
    )
    print(
        "| case | model | median s | min s | ratio to KerasHub | GFLOP | GFLOP/s "
        "| of TF matmul | of BLAS |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        times = run_case(rows, case, args)
        reference = statistics.median(times["KerasHub"]) if "KerasHub" in times else None
        for label, values in times.items():
            median = statistics.median(values)
            flops = forward_flops(rows[label][1], (case[0], case[1], case[2], 3)) or 0
            ratio = f"{median / reference:.2f}" if reference else "n/a"
            rate = flops / median / 1e9
            print(
                f"| {case[0]}:{case[1]}x{case[2]} | {label} | {median:.3f} | {min(values):.3f} "
                f"| {ratio} | {flops / 1e9:.1f} | {rate:.1f} | {rate / peak:.0%} "
                f"| {rate / blas:.0%} |",
                flush=True,
            )
    peak_after = matmul_peak_gflops()
    print(f"\nmatmul peak again after the runs: {peak_after:.1f} GFLOP/s")
    if args.no_fusion_report:
        return
    shape = (1, 256, 256, 3)
    print(
        f"\nForward-graph ops after Grappler at {shape[1]}x{shape[2]} (convolutions and "
        "what stands between them):\n"
    )
    counts = {label: optimised_op_counts(forward, shape) for label, (_, forward, _) in rows.items()}
    kinds = sorted(
        {
            k
            for c in counts.values()
            for k in c
            if "Conv" in k
            or k in ("FusedBatchNormV3", "Mul", "AddV2", "Add", "BiasAdd", "Relu", "Rsqrt", "Sub")
        }
    )
    print("| op | " + " | ".join(counts) + " |")
    print("|---|" + "---|" * len(counts))
    for kind in kinds:
        print(f"| {kind} | " + " | ".join(str(c.get(kind, 0)) for c in counts.values()) + " |")


if __name__ == "__main__":
    main()
