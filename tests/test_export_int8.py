"""int8 artifacts (``retinanet-export --int8 --calibration DATASET``): TFLite and ONNX.

Each artifact runs with its runtime alone (no Keras, no keras_retinanet) and must find what
the float model finds on the scene of ``test_export``: every confident float detection has an
int8 detection of its class on the same object (IoU >= 0.5). The mAP cost on a trained model
is measured by ``benchmarks/bench_export.py``.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_export import (
    IMAGE_SHAPE,
    KERAS_FREE,
    MAX_SIDE,
    MIN_SIDE,
    ONNX_CODE,
    TFLITE_CODE,
    as_outputs,
    detector,  # noqa: F401  (the module-scoped fixture)
    rgb,
    run_isolated,
    scene,
)

from keras_retinanet import export
from keras_retinanet.cli import export as export_cli


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    overlap = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    return overlap / (area + np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) - overlap)


def assert_finds_the_same_objects(reference, outputs, min_score: float = 0.5) -> int:
    """Every reference detection scoring >= ``min_score`` has an int8 detection of its
    label at IoU >= 0.5 whose score is within 0.15; returns how many were checked."""
    count = int(outputs["num_detections"][0])
    boxes, scores = outputs["boxes"][0][:count], outputs["scores"][0][:count]
    labels = outputs["labels"][0][:count]
    confident = reference.scores >= min_score
    for box, score, label in zip(
        reference.boxes[confident], reference.scores[confident], reference.labels[confident]
    ):
        same = (labels == label) & (iou(box, boxes) >= 0.5) & (np.abs(scores - score) < 0.15)
        assert same.any(), f"int8 lost {label=} {score=:.3f} {box=}"
    return int(confident.sum())


@pytest.fixture(scope="module")
def calibration_folder(tmp_path_factory):
    """A folder of images from the detector's domain (other seeds of the same scene)."""
    folder = tmp_path_factory.mktemp("calibration")
    for seed in range(2, 10):
        cv2.imwrite(str(folder / f"scene_{seed}.png"), scene(IMAGE_SHAPE, seed=seed))
    return folder


def test_int8_tflite_runs_alone_and_finds_the_objects(detector, calibration_folder, tmp_path):  # noqa: F811
    model, image, reference = detector
    path = tmp_path / "int8.tflite"
    float_path = tmp_path / "float.tflite"
    result = export.export_tflite(
        model, str(path), IMAGE_SHAPE, min_side=MIN_SIDE, max_side=MAX_SIDE,
        int8=True, calibration=str(calibration_folder),
    )  # fmt: skip
    float_size = export.export_tflite(
        model, str(float_path), IMAGE_SHAPE, min_side=MIN_SIDE, max_side=MAX_SIDE
    ).size_bytes
    # Every convolution of the network runs in int8; the file holds ~1 byte per weight.
    quantised, total = export.int8_convolutions(path.read_bytes())
    assert quantised == total > 50
    assert result.size_bytes < 0.3 * float_size
    assert "calibrated on 8 images" in " ".join(result.notes)
    assert result.flex_ops == []  # builtin ops only: the LiteRT runtime runs it as it is
    outputs = run_isolated(
        tmp_path, TFLITE_CODE, KERAS_FREE, path=str(path), images=rgb(image)[None]
    )
    assert assert_finds_the_same_objects(reference, outputs) >= 2
    # retinanet-evaluate/-predict read the int8 file as they read the float one.
    from keras_retinanet.export.runtime import load_artifact

    artifact = load_artifact(path)
    assert artifact.format == "tflite" and artifact.image_size == tuple(IMAGE_SHAPE)
    (found,) = artifact.detect_images([image])
    assert assert_finds_the_same_objects(reference, as_outputs(found)) >= 2


@pytest.mark.slow  # tf2onnx takes about a minute on a ResNet50, calibration another
def test_int8_onnx_runs_alone_and_finds_the_objects(detector, calibration_folder, tmp_path):  # noqa: F811
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    model, image, reference = detector
    path = tmp_path / "int8.onnx"
    result = export.export_onnx(
        model, str(path), IMAGE_SHAPE, min_side=MIN_SIDE, max_side=MAX_SIDE,
        int8=True, calibration=str(calibration_folder),
    )  # fmt: skip
    assert "calibrated on 8 images" in " ".join(result.notes)
    import onnx

    proto = onnx.load(str(path))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "Loop"} <= ops  # NMS inside
    # QDQ: every convolution's weight comes through a DequantizeLinear of int8 values.
    weights_int8 = {i.name for i in proto.graph.initializer if i.data_type == onnx.TensorProto.INT8}
    dequantised = {n.output[0] for n in proto.graph.node
                   if n.op_type == "DequantizeLinear" and n.input[0] in weights_int8}  # fmt: skip
    convs = [n for n in proto.graph.node if n.op_type == "Conv"]
    assert len(convs) > 50 and all(n.input[1] in dequantised for n in convs)
    outputs = run_isolated(
        tmp_path, ONNX_CODE, (*KERAS_FREE, "tensorflow"), path=str(path), images=rgb(image)[None]
    )
    assert assert_finds_the_same_objects(reference, outputs) >= 2


def test_calibration_errors_name_the_folder_and_the_fix(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no images .* in .*empty"):
        export.calibration_paths(str(empty))
    with pytest.raises(FileNotFoundError, match="calibration data not found: .*missing"):
        export.calibration_paths(str(tmp_path / "missing"))
    # A VOC root: its trainval split, spread evenly when there are more than asked for.
    root = tmp_path / "voc"
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    names = [f"{i:03d}" for i in range(10)]
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("\n".join(names[:7]) + "\n")
    for name in names:
        cv2.imwrite(str(root / "JPEGImages" / f"{name}.jpg"), np.zeros((8, 8, 3), np.uint8))
    picked = [p[-7:-4] for p in export.calibration_paths(str(root), count=3)]
    assert picked == ["000", "003", "006"]  # 0, 3, 6 of the 7 listed; 7..9 are not trainval
    batches = export.calibration_images(str(root), (4, 6), count=2)
    assert [b.shape for b in batches] == [(1, 4, 6, 3)] * 2 and batches[0].dtype == np.uint8
    # The command line: --int8 needs --calibration, and not with a SavedModel or --fp16.
    base = ["m.keras", "out.tflite", "--format", "tflite", "--image-size", "8", "8"]
    for extra, message in (
        (["--int8"], "go together"),
        (["--int8", "--calibration", "x", "--fp16"], "one of --int8 and --fp16"),
        (["--calibration", "x"], "go together"),
    ):
        with pytest.raises(SystemExit):
            export_cli.parse_args(base + extra)
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_cli.parse_args(["m.keras", "out", "--format", "saved_model", "--int8"])
    assert "tflite and onnx" in capsys.readouterr().err


@pytest.mark.parametrize("class_specific", [True, False])
def test_tensorflow_nms_keeps_what_the_tiled_nms_keeps(class_specific):
    import tensorflow as tf

    from keras_retinanet.model.layers import FilterDetections

    rng = np.random.default_rng(3)
    # 600 anchors crowded on a 100 x 100 image: many overlaps, several classes.
    corners = rng.uniform(0, 80, (1, 600, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(5, 30, (1, 600, 2))], -1)
    classification = rng.uniform(0, 1, (1, 600, 4)) ** 3
    outputs = {}
    for implementation in ("keras", "tensorflow"):
        layer = FilterDetections(
            class_specific_filter=class_specific,
            max_detections=50,
            pre_nms_top_k_per_level=None,
            nms_implementation=implementation,
        )
        outputs[implementation] = [
            np.asarray(t)
            for t in tf.function(layer)([tf.constant(boxes, tf.float32),
                                         tf.constant(classification, tf.float32)])
        ]  # fmt: skip
    (boxes_k, scores_k, labels_k), (boxes_t, scores_t, labels_t) = outputs.values()
    assert (labels_k >= 0).sum() == 50  # the cap binds: the order of the decisions matters
    np.testing.assert_array_equal(labels_t, labels_k)
    np.testing.assert_allclose(scores_t, scores_k)
    np.testing.assert_allclose(boxes_t, boxes_k, atol=1e-4)
    assert FilterDetections.from_config(layer.get_config()).nms_implementation == "tensorflow"
    with pytest.raises(ValueError, match="nms_implementation"):
        FilterDetections(nms_implementation="numpy")
