"""``retinanet-convert``: training snapshot -> inference model file."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_retinanet import models
from keras_retinanet.cli.convert import main
from keras_retinanet.inference import prepare_batch
from keras_retinanet.model import layers
from keras_retinanet.model.anchors import AnchorParameters

# Six anchors per location instead of nine: the converted model decodes correctly only if
# convert reads the anchors from the snapshot's metadata.
ANCHORS = AnchorParameters(ratios=(0.5, 2.0), scales=(1.0, 1.4, 1.8))
MIN_SIDE, MAX_SIDE = 96, 128


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A 3-class training snapshot whose heads give a spread of confident scores."""
    keras.utils.set_random_seed(3)
    model = models.retinanet_model(
        3,
        weights=None,
        anchor_parameters=ANCHORS,
        pyramid_feature_size=32,
        classification_feature_size=32,
        regression_feature_size=32,
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 150, 3), dtype=np.uint8)
    batch, _ = prepare_batch([image], MIN_SIDE, MAX_SIDE)
    # The untrained backbone's features are tiny: rescale each output channel of the
    # classification head to logits of mean -3 and std 1.5 on this image, so that a few
    # dozen (anchor, class) pairs score above 0.5.
    levels = [f"P{level}" for level in ANCHORS.pyramid_levels]
    features = keras.Model(model.inputs, [model.get_layer(n).output for n in levels])([batch])
    head = model.get_layer("classification_submodel")
    layer = head.get_layer("pyramid_classification")
    raw = keras.Model(head.inputs, layer.output)
    logits = np.concatenate([np.asarray(raw(f)).reshape(-1, layer.filters) for f in features])
    kernel, bias = layer.get_weights()
    factor = 1.5 / logits.std(axis=0)
    bias = -3.0 - factor * (logits.mean(axis=0) - bias)
    layer.set_weights([kernel * factor, bias.astype("float32")])
    metadata = {
        "format_version": 1,
        "classes": ["a", "b", "c"],
        "num_classes": 3,
        "anchor_parameters": ANCHORS.to_dict(),
        "image_min_side": MIN_SIDE,
        "image_max_side": MAX_SIDE,
        "model": "training",
    }
    path = tmp_path_factory.mktemp("convert") / "snapshot.keras"
    models.save_model(model, str(path), metadata=metadata)
    return path, model, batch


def outputs_of(model: keras.Model, batch: np.ndarray) -> list[np.ndarray]:
    return [np.asarray(t) for t in model.predict_on_batch(batch)]


def test_convert_defaults_match_retinanet_box(snapshot, tmp_path, capsys):
    path, training, batch = snapshot
    output = tmp_path / "inference.keras"
    assert main([str(path), str(output)]) == 0
    assert str(output) in capsys.readouterr().out

    metadata = models.read_metadata(str(output))
    assert metadata["model"] == "inference"
    assert metadata["classes"] == ["a", "b", "c"]  # the snapshot's record is kept
    # The defaults, with the per-level budget resolved to this variant's (1000).
    assert metadata["detection_settings"] == {
        **models.DetectionSettings().to_dict(),
        "pre_nms_top_k_per_level": 1000,
    }
    converted = keras.saving.load_model(str(output))  # no custom_objects needed
    assert models.is_inference_model(converted)
    expected = outputs_of(models.retinanet_box(training, anchor_parameters=ANCHORS), batch)
    boxes, scores, labels = outputs_of(converted, batch)
    assert (labels >= 0).sum() >= 3  # real detections, not only -1 padding
    np.testing.assert_array_equal(labels, expected[2])
    np.testing.assert_allclose(scores, expected[1], atol=1e-6)
    np.testing.assert_allclose(boxes, expected[0], atol=1e-4)


def test_convert_flags_reach_filter_detections(snapshot, tmp_path):
    path, training, batch = snapshot
    output = tmp_path / "agnostic.h5"
    argv = [
        str(path),
        str(output),
        "--no-nms",
        "--no-class-specific-filter",
        "--nms-threshold",
        "0.3",
        "--score-threshold",
        "0.2",
        "--max-detections",
        "50",
    ]
    assert main(argv) == 0
    settings = {
        "nms": False,
        "class_specific_filter": False,
        "nms_threshold": 0.3,
        "score_threshold": 0.2,
        "max_detections": 50,
    }
    stored = models.read_metadata(str(output))["detection_settings"]
    assert {k: stored[k] for k in settings} == settings
    converted = keras.saving.load_model(str(output))
    config = converted.get_layer("filtered_detections").get_config()
    assert {k: config[k] for k in settings} == settings
    assert isinstance(converted.get_layer("filtered_detections"), layers.FilterDetections)

    expected = outputs_of(
        models.retinanet_box(training, anchor_parameters=ANCHORS, **settings), batch
    )
    boxes, scores, labels = outputs_of(converted, batch)
    assert boxes.shape == (1, 50, 4)
    found = labels[0] >= 0
    assert found.sum() >= 3 and np.all(scores[0][found] > 0.2)
    np.testing.assert_array_equal(labels, expected[2])
    np.testing.assert_allclose(scores, expected[1], atol=1e-6)
    np.testing.assert_allclose(boxes, expected[0], atol=1e-4)

    # An inference model cannot be converted again with other settings.
    again = tmp_path / "again.keras"
    with pytest.raises(ValueError, match="is an inference model built with nms False"):
        from keras_retinanet.export import convert_model

        convert_model(str(output), str(again), nms=True)
    assert not again.exists()


def test_convert_reports_bad_paths(tmp_path, capsys):
    missing = tmp_path / "missing.keras"
    assert main([str(missing), str(tmp_path / "out.keras")]) == 2
    assert f"model file not found: {missing}" in capsys.readouterr().err
    assert main([str(missing), str(tmp_path / "out.onnx")]) == 2
    assert "must end in .keras or .h5" in capsys.readouterr().err
    for flag, value in (
        ("--score-threshold", "1.5"),
        ("--nms-threshold", "-0.1"),
        ("--max-detections", "0"),
    ):
        with pytest.raises(SystemExit) as error:
            main([str(missing), str(tmp_path / "out.keras"), flag, value])
        assert error.value.code == 2
        assert flag in capsys.readouterr().err
