"""Size, CPU latency and VOC mAP of the exported detectors (float, fp16 and int8).

Without ``--snapshot`` it builds a ResNet50 RetinaNet for 20 classes (random weights: latency
does not depend on the values), exports it at 512 x 512 to each format and times batch-1
inference. With a trained ``--snapshot`` and its VOC-layout ``--dataset``, every artifact
also detects on the dataset's test split and the table gains VOC mAP@0.5 (11-point, the
devkit's), so the cost of int8 is a number; the int8 artifacts are calibrated on the
dataset's ``trainval`` images::

    python benchmarks/bench_export.py                  # 512 x 512, 10 timed rounds
    python benchmarks/bench_export.py --size 384 640 --runs 20 --formats keras tflite
    python benchmarks/bench_export.py --backbone mobilenet_v3_small_lite
    python benchmarks/bench_export.py --snapshot demo_output/snapshots/resnet50_voc_best.keras \
        --dataset demo_output/shapes --size 160 160

Every format runs the same work: uint8 RGB image in, resize/normalise, network, box decoding,
NMS, boxes in image pixels out; the Keras rows run ``inference.detect`` (OpenCV preprocessing
and ``predict_on_batch``), ``keras_bf16`` with the network in bfloat16
(:func:`keras_retinanet.model.precision.with_precision`). The mAP column scores each row the
way ``retinanet-evaluate`` does: the Keras model, or the exported file itself through
:func:`keras_retinanet.export.runtime.load_artifact`. Latency ratios are to Keras float32.
The classification bias is set so that anchors score about 0.1, above the 0.05 threshold, so NMS
sees its full 1000 candidates as on a real photo rather than the empty candidate list of an
untrained net. Each format warms up (first call, graph
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

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

FORMATS = (
    "keras",
    "keras_bf16",
    "saved_model",
    "tflite",
    "tflite_fp16",
    "tflite_int8",
    "onnx",
    "onnx_int8",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=[512, 512], metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument(
        "--backbone", default="resnet50", help="without --snapshot: the preset built (random)"
    )
    parser.add_argument("--runs", type=int, default=10, help="timed runs per format (>= 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first")
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count(), help="TFLite / onnxruntime threads"
    )
    parser.add_argument("--output-dir", default=None, help="keep the artifacts here")
    parser.add_argument("--snapshot", help="a trained snapshot (training or inference)")
    parser.add_argument("--dataset", help="with --snapshot: its VOC-layout dataset folder")
    parser.add_argument("--test-split", default="test", help="split scored for mAP")
    parser.add_argument("--calibration-images", type=int, default=100)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also print where onnxruntime spends each ONNX artifact's time, by op type",
    )
    args = parser.parse_args(argv)
    if bool(args.snapshot) != bool(args.dataset):
        parser.error("--snapshot and --dataset go together")
    return args


def onnx_op_times(path: str, images, threads: int, runs: int = 3) -> dict[str, float]:
    """Milliseconds per call that onnxruntime spends in each op type (its own profiler),
    and under ``"call"`` the whole call's. A ``Loop`` (the NMS) counts its body's ops too."""
    import json

    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(tempfile.mkdtemp(prefix="ort_profile_"), "run")
    session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for _ in range(1 + runs):  # the first call is a warm-up, left out below
        session.run(None, {"images": images})
    with open(session.end_profiling()) as f:
        events = json.load(f)
    calls = [e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    if len(calls) != 1 + runs:
        raise RuntimeError(f"expected {1 + runs} model_run events in onnxruntime's profile")
    warm_up_ends = calls[0]["ts"] + calls[0]["dur"]
    times = {"call": sum(e["dur"] for e in calls[1:]) / 1000 / runs}
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            if event["ts"] >= warm_up_ends:
                op = event["args"]["op_name"]
                times[op] = times.get(op, 0.0) + event["dur"] / 1000 / runs
    return times


def print_onnx_profile(paths: dict[str, str], images, threads: int, top: int = 8) -> None:
    profiles = {name: onnx_op_times(path, images, threads) for name, path in paths.items()}
    ranked: list[str] = []
    for times in profiles.values():
        ops = sorted((op for op in times if op != "call"), key=times.get, reverse=True)
        ranked += [op for op in ops[:top] if op not in ranked]
    print("\nonnxruntime's profile: ms per call by op type (share of the call)\n")
    print("| op type | " + " | ".join(profiles) + " |")
    print("|---|" + "---:|" * len(profiles))
    for op in [*ranked, "call"]:
        cells = [
            f"{times[op]:.1f} ({times[op] / times['call']:.0%})" if op in times else "-"
            for times in profiles.values()
        ]
        print(f"| {'whole call' if op == 'call' else op} | " + " | ".join(cells) + " |")


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


def build_model(num_classes: int, backbone: str = "resnet50"):
    import keras

    from keras_retinanet import models
    from keras_retinanet.model import layers

    keras.utils.set_random_seed(0)
    training = models.retinanet_model(num_classes, backbone=backbone, weights=None)
    output = training.get_layer("classification_submodel").get_layer("pyramid_classification")
    *kernels, bias = output.get_weights()  # a separable (lite) head has two kernels
    output.set_weights([*kernels, bias * 0 + layers.prior_bias(0.1)])
    return models.retinanet_box(training)


def voc_map(model, generator) -> float:
    """VOC07 mAP@0.5 of ``model`` on every image of ``generator``, as ``retinanet-evaluate``
    scores it: a Keras inference model, or an exported artifact opened by
    :func:`keras_retinanet.export.runtime.load_artifact` (the file a user ships)."""
    from keras_retinanet.evaluation.runner import evaluate

    return evaluate(generator, model, metric="voc07", verbose=0).mean_average_precision


def keras_call(model, side):
    """The Keras row as an artifact: ``inference.detect`` on the RGB batch's one image."""
    import numpy as np

    from keras_retinanet.inference import detect

    def call(images_rgb):
        found = detect(model, [np.ascontiguousarray(images_rgb[0, :, :, ::-1])], *side)[0]
        pad = 300 - len(found)
        return {
            "boxes": np.pad(found.boxes, ((0, pad), (0, 0)))[None],
            "scores": np.pad(found.scores, (0, pad), constant_values=-1)[None],
            "labels": np.pad(found.labels, (0, pad), constant_values=-1)[None],
            "num_detections": np.array([len(found)]),
        }

    return call


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    import numpy as np

    from keras_retinanet import export, models

    height, width = args.size
    side = min(height, width), max(height, width)  # the network sees the image unresized
    image_rgb = np.random.default_rng(0).integers(0, 256, (1, height, width, 3), dtype=np.uint8)
    generator = calibration = None
    if args.snapshot:
        from keras_retinanet.preprocessing.voc import PascalVocGenerator

        print(f"loading {args.snapshot} ...", flush=True)
        model = models.load_model(args.snapshot, convert=True)
        metadata = models.read_metadata(args.snapshot)
        side = metadata.get("image_min_side", side[0]), metadata.get("image_max_side", side[1])
        classes = os.path.join(args.dataset, "classes.txt")
        generator = PascalVocGenerator(
            args.dataset,
            args.test_split,
            classes=classes if os.path.isfile(classes) else None,
            shuffle=False,
            image_min_side=side[0],
            image_max_side=side[1],
        )
        calibration = args.dataset
    else:
        print(f"building {args.backbone} RetinaNet, {args.num_classes} classes ...", flush=True)
        model = build_model(args.num_classes, args.backbone)
        # Calibrate on random images here: the latency does not depend on the ranges.
        calibration = [image_rgb[0, :, :, ::-1]] * 8
    directory = args.output_dir or tempfile.mkdtemp(prefix="bench_export_")
    os.makedirs(directory, exist_ok=True)
    runners: dict[str, Callable[[], object]] = {}
    evaluated: dict[str, object] = {}  # what the mAP column scores: the model or the artifact
    sizes: dict[str, int] = {}
    notes: dict[str, str] = {}
    for name in args.formats:
        print(f"exporting {name} ...", flush=True)
        start = time.perf_counter()
        if name in ("keras", "keras_bf16"):
            from keras_retinanet.model.precision import with_precision

            precision = "bfloat16" if name == "keras_bf16" else "float32"
            evaluated[name] = with_precision(model, precision)
            with tempfile.TemporaryDirectory() as scratch:
                path = os.path.join(scratch, "model.keras")
                model.save(path)
                sizes[name] = os.path.getsize(path)
            runners[name] = keras_call(evaluated[name], side)
            notes[name] = f"{precision}; inference.detect (OpenCV preprocessing)"
            continue
        if name == "saved_model":
            path = os.path.join(directory, "saved_model")
            result = export.export_saved_model(model, path, args.size, *side)
            import tensorflow as tf

            serve = tf.saved_model.load(path).signatures["serving_default"]
            runners[name] = lambda images, serve=serve: {
                k: v.numpy() for k, v in serve(images=tf.constant(images)).items()
            }
        elif name.startswith("tflite"):
            path = os.path.join(directory, f"{name}.tflite")
            fp16 = name.endswith("fp16")
            int8 = dict(int8=True, calibration=calibration) if name.endswith("int8") else {}
            int8_count = dict(calibration_images=args.calibration_images) if int8 else {}
            result = export.export_tflite(model, path, args.size, fp16, *side, **int8, **int8_count)
            import tensorflow as tf

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                interpreter = tf.lite.Interpreter(model_path=path, num_threads=args.threads)
            runner = interpreter.get_signature_runner("serving_default")
            runners[name] = lambda images, runner=runner: runner(images=images)
        else:
            try:
                import onnxruntime

                path = os.path.join(directory, f"{name}.onnx")
                int8 = name.endswith("int8")
                result = export.export_onnx(
                    model,
                    path,
                    args.size,
                    *side,
                    int8=int8,
                    calibration=calibration if int8 else None,
                    calibration_images=args.calibration_images,
                )
            except (ImportError, export.OnnxExportError) as error:
                print(f"  skipped: {error}")
                continue
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = args.threads
            session = onnxruntime.InferenceSession(
                path, options, providers=["CPUExecutionProvider"]
            )
            names = [output.name for output in session.get_outputs()]
            runners[name] = lambda images, session=session, names=names: dict(
                zip(names, session.run(None, {"images": images}))
            )
        sizes[name] = result.size_bytes
        if generator is not None:
            from keras_retinanet.export.runtime import load_artifact

            evaluated[name] = load_artifact(path)
        notes[name] = f"export {time.perf_counter() - start:.0f} s"
        if result.flex_ops:
            notes[name] += f"; flex ops: {', '.join(result.flex_ops)}"
        print(f"  {notes[name]}", flush=True)

    print(f"timing {len(runners)} formats, {args.runs} rounds ...", flush=True)
    calls = {name: functools.partial(run, image_rgb) for name, run in runners.items()}
    medians = interleaved_medians(calls, args.runs, args.warmup)
    maps = {}
    if generator is not None:
        for name in runners:
            print(f"mAP of {name} on {generator.size()} {args.test_split} images ...", flush=True)
            maps[name] = voc_map(evaluated[name], generator)
    print()
    print(
        f"{args.snapshot or args.backbone + ', random weights'}, "
        f"{generator.num_classes() if generator else args.num_classes} classes, "
        f"{height}x{width} uint8 input, batch 1, "
        f"median of {args.runs} interleaved runs after {args.warmup} warm-up, "
        f"{os.cpu_count()} CPU cores, {args.threads} TFLite/onnxruntime threads"
    )
    print()
    reference = medians.get("keras") or medians.get("tflite")
    print("| format | size (MB) | median latency (ms) | latency / keras | VOC07 mAP@0.5 | notes |")
    print("|---|---:|---:|---:|---:|---|")
    for name, seconds in medians.items():
        ratio = f"{seconds / reference:.2f}" if reference else "n/a"
        score = f"{maps[name]:.4f}" if name in maps else "n/a"
        print(
            f"| {name} | {sizes[name] / 2**20:.1f} | {1000 * seconds:.0f} | {ratio} | {score} "
            f"| {notes[name]} |"
        )
    if args.profile:
        onnx_paths = {n: os.path.join(directory, f"{n}.onnx") for n in runners if "onnx" in n}
        print_onnx_profile(onnx_paths, image_rgb, args.threads)
    print(f"\nartifacts in {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
