"""Exported detectors (SavedModel, TFLite, ONNX) against the Keras inference model.

Each artifact runs in a subprocess that blocks ``keras`` and ``keras_retinanet`` (and, for
ONNX, ``tensorflow``) from being imported, so the test proves it needs only its runtime. Its
detections on an image whose size differs from the network input must equal those of
``keras_retinanet.inference.detect`` (OpenCV resize + ``retinanet_box``): same labels, boxes
within 1 px, scores within 1e-3.

The network is an untrained ResNet50 whose output convolutions are rescaled (see
``confident_model``) so that it makes a few dozen confident detections of both classes with
distinct scores: an untrained net scores every anchor ~0.01 and detects nothing, which would
make the comparison vacuous.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import cv2
import keras
import numpy as np
import pytest
from heads import spread_out_heads

from keras_retinanet import export, models
from keras_retinanet.cli import export as export_cli
from keras_retinanet.inference import Detections, detect, prepare_batch

if keras.backend.backend() != "tensorflow":
    pytest.skip("export builds TensorFlow graphs", allow_module_level=True)

MIN_SIDE, MAX_SIDE = 96, 160
# 192 x 256 shrinks by exactly 2 to 96 x 128 (network input 128 x 128 after padding), where
# the in-graph area resize equals OpenCV's INTER_AREA bit for bit.
IMAGE_SHAPE = (192, 256)
# 150 x 200 shrinks by 0.64 (not an integer factor): the in-graph resize is within one grey
# level of OpenCV's there, so that image is compared on the network's exact input instead.
ODD_SHAPE = (150, 200)
BOX_TOLERANCE = 1.0  # pixels, from the issue
SCORE_TOLERANCE = 1e-3  # from the issue


def scene(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """A smooth random uint8 BGR image with a few filled shapes."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.integers(0, 256, (*shape, 3), dtype=np.uint8), (7, 7), 2)
    height, width = shape
    cv2.rectangle(image, (width // 8, height // 6), (width // 2, height // 2), (20, 200, 40), -1)
    cv2.circle(image, (3 * width // 4, 2 * height // 3), height // 6, (230, 60, 30), -1)
    return image


def confident_model(image_bgr: np.ndarray, seed: int = 0) -> keras.Model:
    """A 2-class training model whose heads give spread-out logits on ``image_bgr``.

    Its heads are rescaled on the image by :func:`heads.spread_out_heads`.
    """
    keras.utils.set_random_seed(seed)
    model = models.retinanet_model(
        2,
        weights=None,
        pyramid_feature_size=64,
        classification_feature_size=64,
        regression_feature_size=64,
    )
    batch, _ = prepare_batch([image_bgr], MIN_SIDE, MAX_SIDE)
    spread_out_heads(model, batch)
    return model


@pytest.fixture(scope="module")
def detector():
    image = scene(IMAGE_SHAPE)
    model = models.retinanet_box(confident_model(image), score_threshold=0.3, max_detections=100)
    reference = detect(model, [image], MIN_SIDE, MAX_SIDE)[0]
    # The comparison means something only with real detections of both classes.
    assert len(reference) >= 5
    assert set(reference.labels.tolist()) == {0, 1}
    assert reference.scores[0] > 0.5
    return model, image, reference


def matched_detections(
    reference: Detections,
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    box_tolerance: float = BOX_TOLERANCE,
    score_tolerance: float = SCORE_TOLERANCE,
) -> np.ndarray:
    """Per reference detection, whether it has its own match among ``boxes``/``scores``/
    ``labels`` (same label, box and score within the tolerances; the closest score first).

    Matching rather than comparing row by row, because two detections whose scores differ
    by less than the numerical noise may come out in either order.
    """
    used = np.zeros(len(scores), dtype=bool)
    found = np.zeros(len(reference), dtype=bool)
    for index, (box, score, label) in enumerate(
        zip(reference.boxes, reference.scores, reference.labels, strict=True)
    ):
        candidates = (
            ~used
            & (labels == label)
            & (np.abs(scores - score) <= score_tolerance)
            & (np.abs(boxes - box).max(axis=1) <= box_tolerance)
        )
        if candidates.any():
            used[np.flatnonzero(candidates)[np.argmin(np.abs(scores[candidates] - score))]] = True
            found[index] = True
    return found


def assert_same_detections(
    reference: Detections,
    outputs: dict[str, np.ndarray],
    index: int = 0,
    box_tolerance: float = BOX_TOLERANCE,
    score_tolerance: float = SCORE_TOLERANCE,
    stable: np.ndarray | None = None,
    count_slack: int = 0,
) -> None:
    """Every reference detection has its own match (same label, close box and score) and
    the counts are equal. Given a ``stable`` mask, only the detections it marks must match
    (and are matched first), and the counts may differ by ``count_slack``."""
    count = int(outputs["num_detections"][index])
    assert abs(count - len(reference)) <= count_slack, (count, len(reference))
    boxes = outputs["boxes"][index][:count]
    scores = outputs["scores"][index][:count]
    labels = outputs["labels"][index][:count]
    assert np.all(outputs["labels"][index][count:] == -1)  # padding rows
    assert np.all(outputs["scores"][index][count:] == -1)
    if stable is not None:
        reference = Detections(
            reference.boxes[stable], reference.scores[stable], reference.labels[stable]
        )
    found = matched_detections(reference, boxes, scores, labels, box_tolerance, score_tolerance)
    missed = np.flatnonzero(~found)
    assert len(missed) == 0, "no match for " + "; ".join(
        f"label={reference.labels[i]} score={reference.scores[i]:.4f} box={reference.boxes[i]}"
        for i in missed
    )


def assert_scored_by_our_tools(path, model, image, reference: Detections, tmp_path) -> None:
    """The artifact at ``path``, as retinanet-predict and retinanet-evaluate use it: its
    detections of ``image`` (read from a file) are the Keras model's, and evaluating it on a
    one-image dataset gives the Keras model's AP."""
    from keras_retinanet.evaluation.runner import evaluate
    from keras_retinanet.export.runtime import load_artifact
    from keras_retinanet.predict import predict

    artifact = load_artifact(path)
    assert artifact.num_classes == 2 and artifact.detection_settings.score_threshold == 0.3
    (found,) = artifact.detect_images([image])
    assert_same_detections(reference, as_outputs(found))
    # retinanet-predict's library call on the artifact file, at the artifact's threshold.
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image)
    result = predict(str(path), [str(photo)], tmp_path / "predicted", score_threshold=0.3)
    assert len(result.records[0]["detections"]) == len(reference)
    # Evaluation through the artifact equals evaluation of the Keras model.
    generator = OneImage(image, reference)
    ours = evaluate(generator, artifact, verbose=0)
    keras_result = evaluate(generator, model, verbose=0)
    assert ours.mean_average_precision == pytest.approx(
        keras_result.mean_average_precision, abs=1e-6
    )
    assert 0 < ours.mean_average_precision


def as_outputs(found: Detections) -> dict[str, np.ndarray]:
    """One image's detections in the artifacts' output layout (batch of 1)."""
    return {
        "boxes": found.boxes[None],
        "scores": found.scores[None],
        "labels": found.labels[None],
        "num_detections": np.array([len(found)]),
    }


class OneImage:
    """A one-image data set whose ground truth is some of the reference detections, so that
    the AP of a model lies strictly between 0 and 1."""

    def __init__(self, image: np.ndarray, reference: Detections) -> None:
        self.image = image
        keep = np.arange(len(reference)) % 2 == 0
        self.annotations = {
            "bboxes": reference.boxes[keep].astype(np.float32),
            "labels": reference.labels[keep].astype(np.int64),
            "difficult": np.zeros(int(keep.sum()), bool),
        }
        self.classes = ["rectangle", "circle"]
        self.image_min_side, self.image_max_side = MIN_SIDE, MAX_SIDE

    def size(self) -> int:
        return 1

    def num_classes(self) -> int:
        return 2

    def load_image(self, index: int) -> np.ndarray:
        return self.image

    def load_annotations(self, index: int) -> dict:
        return self.annotations

    def filter_annotations(self, image, annotations, index):
        return annotations


def run_isolated(tmp_path, code: str, blocked: tuple[str, ...], **arrays) -> dict:
    """Run ``code`` in a fresh Python where the ``blocked`` modules cannot be imported.

    ``code`` sees the ``arrays`` as NumPy variables and must set ``outputs`` (a dict of
    arrays), which is returned.
    """
    inputs = tmp_path / "inputs.npz"
    result = tmp_path / "outputs.npz"
    np.savez(inputs, **arrays)
    script = "\n".join(
        [
            "import sys",
            f"for name in {blocked!r}:",
            "    sys.modules[name] = None  # import raises ImportError",
            "import numpy as np",
            f"globals().update(np.load({str(inputs)!r}))",
            textwrap.dedent(code),
            f"np.savez({str(result)!r}, **{{k: np.asarray(v) for k, v in outputs.items()}})",
        ]
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return dict(np.load(result))


SAVED_MODEL_CODE = """
import tensorflow as tf
serve = tf.saved_model.load(str(path)).signatures["serving_default"]
outputs = {k: v.numpy() for k, v in serve(images=tf.constant(images)).items()}
"""
TFLITE_CODE = """
import warnings
import tensorflow as tf
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
    interpreter = tf.lite.Interpreter(model_path=str(path))
outputs = interpreter.get_signature_runner("serving_default")(images=images)
"""
ONNX_CODE = """
import onnxruntime
session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
names = [output.name for output in session.get_outputs()]
outputs = dict(zip(names, session.run(None, {"images": images})))
"""
KERAS_FREE = ("keras", "keras_retinanet")


def rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


# --------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    "shape, exact",
    [
        (IMAGE_SHAPE, True),  # shrink by 2: INTER_AREA averages 2 x 2 blocks
        (ODD_SHAPE, False),  # shrink by 0.64: INTER_AREA with fractional weights
        ((61, 83), False),  # enlarge by 96 / 61: INTER_LINEAR
        ((96, 128), True),  # already the target size: no resize
    ],
)
def test_network_input_matches_prepare_batch(shape, exact):
    image = scene(shape, seed=shape[0])
    expected, scales = prepare_batch([image], MIN_SIDE, MAX_SIDE)
    for static in (None, shape):  # dynamic (SavedModel/ONNX) and constant (TFLite) weights
        batch, scale = export.network_input(rgb(image)[None], MIN_SIDE, MAX_SIDE, static)
        batch = np.asarray(batch)
        assert batch.shape == expected.shape
        assert float(scale) == pytest.approx(scales[0], rel=1e-12)
        difference = np.abs(batch - expected)
        if exact:
            assert difference.max() == 0.0
        else:
            # OpenCV rounds its bilinear weights to 11 bits and its area sums in float32:
            # at most one grey level apart, on a minority of pixels.
            assert difference.max() <= 1.0
            assert difference.mean() < 0.2


@pytest.mark.parametrize("image_size", [None, IMAGE_SHAPE])
def test_detection_graph_captures_only_variables(detector, image_size):
    # Converters turn captured tensors that are not variables (eager constants) into extra
    # graph inputs that the user would have to feed; only the weights may be captured.
    import tensorflow as tf

    model, _, _ = detector
    function = export.detection_function(model, MIN_SIDE, MAX_SIDE, image_size)
    spec = export.input_spec(image_size)
    concrete = tf.function(function, input_signature=[spec]).get_concrete_function()
    assert concrete.captured_inputs
    assert all(t.dtype == tf.resource for t in concrete.captured_inputs)
    assert concrete.inputs[0].shape.as_list() == [None, *(image_size or (None, None)), 3]


# --------------------------------------------------------------------------- SavedModel


def test_saved_model_matches_keras(detector, tmp_path):
    model, image, reference = detector
    path = tmp_path / "saved_model"
    metadata = {"classes": ["rectangle", "circle"], "num_classes": 2}
    result = export.export_saved_model(
        model, str(path), min_side=MIN_SIDE, max_side=MAX_SIDE, metadata=metadata
    )
    assert result.image_size is None and result.size_bytes > 1e6
    stored = json.loads((path / "assets.extra" / export.METADATA_FILE).read_text())
    assert stored["classes"] == ["rectangle", "circle"]
    assert_scored_by_our_tools(path, model, image, reference, tmp_path)
    assert stored["image_min_side"] == MIN_SIDE
    assert stored["detection_settings"]["score_threshold"] == pytest.approx(0.3)

    # One batch of two images of the same size: the image and its mirror image.
    mirrored = np.ascontiguousarray(image[:, ::-1])
    odd = scene(ODD_SHAPE, seed=7)
    outputs = run_isolated(
        tmp_path,
        SAVED_MODEL_CODE + "odd = serve(images=tf.constant(odd_images))\n"
        "outputs.update({'odd_' + k: v.numpy() for k, v in odd.items()})",
        KERAS_FREE,
        path=str(path),
        images=np.stack([rgb(image), rgb(mirrored)]),
        odd_images=rgb(odd)[None],
    )
    assert outputs["boxes"].shape == (2, 100, 4) and outputs["labels"].dtype == np.int32
    assert_same_detections(reference, outputs, index=0)
    assert_same_detections(detect(model, [mirrored], MIN_SIDE, MAX_SIDE)[0], outputs, index=1)

    # Non-integer resize factor: compare with the Keras model on the exact tensor the graph
    # feeds it, post-processed as inference.detect does.
    batch, scale = export.network_input(rgb(odd)[None], MIN_SIDE, MAX_SIDE)
    boxes, scores, labels = (np.asarray(t)[0] for t in model.predict_on_batch(np.asarray(batch)))
    keep = labels >= 0
    boxes = boxes[keep] / float(scale)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, ODD_SHAPE[1])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, ODD_SHAPE[0])
    # A box wholly in the padding has no area left: the graph drops it, as detect does.
    area = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    assert (~area).any()  # this image has such boxes, so the rule is exercised
    odd_reference = Detections(boxes[area], scores[keep][area], labels[keep][area])
    assert len(odd_reference) >= 3
    odd_outputs = {k[4:]: v for k, v in outputs.items() if k.startswith("odd_")}
    assert_same_detections(odd_reference, odd_outputs)


def test_export_cli_fixed_size_saved_model(detector, tmp_path, capsys):
    model, image, reference = detector
    snapshot = tmp_path / "inference.keras"
    metadata = {"image_min_side": MIN_SIDE, "image_max_side": MAX_SIDE, "model": "inference"}
    models.save_model(model, str(snapshot), metadata=metadata)
    output = tmp_path / "fixed"
    argv = [str(snapshot), str(output), "--format", "saved_model", "--image-size", "192", "256"]
    assert export_cli.main(argv) == 0
    assert "input 192x256" in capsys.readouterr().out
    outputs = run_isolated(
        tmp_path,
        SAVED_MODEL_CODE + "shape = serve.structured_input_signature[1]['images'].shape\n"
        "outputs['shape'] = np.array([-1 if d is None else d for d in shape.as_list()])",
        KERAS_FREE,
        path=str(output),
        images=rgb(image)[None],
    )
    assert outputs["shape"].tolist() == [-1, 192, 256, 3]  # any batch size
    assert_same_detections(reference, outputs)


# --------------------------------------------------------------------------- TFLite


@pytest.mark.parametrize("fp16", [False, True])
def test_tflite_matches_keras(detector, tmp_path, fp16):
    model, image, reference = detector
    path = tmp_path / "detector.tflite"
    result = export.export_tflite(
        model, str(path), IMAGE_SHAPE, fp16=fp16, min_side=MIN_SIDE, max_side=MAX_SIDE
    )
    # Builtin ops only (WHILE, TOPK_V2, BATCH_MATMUL, ...): runs without the Flex delegate.
    assert result.flex_ops == []
    ops = export.tflite_ops(path.read_bytes())
    assert "WHILE" in ops and "TOPK_V2" in ops  # the NMS is in the graph
    # The weights dominate the file: 4 bytes each, or 2 with float16.
    bytes_per_weight = result.size_bytes / model.count_params()
    assert bytes_per_weight == pytest.approx(2.0 if fp16 else 4.0, rel=0.05)
    outputs = run_isolated(
        tmp_path, TFLITE_CODE, KERAS_FREE, path=str(path), images=rgb(image)[None]
    )
    assert outputs["boxes"].shape == (1, 100, 4)
    if fp16:
        # float16 weights round each weight by up to 2**-11 (relative): scores move by a few
        # 1e-3 (2.8e-3 measured), boxes by a fraction of a pixel.
        assert_same_detections(reference, outputs, score_tolerance=5e-3)
    else:
        assert_same_detections(reference, outputs)
        metadata = {"classes": ["rectangle", "circle"], "num_classes": 2}
        tagged = tmp_path / "tagged.tflite"
        export.export_tflite(
            model, str(tagged), IMAGE_SHAPE, min_side=MIN_SIDE, max_side=MAX_SIDE, metadata=metadata
        )
        assert_scored_by_our_tools(tagged, model, image, reference, tmp_path)


# --------------------------------------------------------------------------- ONNX


# tf2onnx's graph optimisers: 29 s on a ResNet50 on an AVX-512 EPYC, about a minute on AVX2.
def test_onnx_matches_keras(detector, tmp_path):
    pytest.importorskip("tf2onnx")
    pytest.importorskip("onnxruntime")
    model, image, reference = detector
    path = tmp_path / "detector.onnx"
    metadata = {"classes": ["rectangle", "circle"], "num_classes": 2}
    result = export.export_onnx(
        model, str(path), min_side=MIN_SIDE, max_side=MAX_SIDE, metadata=metadata
    )
    assert result.size_bytes == path.stat().st_size
    # onnxruntime alone: no TensorFlow either.
    outputs = run_isolated(
        tmp_path,
        ONNX_CODE,
        (*KERAS_FREE, "tensorflow"),
        path=str(path),
        images=rgb(image)[None],
    )
    assert_same_detections(reference, outputs)

    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    assert {o.name for o in proto.graph.output} == set(export.OUTPUT_NAMES)
    assert "Loop" in {node.op_type for node in proto.graph.node}  # NMS in the graph
    stored = json.loads({p.key: p.value for p in proto.metadata_props}[models.METADATA_KEY])
    assert stored["image_max_side"] == MAX_SIDE
    # The detection settings the graph was built with travel in the artifact's metadata.
    settings = models.DetectionSettings.from_dict(stored["detection_settings"])
    assert settings == model.detection_settings and settings.score_threshold == 0.3
    assert_scored_by_our_tools(path, model, image, reference, tmp_path)


def test_onnx_without_converter_says_what_to_install(detector, tmp_path, monkeypatch):
    model, _, _ = detector
    monkeypatch.setitem(sys.modules, "tf2onnx", None)
    with pytest.raises(export.OnnxExportError, match="pip install tf2onnx"):
        export.export_onnx(model, str(tmp_path / "x.onnx"), min_side=MIN_SIDE, max_side=MAX_SIDE)
    assert not (tmp_path / "x.onnx").exists()


# --------------------------------------------------------------------------- errors


def test_export_cli_rejects_bad_combinations(tmp_path, capsys):
    model = str(tmp_path / "missing.keras")
    for argv, message in (
        ([model, "x.tflite", "--format", "tflite"], "needs --image-size"),
        ([model, "x", "--format", "saved_model", "--fp16"], "--fp16 applies to"),
        ([model, "x", "--format", "onnx", "--image-size", "0", "5"], "must be positive"),
    ):
        with pytest.raises(SystemExit) as error:
            export_cli.main(argv)
        assert error.value.code == 2
        assert message in capsys.readouterr().err
    assert export_cli.main([model, str(tmp_path / "x"), "--format", "saved_model"]) == 2
    assert f"model file not found: {model}" in capsys.readouterr().err
    assert export_cli.FORMATS == export.FORMATS


def test_load_detector_checks_model_and_sizes(detector):
    model, _, _ = detector
    with pytest.raises(ValueError, match="retinanet_box"):
        export.load_detector(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
    with pytest.warns(UserWarning, match="records no image_min_side / image_max_side"):
        loaded = export.load_detector(model)
    assert (loaded.min_side, loaded.max_side) == (800, 1333)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = export.load_detector(model, metadata={"image_min_side": 96}, max_side=160)
    assert (loaded.min_side, loaded.max_side) == (96, 160)
    with pytest.raises(ValueError, match="min_side <= max_side"):
        export.load_detector(model, min_side=200, max_side=100)
    with pytest.raises(ValueError, match="TFLite runs fixed input shapes"):
        export.export_tflite(model, "x.tflite", None)


# --------------------------------------------------------------------------- model variants


@pytest.mark.parametrize("variant", ["fizyr", "torchvision_v1"])
@pytest.mark.parametrize("shape", [ODD_SHAPE, (61, 83)])  # shrink by 0.64, enlarge by 1.57
def test_network_input_follows_the_variant_resize_rule(variant, shape):
    """fizyr's and torchvision's resizing (bilinear on floats, their own sizes and scales)
    and torchvision's padding in the graph equal prepare_batch's."""
    image = scene(shape, seed=shape[0])
    expected, scales = prepare_batch([image], MIN_SIDE, MAX_SIDE, variant=variant)
    for static in (None, shape):
        batch, scale = export.network_input(
            rgb(image)[None], MIN_SIDE, MAX_SIDE, static, variant=variant
        )
        batch = np.asarray(batch)
        assert batch.shape == expected.shape
        np.testing.assert_allclose(np.asarray(scale, np.float64), scales[0], rtol=1e-6)
        np.testing.assert_allclose(batch, expected, atol=2e-3)
    if shape == (61, 83) and variant == "fizyr":  # resized to 96 x 131, not padded
        assert expected.shape[1:3] == (96, 131)
    elif shape == (61, 83):  # resized to 96 x 130, padded to 96 x 160
        pad = models.get_variant(variant).pad_value()
        np.testing.assert_allclose(expected[0, :, -1], np.broadcast_to(pad, (96, 3)))
        assert np.any(pad != 0) == (variant == "torchvision_v1")  # what NormalizeInput maps to 0


def test_detection_function_of_a_torchvision_variant_matches_detect():
    keras.utils.set_random_seed(0)
    training = models.retinanet_model(
        2,
        weights=None,
        variant="torchvision_v1",
        pyramid_feature_size=64,
        classification_feature_size=64,
        regression_feature_size=64,
    )
    model = models.retinanet_box(
        training, variant="torchvision_v1", score_threshold=0.0, max_detections=50
    )
    image = scene(ODD_SHAPE, seed=3)
    reference = detect(model, [image], MIN_SIDE, MAX_SIDE)[0]
    assert len(reference) == 50
    outputs = export.detection_function(model, MIN_SIDE, MAX_SIDE)(rgb(image)[None])
    assert_same_detections(reference, {k: np.asarray(v) for k, v in outputs.items()})
