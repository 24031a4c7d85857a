"""``retinanet-convert``: training snapshot -> inference model file."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from heads import ANCHORS, small_snapshot

from keras_retinanet import models
from keras_retinanet.cli.convert import main
from keras_retinanet.model import layers


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    """A 3-class training snapshot whose heads give a spread of confident scores."""
    return small_snapshot(tmp_path_factory.mktemp("convert") / "snapshot.keras")


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
