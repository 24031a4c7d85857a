"""Size and CPU latency of the exported detectors, against the Keras model they come from.

Builds a ResNet50 RetinaNet for 20 classes (random weights: latency does not depend on the
values), exports it at 512 x 512 to each format and times batch-1 inference::

    python benchmarks/bench_export.py                  # 512 x 512, 10 timed rounds
    python benchmarks/bench_export.py --size 384 640 --runs 20 --formats keras tflite

Every format runs the same work: uint8 RGB image in, resize/normalise, network, box decoding,
NMS, boxes in image pixels out; the Keras row runs ``inference.detect`` (OpenCV preprocessing
and ``predict_on_batch``). The classification bias is set so that anchors score about 0.1,
above the 0.05 threshold, so NMS sees its full 1000 candidates as on a real photo rather than
the empty candidate list of an untrained net. Each format warms up (first call, graph
building); then ``--runs`` rounds call every format once, and each row reports its median.
The numbers depend on the machine and its load: run it on a quiet machine and compare rows,
not absolute values across machines.
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMATS = ("keras", "saved_model", "tflite", "tflite_fp16", "onnx")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument("--runs", type=int, default=10, help="timed runs per format (>= 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="TFLite / onnxruntime threads"
    )
    parser.add_argument("--output-dir", default=None, help="keep the artifacts here")
    return parser.parse_args(argv)


def interleaved_medians(runners: dict[str, Callable[[], object]], runs: int, warmup: int) -> dict:
    """Median wall time (seconds) of each runner, timed round-robin.

    One call of every runner per round, so that a change in machine load (it is shared)
    affects all formats alike instead of whichever happened to run at the time.
    """
    for run in runners.values():
        for _ in range(max(1, warmup)):
            run()
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def build_model(num_classes: int):
    import keras

    from keras_retinanet import layers, models

    keras.utils.set_random_seed(0)
    training = models.retinanet_model(num_classes, weights=None)
    output = training.get_layer("classification_submodel").get_layer("pyramid_classification")
    kernel, bias = output.get_weights()
    output.set_weights([kernel, bias * 0 + layers.prior_bias(0.1)])
    return models.retinanet_box(training)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np

    from keras_retinanet import export
    from keras_retinanet.inference import detect

    height, width = args.size
    side = min(height, width), max(height, width)  # the network sees the image unresized
    image_rgb = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    image_bgr = np.ascontiguousarray(image_rgb[0, :, :, ::-1])
    print(f"building ResNet50 RetinaNet, {args.num_classes} classes ...", flush=True)
    model = build_model(args.num_classes)
    directory = args.output_dir or tempfile.mkdtemp(prefix="bench_export_")
    os.makedirs(directory, exist_ok=True)
    runners: dict[str, Callable[[], object]] = {}
    sizes: dict[str, int] = {}
    notes: dict[str, str] = {}
    for name in args.formats:
        print(f"exporting {name} ...", flush=True)
        start = time.perf_counter()
        if name == "keras":
            with tempfile.TemporaryDirectory() as scratch:
                path = os.path.join(scratch, "model.keras")
                model.save(path)
                sizes[name] = os.path.getsize(path)
            runners[name] = functools.partial(detect, model, [image_bgr], *side)
            notes[name] = ".keras file; inference.detect (OpenCV preprocessing)"
            continue
        if name == "saved_model":
            path = os.path.join(directory, "saved_model")
            result = export.export_saved_model(model, path, args.size, *side)
            import tensorflow as tf

            serve = tf.saved_model.load(path).signatures["serving_default"]
            runners[name] = functools.partial(serve, images=tf.constant(image_rgb))
        elif name.startswith("tflite"):
            path = os.path.join(directory, f"{name}.tflite")
            fp16 = name.endswith("fp16")
            result = export.export_tflite(model, path, args.size, fp16, *side)
            import tensorflow as tf

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(model_path=path, num_threads=args.threads)
            runner = interpreter.get_signature_runner("serving_default")
            runners[name] = functools.partial(runner, images=image_rgb)
        else:
            try:
                import onnxruntime

                path = os.path.join(directory, "detector.onnx")
                result = export.export_onnx(model, path, args.size, *side)
            except (ImportError, export.OnnxExportError) as error:
                print(f"  skipped: {error}")
                continue
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
            runners[name] = functools.partial(session.run, None, {"images": image_rgb})
        sizes[name] = result.size_bytes
        notes[name] = f"export {time.perf_counter() - start:.0f} s"
        if result.flex_ops:
            notes[name] += f"; flex ops: {', '.join(result.flex_ops)}"
        print(f"  {notes[name]}", flush=True)

    print(f"timing {len(runners)} formats, {args.runs} rounds ...", flush=True)
    medians = interleaved_medians(runners, args.runs, args.warmup)
    print()
    print(
        f"ResNet50, {args.num_classes} classes, {height}x{width} uint8 input, batch 1, "
        f"median of {args.runs} interleaved runs after {args.warmup} warm-up, "
        f"{os.cpu_count()} CPU cores, {args.threads} TFLite/onnxruntime threads"
    )
    print()
    print("| format | size (MB) | median latency (ms) | notes |")
    print("|---|---:|---:|---|")
    for name, seconds in medians.items():
        print(f"| {name} | {sizes[name] / 2**20:.1f} | {1000 * seconds:.0f} | {notes[name]} |")
    print(f"\nartifacts in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
