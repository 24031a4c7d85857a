"""bfloat16 inference: the network in bfloat16, decoding and NMS in float32, detections within
a stated tolerance of float32's; float32 (with a message) where the CPU has no bfloat16."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from heads import MAX_SIDE, MIN_SIDE, small_snapshot

from keras_retinanet import models
from keras_retinanet.inference import detect
from keras_retinanet.model.precision import choose_precision, cpu_bfloat16, with_precision

if keras.backend.backend() != "tensorflow":
    pytest.skip("measured on TensorFlow", allow_module_level=True)

ZEN4 = "processor : 0\nflags : fpu avx2 avx512f avx512_vnni avx512_bf16\n"
AVX2_ONLY = "processor : 0\nflags : fpu avx2 fma\n"


def test_the_cpu_decides():
    assert cpu_bfloat16(ZEN4) and not cpu_bfloat16(AVX2_ONLY)
    assert choose_precision("bfloat16", ZEN4) == "bfloat16"
    with pytest.warns(UserWarning, match="no bfloat16 instructions"):
        assert choose_precision("bfloat16", AVX2_ONLY) == "float32"
    assert choose_precision("float32", AVX2_ONLY) == "float32"
    with pytest.raises(ValueError, match="precision must be one of"):
        choose_precision("float16")


@pytest.fixture(scope="module")
def models_and_image(tmp_path_factory):
    path, _, _ = small_snapshot(tmp_path_factory.mktemp("precision") / "snapshot.keras")
    model = models.load_model(str(path), convert=True, score_threshold=0.3)
    image = np.random.default_rng(0).integers(0, 256, (100, 150, 3), dtype=np.uint8)
    return model, with_precision(model, "bfloat16"), image


def test_the_network_runs_in_bfloat16_and_the_detection_layers_in_float32(models_and_image):
    model, bf16, _ = models_and_image
    policies = {layer.name: layer.dtype_policy.name for layer in bf16.layers}
    assert policies["filtered_detections"] == "float32" and policies["boxes"] == "float32"
    backbone = [layer for layer in bf16.layers if isinstance(layer, keras.layers.Conv2D)]
    assert backbone and all(layer.dtype_policy.name == "bfloat16" for layer in backbone)
    assert bf16.detection_settings == model.detection_settings
    assert bf16.variant == model.variant


def test_bfloat16_detections_are_float32s_within_tolerance(models_and_image):
    model, bf16, image = models_and_image
    (ours,) = detect(bf16, [image], MIN_SIDE, MAX_SIDE)
    (reference,) = detect(model, [image], MIN_SIDE, MAX_SIDE)
    assert ours.boxes.dtype == np.float32 and len(reference) >= 5
    # Tolerance: bfloat16 keeps 8 bits of mantissa (relative rounding 2**-9 per operation).
    # Every confident float32 detection (score > 0.5) is found again: same label, a box within
    # 2 px and a score within 0.03; the counts at the 0.3 threshold differ by at most a few.
    for box, score, label in zip(reference.boxes, reference.scores, reference.labels):
        if score <= 0.5:
            continue
        close = (ours.labels == label) & (np.abs(ours.boxes - box).max(axis=1) <= 2.0)
        assert close.any(), (box, score, label)
        assert np.abs(ours.scores[close] - score).min() <= 0.03
    assert abs(len(ours) - len(reference)) <= max(3, len(reference) // 5)


def test_a_bfloat16_saved_model_detects_as_the_keras_bfloat16_model(models_and_image, tmp_path):
    from keras_retinanet import export
    from keras_retinanet.export.runtime import load_artifact

    model, bf16, image = models_and_image
    with pytest.raises(ValueError, match="saved_model only"):
        export.export_model(
            model, str(tmp_path / "x.tflite"), "tflite", (96, 128), precision="bfloat16"
        )
    if not cpu_bfloat16():
        pytest.skip("this CPU has no bfloat16 instructions: the export falls back to float32")
    path = tmp_path / "bf16_saved_model"
    export.export_model(
        model, str(path), "saved_model", None, min_side=MIN_SIDE, max_side=MAX_SIDE,
        precision="bfloat16",
    )  # fmt: skip
    artifact = load_artifact(path)
    assert artifact.metadata["precision"] == "bfloat16"
    (found,) = artifact.detect_images([image])
    (reference,) = detect(bf16, [image], MIN_SIDE, MAX_SIDE)
    # The same bfloat16 network; the in-graph resize may differ from OpenCV's by a grey level.
    assert abs(len(found) - len(reference)) <= max(3, len(reference) // 5)
    top = reference.scores.argmax()
    close = (found.labels == reference.labels[top]) & (
        np.abs(found.boxes - reference.boxes[top]).max(axis=1) <= 2.0
    )
    assert close.any()


@pytest.mark.parametrize("backbone", ["mobilenet_v3_small_lite", "efficientnet_b0_lite"])
def test_a_backbone_with_graph_operations_runs_in_bfloat16(backbone):
    """MobileNetV3's hard-swish adds a number in the graph (an operation, not a layer, which
    takes no dtype), EfficientNet has its input statistics: both copy to bfloat16 and give
    the float32 model's raw outputs to bfloat16's precision."""
    keras.utils.set_random_seed(0)
    training = models.retinanet_model(2, backbone=backbone, weights=None)
    model = models.retinanet_box(training)
    bf16 = with_precision(model, "bfloat16")
    image = np.random.default_rng(0).uniform(-100, 100, (1, 96, 96, 3)).astype("float32")
    names = ("regression", "classification")
    raw = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    raw_bf16 = keras.Model(bf16.inputs, [bf16.get_layer(n).output for n in names])
    convolutions = [x for x in bf16.layers if isinstance(x, keras.layers.Conv2D)]
    assert convolutions and all(x.dtype_policy.name == "bfloat16" for x in convolutions)
    (regression, classification), (regression16, classification16) = raw(image), raw_bf16(image)
    np.testing.assert_allclose(np.asarray(classification16, "float32"),
                               np.asarray(classification), atol=0.05)  # fmt: skip
    scale = float(np.abs(np.asarray(regression)).max())
    assert np.abs(np.asarray(regression16, "float32") - np.asarray(regression)).max() < 0.1 * scale
