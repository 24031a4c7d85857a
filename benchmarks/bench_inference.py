"""Inference time of ``retinanet_box`` against KerasHub's ``RetinaNetObjectDetector``.

Both are ResNet50-FPN RetinaNets with random weights on the TensorFlow backend, timed with
their own ``predict`` (ours: anchors, decoding, clipping and ``FilterDetections``; KerasHub:
delta decoding and its ``NonMaxSuppression``), on the same random input::

    python benchmarks/bench_inference.py                           # the issue's three cases
    python benchmarks/bench_inference.py --runs 2 --warmup 1 --cases 1:256x256 --no-retrace-check

Every (model, case, prior) runs in a fresh subprocess, one after another, so the peak memory
of one does not hide the next and both models see the same machine state. Per case the table
gives the first call (trace / compile), the median and interquartile range over ``--runs``
calls after ``--warmup`` calls, the forward pass alone (backbone + FPN + heads: a model
without the decoding), decode + NMS alone (each model's own decoding layers run on its own
forward outputs), the share of our ``FilterDetections`` alone in the total, the peak RSS, and
the FLOPs of the forward pass (TensorFlow profiler on the traced graph) with GFLOP/s =
FLOPs / median total time.

``--prior-probability`` sets the last classification conv of both models to the paper's
initialisation (kernel N(0, 0.01), bias ``-log((1 - p) / p)``), so every score starts near
``p``: 0.5 puts every (anchor, class) pair above the 0.05 threshold (the worst case for NMS),
0.01 (the training initialisation) puts none. The box heads' last convs are set to N(0, 0.01)
with zero bias in both, so the decoded boxes are the anchors plus small offsets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from machine import describe_cpu  # noqa: E402  (benchmarks/machine.py)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

DEFAULT_CASES = ["1:512x512", "1:800x1333", "8:512x512"]
MODELS = ("ours", "kerashub")


# --------------------------------------------------------------------------- shared helpers


def _int_or_none(text: str) -> int | None:
    return None if text.strip().lower() == "none" else int(text)


def parse_case(text: str) -> tuple[int, int, int]:
    """``"B:HxW"``, ``"HxW"`` or ``"S"`` (square) -> ``(batch, height, width)``."""
    batch_text, _, size_text = text.rpartition(":")
    height_text, _, width_text = size_text.partition("x")
    try:
        batch = int(batch_text) if batch_text else 1
        height = int(height_text)
        width = int(width_text) if width_text else height
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"bad case {text!r}: write BATCH:HEIGHTxWIDTH (1:512x512), HEIGHTxWIDTH or SIDE"
        ) from None
    return batch, height, width


def padded(size: int, multiple: int) -> int:
    return -(-size // multiple) * multiple


def current_rss_mb() -> float:
    """Resident set size of this process now (Linux ``/proc``), in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (``getrusage``, KiB on Linux), in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}"


def library_versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for package in ("tensorflow-cpu", "tensorflow", "keras", "keras-hub"):
        try:
            parts.append(f"{package} {version(package)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def load_average() -> str:
    return ", ".join(f"{v:.1f}" for v in os.getloadavg())


def in_rounds(specs: list[dict], rounds: int, variant_field: str = "label") -> list[dict]:
    """The specs ``rounds`` times over, the models of each case in alternating order.

    Round 0 runs each case's models in the given order, round 1 in reverse, and so on (ours,
    KerasHub, KerasHub, ours, ...), so that neither model always runs first: machine drift
    between processes (seen here: 5% between two back-to-back runs of the same model) then
    falls on both alike instead of on one.
    """
    cases: dict[str, list[dict]] = {}
    for spec in specs:
        key = json.dumps({k: v for k, v in spec.items() if k not in (variant_field, "title",
                          "model", "jit")}, sort_keys=True)  # fmt: skip
        cases.setdefault(key, []).append(spec)
    ordered = []
    for index in range(rounds):
        for group in cases.values():
            for spec in group if index % 2 == 0 else reversed(group):
                ordered.append(dict(spec, round=index, title=f"{spec['title']}, round {index + 1}"))
    return ordered


def merge_rounds(results: list[dict], raw_fields: dict[str, str]) -> list[dict]:
    """One result per spec from its rounds: the raw timings pooled and summarised again.

    ``raw_fields`` maps a raw list (``"totals"``) to the summary it feeds (``"total"``). The
    per-round medians of the first of them stay in ``round_medians`` (for the ratio's spread),
    the first calls in ``firsts``; ``first`` is their median and the peak memory their maximum.
    """
    import numpy as np

    merged: dict[str, dict] = {}
    for result in results:
        key = json.dumps({k: v for k, v in result.items() if k in ("label", "batch", "height",
                          "width", "prior")}, sort_keys=True)  # fmt: skip
        if "error" in result:
            merged.setdefault(key, result)
            continue
        primary = next(iter(raw_fields))
        if key not in merged or "error" in merged[key]:
            merged[key] = dict(result, firsts=[], round_medians={}, rounds=0)
        else:
            into = merged[key]
            for raw in raw_fields:
                into[raw] = list(into[raw]) + list(result[raw])
            if result["rss_peak"] > into["rss_peak"]:
                into["rss_peak"], into["rss_built"] = result["rss_peak"], result["rss_built"]
        into = merged[key]
        into["firsts"].append(result["first"])
        into["round_medians"][result.get("round", 0)] = float(np.median(result[primary]))
        into["rounds"] += 1
    for into in merged.values():
        if "error" in into:
            continue
        for raw, summary in raw_fields.items():
            into[summary] = summarise(into[raw])
        into["first"] = float(np.median(into["firsts"]))
    return list(merged.values())


def round_ratio_range(ours: dict, theirs: dict) -> str:
    """``min-max`` of the per-round ratios of medians, or ``-`` with a single round."""
    rounds = sorted(set(ours.get("round_medians", {})) & set(theirs.get("round_medians", {})))
    if len(rounds) < 2:
        return "-"
    ratios = [ours["round_medians"][r] / theirs["round_medians"][r] for r in rounds]
    return f"{min(ratios):.2f}-{max(ratios):.2f}"


def summarise(times: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(times, dtype=float)
    if values.size == 0:
        return {"median": float("nan"), "iqr": float("nan"), "min": float("nan")}
    p25, p50, p75 = np.percentile(values, [25, 50, 75])
    return {"median": float(p50), "iqr": float(p75 - p25), "min": float(values.min())}


def forward_flops(model: Any, shape: tuple[int, ...]) -> int | None:
    """Float operations of one forward call at ``shape``, from the TensorFlow profiler.

    Traces ``model(x, training=False)`` into a concrete function and sums the FLOP statistics
    TensorFlow registers per op (Conv2D counts 2 * MACs, plus adds, multiplies, ...).
    """
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    try:
        info = tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
    except Exception:  # noqa: BLE001 - the profiler is best effort; the table says n/a
        return None
    return int(info.total_float_ops)


def set_last_conv(layer: Any, prior_probability: float | None, seed: int) -> None:
    """Re-initialise a head's last conv: kernel N(0, 0.01), bias prior (or 0 when None)."""
    import math

    import numpy as np

    rng = np.random.default_rng(seed)
    kernel = rng.normal(0.0, 0.01, size=tuple(layer.kernel.shape)).astype("float32")
    layer.kernel.assign(kernel)
    bias = 0.0
    if prior_probability is not None:
        bias = -math.log((1.0 - prior_probability) / prior_probability)
    layer.bias.assign(np.full(tuple(layer.bias.shape), bias, dtype="float32"))


def build_kerashub_detector(
    num_classes: int,
    prior_probability: float = 0.01,
    score_threshold: float = 0.05,
    nms_threshold: float = 0.5,
    max_detections: int = 300,
    seed: int = 0,
) -> Any:
    """KerasHub's RetinaNet with a ResNet50 (v1, 3-4-6-3 bottlenecks) FPN, random weights.

    Built from its classes, without presets (no download): ``ResNetBackbone`` with the
    ResNet50 stack configuration, ``RetinaNetBackbone`` with levels 3..7 and ``use_p5=True``
    (KerasHub's name for P6 computed from the backbone's C5, as in the paper and in our
    model), and ``RetinaNetObjectDetector`` with its default anchor generator (3 scales x 3
    ratios, size 4 * stride: the same 9 anchors as ours) and label encoder. Its
    ``NonMaxSuppression`` decoder gets our thresholds and detection count. No preprocessor:
    the input is already a float image, as for ours.
    """
    import keras_hub

    encoder = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[7],
        stackwise_num_filters=[64, 128, 256, 512],
        stackwise_num_blocks=[3, 4, 6, 3],
        stackwise_num_strides=[1, 2, 2, 2],
        block_type="bottleneck_block",
        use_pre_activation=False,
    )
    backbone = keras_hub.models.RetinaNetBackbone(
        image_encoder=encoder, min_level=3, max_level=7, use_p5=True
    )
    decoder = keras_hub.layers.NonMaxSuppression(
        bounding_box_format="xyxy",
        from_logits=True,
        iou_threshold=nms_threshold,
        confidence_threshold=score_threshold,
        max_detections=max_detections,
    )
    detector = keras_hub.models.RetinaNetObjectDetector(
        backbone=backbone,
        num_classes=num_classes,
        bounding_box_format="xyxy",
        prediction_decoder=decoder,
    )
    # KerasHub puts its prior-probability bias on the box head and leaves the class logits
    # at bias 0; set both last convs as the paper (and our model) does.
    set_last_conv(detector.classification_head.prediction_layer, prior_probability, seed)
    set_last_conv(detector.box_head.prediction_layer, None, seed + 1)
    return detector


def run_workers(script: str, specs: list[dict], label: str) -> list[dict]:
    """Run each spec in a fresh ``python script --worker SPEC`` and collect its JSON result."""
    results = []
    for index, spec in enumerate(specs):
        print(f"[{index + 1}/{len(specs)}] {label}: {spec['title']}", file=sys.stderr, flush=True)
        process = subprocess.run(
            [sys.executable, script, "--worker", json.dumps(spec)],
            capture_output=True,
            text=True,
        )
        lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode != 0 or not lines:
            tail = "\n".join(process.stderr.strip().splitlines()[-15:])
            print(f"    failed (exit {process.returncode}):\n{tail}", file=sys.stderr)
            results.append(dict(spec, error=tail.splitlines()[-1] if tail else "no output"))
            continue
        results.append(json.loads(lines[-1][len("RESULT ") :]))
    return results


# --------------------------------------------------------------------------- worker


def batch_caller(model: Any, api: str, kerashub_detector: bool = False) -> Any:
    """``f(images) -> NumPy outputs`` for one batch through ``model``'s predict function.

    ``api="batch"``: ``predict_on_batch`` (what ``keras_retinanet.inference.detect`` uses).
    KerasHub's detector fails there (its ``decode_predictions`` unpacks the 1-tuple that
    ``predict_on_batch`` passes), so its predict function is called directly with the batch,
    as its ``predict`` does. ``api="predict"``: ``model.predict``, which adds a data adapter
    and callbacks per call (0.05-0.2 s on a 2-core machine).
    """
    import numpy as np
    import tensorflow as tf

    if api == "predict":
        return lambda images: model.predict(images, batch_size=len(images), verbose=0)
    if kerashub_detector:
        model.make_predict_function()
        return lambda images: tf.nest.map_structure(np.asarray, model.predict_function([images]))
    return model.predict_on_batch


def timed(function: Any) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def build_ours(spec: dict) -> tuple[Any, Any]:
    from keras_retinanet import models

    training_model = models.retinanet_model(
        spec["num_classes"], weights=None, prior_probability=spec["prior"]
    )
    prediction_model = models.retinanet_box(
        training_model,
        score_threshold=spec["score_threshold"],
        nms_threshold=spec["nms_threshold"],
        max_detections=spec["max_detections"],
        pre_nms_top_k=spec["pre_nms_top_k"],
        pre_nms_top_k_per_level=spec["pre_nms_top_k_per_level"],
        jit_compile=spec["jit"],
    )
    training_model.jit_compile = spec["jit"]
    return prediction_model, training_model


def ours_stages(prediction_model: Any, images: Any, jit: bool) -> tuple[Any, list, Any, list]:
    """Our decode + NMS stage, and FilterDetections alone, as functions of the model's outputs.

    Calls the inference model's own layers (anchors, decoding, clipping, filtering) on the
    pyramid features and head outputs computed once by the forward pass.

    Returns:
        ``(stage, stage_inputs, filter_only, filter_inputs)``: two ``tf.function`` s and the
        tensors to call them with.
    """
    import keras
    import tensorflow as tf
    from keras import ops

    filter_layer = prediction_model.get_layer("filtered_detections")
    anchor_layers = [
        layer for layer in prediction_model.layers if layer.name.startswith("anchors_")
    ]
    features = [layer.input for layer in anchor_layers]
    head_outputs = [
        prediction_model.get_layer(name).output for name in ("regression", "classification")
    ]
    probe = keras.Model(prediction_model.inputs, features + head_outputs + list(filter_layer.input))
    values = [tf.constant(v) for v in probe.predict(images, verbose=0)]
    count = len(features)
    stage_inputs = [tf.constant(images)] + values[: count + 2]
    filter_inputs = values[count + 2 :]
    per_level = filter_layer.pre_nms_top_k_per_level is not None

    def decode_and_filter(image: Any, *tensors: Any) -> Any:
        level_anchors = [layer(f) for layer, f in zip(anchor_layers, tensors[:count])]
        regression, classification = tensors[count], tensors[count + 1]
        anchors = ops.concatenate(level_anchors, axis=1)
        boxes = prediction_model.get_layer("boxes")([anchors, regression])
        boxes = prediction_model.get_layer("clipped_boxes")([image, boxes])
        return filter_layer([boxes, classification] + (level_anchors if per_level else []))

    stage = tf.function(decode_and_filter, jit_compile=jit)
    filter_only = tf.function(lambda *tensors: filter_layer(list(tensors)), jit_compile=jit)
    return stage, stage_inputs, filter_only, filter_inputs


def inference_worker(spec: dict) -> dict:
    import keras
    import numpy as np
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    batch, height, width = spec["batch"], spec["height"], spec["width"]
    images = np.random.default_rng(0).uniform(-120, 150, size=(batch, height, width, 3))
    images = images.astype("float32")

    if spec["model"] == "ours":
        prediction_model, forward_model = build_ours(spec)
    else:
        prediction_model = build_kerashub_detector(
            spec["num_classes"],
            spec["prior"],
            spec["score_threshold"],
            spec["nms_threshold"],
            spec["max_detections"],
        )
        forward_model = keras.Model(
            prediction_model.inputs,
            {
                name: prediction_model.get_layer(name).output
                for name in ("bbox_regression", "cls_logits")
            },
        )
    rss_built = current_rss_mb()
    predict = batch_caller(prediction_model, spec["api"], spec["model"] == "kerashub")
    forward = batch_caller(forward_model, spec["api"])

    first = timed(lambda: predict(images))
    forward_first = timed(lambda: forward(images))

    # The decode + NMS stage alone, on the model's own outputs.
    if spec["model"] == "ours":
        stage, stage_inputs, filter_only, filter_inputs = ours_stages(
            prediction_model, images, spec["jit"]
        )
        scores = np.asarray(filter_inputs[1])
    else:
        outputs = forward(images)
        stage_inputs = [
            tf.constant(outputs["bbox_regression"]),
            tf.constant(outputs["cls_logits"]),
            tf.constant(images),
        ]

        def decode(box_deltas: Any, logits: Any, x: Any) -> Any:
            return prediction_model.decode_predictions(
                {"bbox_regression": box_deltas, "cls_logits": logits}, x
            )

        stage = tf.function(decode)
        filter_only, filter_inputs = None, None
        scores = 1.0 / (1.0 + np.exp(-np.asarray(outputs["cls_logits"], dtype="float64")))
    above = float((scores > spec["score_threshold"]).sum() / batch)

    def run_stage() -> None:
        for value in tf.nest.flatten(stage(*stage_inputs)):
            value.numpy()

    def run_filter() -> None:
        if filter_only is not None:
            for value in tf.nest.flatten(filter_only(*filter_inputs)):
                value.numpy()

    stage_first = timed(run_stage)
    run_filter()

    for _ in range(spec["warmup"]):
        predict(images)
        forward(images)
        run_stage()
        run_filter()
    totals, cpu_totals, forwards, stages, filters = [], [], [], [], []
    for _ in range(spec["runs"]):  # interleaved, so that load changes hit all alike
        cpu_start = time.process_time()
        totals.append(timed(lambda: predict(images)))
        cpu_totals.append(time.process_time() - cpu_start)
        forwards.append(timed(lambda: forward(images)))
        stages.append(timed(run_stage))
        if filter_only is not None:
            filters.append(timed(run_filter))
    rss_peak = peak_rss_mb()

    outputs = predict(images)
    if spec["model"] == "ours":
        detections = float((np.asarray(outputs[2]) >= 0).sum() / batch)
    else:
        detections = float(np.asarray(outputs["num_detections"]).mean())

    flops = forward_flops(forward_model, (batch, height, width, 3)) if spec["flops"] else None
    return dict(
        spec,
        first=first,
        forward_first=forward_first,
        stage_first=stage_first,
        total=summarise(totals),
        cpu=summarise(cpu_totals),
        forward=summarise(forwards),
        stage=summarise(stages),
        filter=summarise(filters),
        totals=totals,
        cpu_totals=cpu_totals,
        forwards=forwards,
        stages=stages,
        filters=filters,
        rss_built=rss_built,
        rss_peak=rss_peak,
        scores_above=above,
        detections=detections,
        flops=flops,
        params=int(forward_model.count_params()),
    )


def retrace_worker(spec: dict) -> dict:
    """Images of several sizes through ``inference.detect``: traces and time per call."""
    import keras
    import numpy as np

    from keras_retinanet import inference, models

    training_model = models.retinanet_model(spec["num_classes"], weights=None)
    base = models.retinanet_box(training_model)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, size=(h, w, 3), dtype=np.uint8) for h, w in spec["image_sizes"]]
    rows = []
    for jit in spec["jit_modes"]:
        for pad_multiple in spec["pad_multiples"]:
            model = keras.Model(base.inputs, base.outputs)  # fresh predict function
            model.jit_compile = jit
            seen: set[tuple[int, int]] = set()
            for image in images:
                batch, _ = inference.prepare_batch(
                    [image], spec["min_side"], spec["max_side"], pad_multiple
                )
                shape = tuple(batch.shape[1:3])
                start = time.perf_counter()
                inference.detect(
                    model, [image], spec["min_side"], spec["max_side"], 0.0, pad_multiple
                )
                seconds = time.perf_counter() - start
                rows.append(
                    dict(
                        jit=jit,
                        pad_multiple=pad_multiple,
                        image=list(image.shape[:2]),
                        input=list(shape),
                        new_shape=shape not in seen,
                        seconds=seconds,
                        traces=int(model.predict_function.experimental_get_tracing_count()),
                    )
                )
                seen.add(shape)
    return dict(spec, rows=rows)


# --------------------------------------------------------------------------- tables


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{value:.{digits}f}"


def print_inference_tables(results: list[dict]) -> None:
    print(
        "\n| batch | input | prior | pairs>thr/img | model | first s | median s | IQR s "
        "| CPU s | s/img | forward s | decode+NMS s | FilterDet. % | dets/img | peak RSS MB "
        "| +RSS MB | GFLOP | GFLOP/s |"
    )
    print("|" + "---|" * 18)
    for r in results:
        case = f"{r['batch']} | {r['height']}x{r['width']} | {r['prior']:g}"
        if "error" in r:
            print(f"| {case} | | {r['label']} | failed: {r['error']} |" + " |" * 11)
            continue
        total, forward = r["total"]["median"], r["forward"]["median"]
        share = fmt(100 * r["filter"]["median"] / total, 1) if r["model"] == "ours" else "-"
        gflop = r["flops"] / 1e9 if r["flops"] else None
        rate = gflop / total if gflop else None
        print(
            f"| {case} | {r['scores_above']:.0f} | {r['label']} | {fmt(r['first'], 2)} "
            f"| {fmt(total)} | {fmt(r['total']['iqr'])} | {fmt(r['cpu']['median'], 2)} "
            f"| {fmt(total / r['batch'])} "
            f"| {fmt(forward)} | {fmt(r['stage']['median'])} | {share} | {r['detections']:.0f} "
            f"| {r['rss_peak']:.0f} | {r['rss_peak'] - r['rss_built']:.0f} | {fmt(gflop, 1)} "
            f"| {fmt(rate, 1)} |"
        )

    print("\nRatios of medians (< 1: ours faster):\n")
    print(
        "| batch | input | prior | ours / KerasHub total | per round | forward "
        "| decode+NMS (measured alone) |"
    )
    print("|---|---|---|---|---|---|---|")
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in results:
        if "error" not in r:
            key = (r["batch"], r["height"], r["width"], r["prior"])
            by_key.setdefault(key, {})[r["label"]] = r
    for (batch, height, width, prior), group in by_key.items():
        ours, theirs = group.get("ours"), group.get("KerasHub")
        if ours and theirs:
            ratio = ours["total"]["median"] / theirs["total"]["median"]
            forward = ours["forward"]["median"] / theirs["forward"]["median"]
            stage = ours["stage"]["median"] / theirs["stage"]["median"]
            print(
                f"| {batch} | {height}x{width} | {prior:g} | {ratio:.2f} "
                f"| {round_ratio_range(ours, theirs)} | {forward:.2f} | {stage:.2f} |"
            )
        xla = group.get("ours XLA")
        if ours and xla:
            ratio = xla["total"]["median"] / ours["total"]["median"]
            print(
                f"| {batch} | {height}x{width} | {prior:g} | XLA / no XLA (ours): {ratio:.2f} "
                f"| {round_ratio_range(xla, ours)} "
                f"| {xla['forward']['median'] / ours['forward']['median']:.2f} "
                f"| {xla['stage']['median'] / ours['stage']['median']:.2f} |"
            )


def print_retrace_table(result: dict) -> None:
    if "error" in result:
        print(f"\nretrace check failed: {result['error']}")
        return
    print(
        f"\nRetracing: inference.detect on images of several sizes (min_side "
        f"{result['min_side']}, max_side {result['max_side']}); 'traces' counts the traces of "
        "the model's predict function so far; XLA compiles once per new input shape.\n"
    )
    print("| XLA | pad to | image | input | new shape | seconds | traces |")
    print("|---|---|---|---|---|---|---|")
    for row in result["rows"]:
        print(
            f"| {'on' if row['jit'] else 'off'} | {row['pad_multiple']} "
            f"| {row['image'][0]}x{row['image'][1]} | {row['input'][0]}x{row['input'][1]} "
            f"| {'yes' if row['new_shape'] else 'no'} | {row['seconds']:.2f} "
            f"| {row['traces']} |"
        )


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cases",
        nargs="+",
        type=parse_case,
        default=None,
        help=f"BATCH:HEIGHTxWIDTH cases (default: {' '.join(DEFAULT_CASES)})",
    )
    parser.add_argument(
        "--sizes", nargs="+", help="HEIGHTxWIDTH or SIDE; with --batches, replaces --cases"
    )
    parser.add_argument("--batches", nargs="+", type=int, default=[1])
    parser.add_argument("--runs", type=int, default=10, help="timed calls after warm-up")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="run every (model, case) process this many times, the models' order alternating "
        "(ours first, then KerasHub first, ...); the timings of all rounds are pooled",
    )
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls after the first")
    parser.add_argument("--num-classes", type=int, default=20)
    parser.add_argument(
        "--prior-probability",
        type=float,
        nargs="+",
        default=[0.5, 0.01],
        help="initial score level(s): 0.5 all candidates above the threshold, 0.01 none",
    )
    parser.add_argument(
        "--pad-multiple",
        type=int,
        default=32,
        help="pad sizes up to this (KerasHub's FPN needs multiples of 32)",
    )
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument(
        "--api",
        choices=("batch", "predict"),
        default="batch",
        help="time predict_on_batch-style calls (default) or model.predict()",
    )
    parser.add_argument("--no-xla", action="store_true", help="skip the ours + XLA rows")
    parser.add_argument("--no-flops", action="store_true", help="skip the FLOP count")
    parser.add_argument("--no-retrace-check", action="store_true")
    parser.add_argument(
        "--retrace-sizes",
        nargs="+",
        default=["375x500", "333x500", "500x375", "480x640", "400x600"],
        help="original image sizes for the retrace check",
    )
    parser.add_argument("--retrace-min-side", type=int, default=512)
    parser.add_argument("--retrace-max-side", type=int, default=853)
    parser.add_argument("--score-threshold", type=float, default=0.05)
    parser.add_argument("--nms-threshold", type=float, default=0.5)
    parser.add_argument("--max-detections", type=int, default=300)
    # The library's defaults: 1000 per pyramid level, no global cap ("none").
    parser.add_argument("--pre-nms-top-k", type=_int_or_none, default=None)
    parser.add_argument("--pre-nms-top-k-per-level", type=_int_or_none, default=1000)
    parser.add_argument("--json", help="also write the raw results to this file")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def build_specs(args: argparse.Namespace) -> list[dict]:
    if args.sizes:
        cases = [(b,) + parse_case(s)[1:] for s in args.sizes for b in args.batches]
    else:
        cases = args.cases or [parse_case(c) for c in DEFAULT_CASES]
    variants = []
    if "ours" in args.models:
        variants.append(("ours", "ours", False))
        if not args.no_xla:
            variants.append(("ours", "ours XLA", True))
    if "kerashub" in args.models:
        variants.append(("kerashub", "KerasHub", False))
    specs = []
    for batch, height, width in cases:
        height, width = padded(height, args.pad_multiple), padded(width, args.pad_multiple)
        for prior in args.prior_probability:
            for model, label, jit in variants:
                specs.append(
                    dict(
                        kind="inference",
                        title=f"{label}, batch {batch}, {height}x{width}, prior {prior:g}",
                        model=model,
                        label=label,
                        jit=jit,
                        batch=batch,
                        height=height,
                        width=width,
                        prior=prior,
                        num_classes=args.num_classes,
                        runs=args.runs,
                        warmup=args.warmup,
                        score_threshold=args.score_threshold,
                        nms_threshold=args.nms_threshold,
                        max_detections=args.max_detections,
                        pre_nms_top_k=args.pre_nms_top_k,
                        pre_nms_top_k_per_level=args.pre_nms_top_k_per_level,
                        flops=not args.no_flops and not jit,
                        api=args.api,
                    )
                )
    return specs


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(describe_cpu(), flush=True)  # every figure below is this CPU's
    if args.worker:
        spec = json.loads(args.worker)
        worker = inference_worker if spec["kind"] == "inference" else retrace_worker
        print("RESULT " + json.dumps(worker(spec)), flush=True)
        return

    load_before = load_average()
    specs = in_rounds(build_specs(args), args.rounds)
    results = merge_rounds(
        run_workers(__file__, specs, "inference"),
        {"totals": "total", "cpu_totals": "cpu", "forwards": "forward", "stages": "stage",
         "filters": "filter"},
    )  # fmt: skip
    retrace = None
    if not args.no_retrace_check:
        retrace_spec = dict(
            kind="retrace",
            title="retrace check",
            num_classes=args.num_classes,
            image_sizes=[parse_case(s)[1:] for s in args.retrace_sizes],
            min_side=args.retrace_min_side,
            max_side=args.retrace_max_side,
            pad_multiples=[1, 128],
            jit_modes=[False] if args.no_xla else [False, True],
        )
        retrace = run_workers(__file__, [retrace_spec], "retrace")[0]

    print(f"\nmachine: {machine_description()}")
    print(f"python {platform.python_version()}, {library_versions()}")
    print(f"load average (1, 5, 15 min) before: {load_before}; after: {load_average()}")
    print(
        f"{args.num_classes} classes, score threshold {args.score_threshold}, NMS IoU "
        f"{args.nms_threshold}, {args.max_detections} detections, pre-NMS top-k "
        f"{args.pre_nms_top_k} (per level: {args.pre_nms_top_k_per_level}); {args.rounds} "
        f"round(s) of {args.runs} runs after {args.warmup} warm-up calls, pooled; wall seconds "
        "per call of "
        f"{'model.predict()' if args.api == 'predict' else 'the predict function on a batch'}"
    )
    print_inference_tables(results)
    if retrace is not None:
        print_retrace_table(retrace)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"inference": results, "retrace": retrace}, f, indent=1)


if __name__ == "__main__":
    main()
